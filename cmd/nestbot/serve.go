package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/bot"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/buildinfo"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/store"
)

type serveOptions struct {
	IO            *IO
	GitHub        githubFlags
	Listen        string
	Secret        string
	Workers       int
	DriftInterval time.Duration
	DriftRepos    []string
	DriftBranch   string
}

func newServeCmd(io *IO) *cobra.Command {
	opts := &serveOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the GitHub App: plan pull requests, run /nest commands, apply merges",
		Long: `Serve is nestbot as a GitHub App's webhook server.

  POST /webhook   GitHub's deliveries, verified with the webhook secret,
                  stored as jobs before they are acknowledged (202)
  GET  /healthz   200 while the process runs
  GET  /readyz    200 when the workers run and the state answers
  GET  /metrics   Prometheus metrics

A pull request gets its plan as one comment and a nest/plan check run; a
/nest command in a comment is carried out; a push to the default branch
applies, one apply at a time, as a GitHub Deployment. With --drift-interval
the default branch of each --drift-repo is re-planned on a schedule and
drift reported in an issue.

It refuses to start without a webhook secret (--webhook-secret,
NESTBOT_WEBHOOK_SECRET, or a file named by NESTBOT_WEBHOOK_SECRET_FILE; one
secret per line accepts either during a rotation).

It logs to standard error as --log-format says (JSON lines unless standard
error is a terminal); a delivery's records carry its delivery id, event,
repository and pull request. The first SIGINT or SIGTERM stops it taking
deliveries and lets running jobs finish (up to 30 s); it then exits 130
(143 for SIGTERM). A second signal exits at once.`,
		Args: cobra.NoArgs,
		Example: `  nestbot serve --listen :8080 --github-app-id 123 --github-app-key-file app.pem
  NESTBOT_WEBHOOK_SECRET_FILE=/run/secrets/webhook nestbot serve --drift-interval 1h --drift-repo ducksnest/infra`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd.Context(), opts) },
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", ":8080", "address to serve on")
	f.StringVar(&opts.Secret, "webhook-secret", "", "the webhook secret (also NESTBOT_WEBHOOK_SECRET_FILE)")
	f.IntVar(&opts.Workers, "workers", 4, "jobs run at once")
	f.DurationVar(&opts.DriftInterval, "drift-interval", 0, "re-plan the default branch this often and report drift (0: never)")
	f.StringSliceVar(&opts.DriftRepos, "drift-repo", nil, "repositories (owner/name) the drift check covers")
	f.StringVar(&opts.DriftBranch, "drift-branch", "main", "the default branch the drift check plans")
	opts.GitHub.register(cmd)
	return cmd
}

func runServe(ctx context.Context, opts *serveOptions) error {
	io := opts.IO
	secretText := opts.Secret
	if secretText == "" {
		if file := io.Getenv("NESTBOT_WEBHOOK_SECRET_FILE"); file != "" {
			var err error
			if secretText, err = nest.ReadSecretFile(file); err != nil {
				return fmt.Errorf("NESTBOT_WEBHOOK_SECRET_FILE: %w", err)
			}
		}
	}
	secrets, err := webhook.ParseSecrets(secretText)
	if err != nil {
		return err // it says which flag and variables set it
	}
	var drift []nestgh.Repo
	for _, r := range opts.DriftRepos {
		repo, err := nestgh.ParseRepo(r)
		if err != nil {
			return fmt.Errorf("--drift-repo %q: %w", r, err)
		}
		drift = append(drift, repo)
	}
	if opts.DriftInterval > 0 && len(drift) == 0 {
		return fmt.Errorf("--drift-interval %s needs --drift-repo: the repositories to check", opts.DriftInterval)
	}
	st, closeState, err := opts.GitHub.openState(ctx, io)
	if err != nil {
		return err
	}
	defer closeState()
	metrics := webhook.NewMetrics(st.Queue)
	ghOpts := opts.GitHub
	gh, err := ghOpts.client(io, func(method, route string, status, remaining int) {
		metrics.GitHubCall(method, status)
		if remaining >= 0 {
			metrics.RateLimitRemaining(remaining)
		}
	})
	if err != nil {
		return err
	}
	logger := io.Logger()
	cfg := opts.GitHub.botConfig(io, gh, st)
	cfg.Observe = func(kind, result string) {
		switch kind {
		case "plan":
			metrics.Plan(result)
		case "apply":
			metrics.Apply(result)
		}
	}
	cfg.ObserveHosts = metrics.Hosts
	b, err := bot.New(cfg)
	if err != nil {
		return err
	}
	srv, err := webhook.New(webhook.Config{Secrets: secrets, Queue: st.Queue, Workers: opts.Workers, Run: b.Run, DeadLetter: b.DeadLetter,
		Metrics: metrics, Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return err
	}
	logger.Info("nestbot serving; webhook at /webhook", "version", buildinfo.Read().String(), "addr", ln.Addr().String())
	if opts.DriftInterval > 0 {
		go scheduleDrift(ctx, st.Queue, gh, drift, opts, logger)
	}
	return srv.Run(ctx, ln)
}

// scheduleDrift enqueues a drift check of every repository each interval;
// the workers run it like any job, one at a time with the applies of the
// same repository.
func scheduleDrift(ctx context.Context, q store.Queue, gh *nestgh.Client, repos []nestgh.Repo, opts *serveOptions, log *slog.Logger) {
	t := time.NewTicker(opts.DriftInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, repo := range repos {
				job := bot.DriftJob{Repo: repo.FullName(), Branch: opts.DriftBranch,
					CloneURL: cloneURLFor(cmp.Or(opts.IO.Getenv("GITHUB_SERVER_URL"), "https://github.com"), repo)}
				if opts.GitHub.AppID != "" {
					id, err := gh.RepoInstallation(ctx, repo)
					if err != nil {
						log.Error("drift: find the App's installation", "repository", repo.FullName(), "err", err)
						continue
					}
					job.InstallationID = id
				}
				payload, _ := json.Marshal(job)
				err := q.Enqueue(ctx, store.Job{ID: fmt.Sprintf("drift-%s-%d", repo.FullName(), now.Unix()), Event: "drift",
					Key: repo.FullName(), Payload: payload, Received: now.UTC()})
				if err != nil {
					log.Error("drift: enqueue the check", "repository", repo.FullName(), "err", err)
				}
			}
		}
	}
}
