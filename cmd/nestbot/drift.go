package main

import (
	"cmp"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/bot"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/internal/cli"
)

func newDriftCmd(io *IO) *cobra.Command {
	gf := &githubFlags{}
	var repoName, branch, cloneURL string
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Plan the default branch against the live fleet and report drift on GitHub",
		Long: `Drift checks out the default branch, observes the live fleet and plans. Any
difference is drift — a change made by hand, or an apply whose webhook
delivery was lost (GitHub does not re-send those). It is reported as a
nest/drift check run on the branch's head and in one issue kept current:
opened when the fleet drifts, updated while it does, closed when it matches.

Exit codes: 0 no drift, 1 error, 2 drift (for a scheduled workflow).`,
		Args:    cobra.NoArgs,
		Example: `  nestbot drift --repo ducksnest/infra`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, err := nestgh.ParseRepo(cmp.Or(repoName, io.Getenv("GITHUB_REPOSITORY")))
			if err != nil {
				return fmt.Errorf("--repo: %w", err)
			}
			gh, err := gf.client(io, nil)
			if err != nil {
				return err
			}
			if gf.AppID != "" {
				id, err := gh.RepoInstallation(ctx, repo)
				if err != nil {
					return err
				}
				gh = gh.Installation(id)
			}
			st, closeState, err := gf.openState(ctx, io)
			if err != nil {
				return err
			}
			defer closeState()
			b, err := bot.New(gf.botConfig(io, gh, st))
			if err != nil {
				return err
			}
			if cloneURL == "" {
				cloneURL = cloneURLFor(cmp.Or(io.Getenv("GITHUB_SERVER_URL"), "https://github.com"), repo)
			}
			res, err := b.Drift(ctx, gh, bot.DriftRequest{Repo: repo, CloneURL: cloneURL, Branch: branch})
			if err != nil {
				return err
			}
			if res.Drifted {
				fmt.Fprintf(io.Out, "Drift: %s (issue #%d)\n", res.Plan.Summary(), res.Issue)
				return &cli.ExitError{Code: 2}
			}
			fmt.Fprintf(io.Out, "No drift: the fleet matches %s at %s.\n", branch, shortRev(res.Head))
			return nil
		},
	}
	gf.register(cmd)
	cmd.Flags().StringVar(&repoName, "repo", "", "the repository, owner/name (default GITHUB_REPOSITORY)")
	cmd.Flags().StringVar(&branch, "branch", "main", "the default branch")
	cmd.Flags().StringVar(&cloneURL, "clone-url", "", "where to clone from (default <GITHUB_SERVER_URL>/<repo>.git)")
	return cmd
}

func cloneURLFor(server string, repo nestgh.Repo) string {
	for len(server) > 0 && server[len(server)-1] == '/' {
		server = server[:len(server)-1]
	}
	return server + "/" + repo.FullName() + ".git"
}
