package main

import (
	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/action"
	"github.com/ducksnest/nestbot/internal/cli"
)

func newActionCmd(io *IO) *cobra.Command {
	gf := &githubFlags{}
	var command string
	cmd := &cobra.Command{
		Use:   "action",
		Short: "Run inside a GitHub Actions job: plan a pull request, run its /nest command, apply a push",
		Long: `Action is what the composite action (action.yml) runs. It reads the event from
GITHUB_EVENT_NAME and GITHUB_EVENT_PATH and runs the same handlers as
nestbot serve, inline:

  pull_request        the plan as one sticky comment and a nest/plan check run
  issue_comment       /nest plan, /nest apply, /nest unlock, /nest help
  push                to the default branch: apply, as a GitHub Deployment
  schedule            the drift check: a nest/drift check run and one issue
  workflow_dispatch   --command plan, apply or drift

The plan goes to GITHUB_STEP_SUMMARY; the outputs changes, result and
plan-json to GITHUB_OUTPUT; mistakes in nest.yaml become ::error
annotations; a rollout prints a ::group:: per host. It exits 1 when the
job should fail.`,
		Example: `  # in a workflow, through the composite action:
  - uses: ducksnest/nestbot@v1
  # by hand, as the action's step runs it:
  GITHUB_EVENT_NAME=workflow_dispatch GITHUB_EVENT_PATH=event.json GITHUB_REPOSITORY=ducksnest/infra \
    nestbot action --command drift`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			gh, err := gf.client(io, nil)
			if err != nil {
				return err
			}
			st, closeState, err := gf.openState(ctx, io)
			if err != nil {
				return err
			}
			defer closeState()
			cfg := gf.botConfig(io, gh, st)
			cfg.DetailsURL = actionsRunURL(io.Getenv)
			cfg.Logger = io.Logger()
			_, err = action.Run(ctx, action.Config{Getenv: io.Getenv, Out: io.Out, Bot: cfg, Command: command})
			if err != nil {
				return &cli.ExitError{Code: 1, Msg: "nestbot action: " + err.Error()}
			}
			return nil
		},
	}
	gf.register(cmd)
	cmd.Flags().StringVar(&command, "command", "", "for workflow_dispatch: plan, apply or drift (default drift; also INPUT_COMMAND)")
	return cmd
}

// actionsRunURL links to the workflow run, as check runs' details.
func actionsRunURL(getenv func(string) string) string {
	server, repo, id := getenv("GITHUB_SERVER_URL"), getenv("GITHUB_REPOSITORY"), getenv("GITHUB_RUN_ID")
	if server == "" || repo == "" || id == "" {
		return ""
	}
	return server + "/" + repo + "/actions/runs/" + id
}
