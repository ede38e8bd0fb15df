// Package bot is what nestbot does with GitHub's events: a pull request gets
// its plan as one sticky comment and a nest/plan check run; /nest commands
// in its comments re-plan, apply, unlock or explain; a push to the default
// branch applies the whole plan under the fleet lock, reported as a
// Deployment and on the merged pull request; a drift check re-plans the
// default branch and keeps one issue current. The server (gitops/webhook
// jobs) and the Action run the same handlers.
package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/ducksnest/nestbot/store"
)

// Config is what the bot needs.
type Config struct {
	// GitHub is the client of events and drift jobs without an
	// installation: a token's, or the App's own (*nestgh.Client is one).
	GitHub GitHub
	// Installation is the client of an App's installation, for the events
	// and drift jobs that name one. Default, when GitHub is a
	// *nestgh.Client, its Installation (which, with a token, is the client
	// itself); else GitHub for every installation.
	Installation func(id int64) GitHub
	// File is nest.yaml's path in the repository; default "nest.yaml".
	File string
	// WorkDir holds the checkouts, one per job, removed after it.
	WorkDir string
	// Fleet says how to reach the live fleet (environment, endpoints,
	// the tailnet).
	Fleet fleet.Options
	// Locker holds the fleet lock: one apply at a time per fleet.
	Locker store.Locker
	// Artifacts keeps saved plans (for /nest apply) and the audit log;
	// nil keeps neither, and /nest apply is refused.
	Artifacts store.Artifacts
	// Owner names this replica in locks; default the host name and pid.
	Owner string
	// LockTTL is the fleet lock's lease, renewed while an apply runs;
	// default 2 minutes.
	LockTTL time.Duration
	// CommitEmail is the e-mail of the commits nestbot pushes itself (the
	// certificates); a push whose head commit has it starts no apply.
	// Default GIT_AUTHOR_EMAIL, else nestbot@users.noreply.github.com.
	CommitEmail string
	// DetailsURL links check runs and deployment statuses (the server's
	// address or the Actions run); optional.
	DetailsURL string
	// Logger receives a record per thing done, with the delivery id,
	// repository, pull request and host it concerns as attributes; nil
	// discards.
	Logger *slog.Logger
	// Events receives each host's state changes during a rollout; nil
	// logs them.
	Events func(rollout.Event)
	// ObserveHosts receives, after each drift check, how many hosts are in
	// each state: current (on the default branch's head), behind,
	// unreachable, absent (not on the tailnet).
	ObserveHosts func(byState map[string]int)
	// Mask, if set, receives every secret the bot mints while it runs (a
	// GitHub App's installation token), before it is used: the Action masks
	// them in the job's log.
	Mask func(secret string)
	// Observe counts outcomes for metrics: kind is "plan", "apply" or
	// "drift", result "success", "changes", "invalid", "failure", ...
	Observe func(kind, result string)
}

// Bot handles events. It is safe for concurrent use; jobs of one pull
// request must not run at the same time (the queue's keys see to it).
type Bot struct {
	cfg Config
}

// New returns a Bot.
func New(cfg Config) (*Bot, error) {
	if c, ok := cfg.GitHub.(*nestgh.Client); cfg.GitHub == nil || ok && c == nil {
		return nil, errors.New("bot: no GitHub client")
	}
	if cfg.Locker == nil {
		return nil, errors.New("bot: no locker: applies need the fleet lock")
	}
	if cfg.Installation == nil {
		if c, ok := cfg.GitHub.(*nestgh.Client); ok {
			cfg.Installation = func(id int64) GitHub { return c.Installation(id) }
		}
	}
	if cfg.File == "" {
		cfg.File = "nest.yaml"
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Join(os.TempDir(), "nestbot-work")
	}
	if cfg.Fleet.Getenv == nil {
		cfg.Fleet.Getenv = os.Getenv
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 2 * time.Minute
	}
	if cfg.CommitEmail == "" {
		cfg.CommitEmail = cmp.Or(cfg.Fleet.Getenv("GIT_AUTHOR_EMAIL"), "nestbot@users.noreply.github.com")
	}
	return &Bot{cfg: cfg}, nil
}

// CommitEmail is the e-mail of nestbot's own commits.
func (b *Bot) CommitEmail() string { return b.cfg.CommitEmail }

// logKey holds, in a context, the logger of the job it runs: the Bot's
// Logger with the attributes known so far (delivery, repository, pull
// request).
type logKey struct{}

// log is the logger of ctx's job.
func (b *Bot) log(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	return logs.Or(b.cfg.Logger)
}

// fleetOptions are Config.Fleet with the logger of ctx's job.
func (b *Bot) fleetOptions(ctx context.Context) fleet.Options {
	o := b.cfg.Fleet
	o.Logger = b.log(ctx)
	return o
}

// withLog adds attributes to the logger of ctx's job.
func (b *Bot) withLog(ctx context.Context, attrs ...any) (context.Context, *slog.Logger) {
	l := b.log(ctx).With(attrs...)
	return context.WithValue(ctx, logKey{}, l), l
}

func (b *Bot) observe(kind, result string) {
	if b.cfg.Observe != nil {
		b.cfg.Observe(kind, result)
	}
}

// Run handles one job: a webhook delivery (its event and payload) or a
// drift check (event "drift", payload {"repository": "owner/name"}).
func (b *Bot) Run(ctx context.Context, j store.Job) error {
	ctx, log := b.withLog(ctx, "delivery", j.ID, "event", j.Event)
	if j.Event == "drift" {
		return b.runDrift(ctx, j.Payload)
	}
	ev, err := gogithub.ParseWebHook(j.Event, j.Payload)
	if err != nil {
		return fmt.Errorf("delivery %s: %s event: %w", j.ID, j.Event, err)
	}
	switch e := ev.(type) {
	case *gogithub.PullRequestEvent:
		return b.onPullRequest(ctx, e)
	case *gogithub.IssueCommentEvent:
		_, err := b.onComment(ctx, e)
		return err
	case *gogithub.PushEvent:
		return b.onPush(ctx, e)
	default:
		log.Info("event not handled")
		return nil
	}
}

// hostStates counts the fleet's hosts by state, for ObserveHosts.
func (b *Bot) hostStates(s *fleet.Session) {
	live := s.Live()
	if b.cfg.ObserveHosts == nil || !live.Observed(reconcile.PlaneHosts) {
		return
	}
	counts := map[string]int{"current": 0, "behind": 0, "unreachable": 0, "absent": 0}
	for _, name := range s.Desired().HostNames() {
		run, ok := live.Hosts[name]
		switch {
		case !ok:
			counts["absent"]++
		case !run.Reachable:
			counts["unreachable"]++
		case run.Revision != "" && run.Revision == live.Repo.Revision:
			counts["current"]++
		default:
			counts["behind"]++
		}
	}
	b.cfg.ObserveHosts(counts)
}

// client is the GitHub client for the event's installation.
func (b *Bot) client(inst *gogithub.Installation) GitHub {
	return b.installation(inst.GetID())
}

// installation is the GitHub client for installation id; 0 is none.
func (b *Bot) installation(id int64) GitHub {
	if id != 0 && b.cfg.Installation != nil {
		return b.cfg.Installation(id)
	}
	return b.cfg.GitHub
}

// workspace checks out ref of the repository into a fresh directory, and
// returns it with a function that removes it.
func (b *Bot) workspace(ctx context.Context, gh gitCredentials, cloneURL, ref string) (*checkout, func(), error) {
	token, err := gh.GitToken(ctx)
	if err != nil {
		return nil, func() {}, err
	}
	if b.cfg.Mask != nil && token != "" && gh.InstallationID() != 0 {
		b.cfg.Mask(token) // minted now; a token from the environment is the runner's to mask
	}
	if err := os.MkdirAll(b.cfg.WorkDir, 0o700); err != nil {
		return nil, func() {}, err
	}
	dir, err := os.MkdirTemp(b.cfg.WorkDir, "job-")
	if err != nil {
		return nil, func() {}, err
	}
	done := func() { os.RemoveAll(dir) }
	co, err := checkOut(ctx, cloneURL, filepath.Join(dir, "repo"), ref, token, b.log(ctx))
	if err != nil {
		done()
		return nil, func() {}, err
	}
	co.file = filepath.Join(co.dir, filepath.FromSlash(b.cfg.File))
	return co, done, nil
}

// oneLine is s's first line, trimmed.
func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
