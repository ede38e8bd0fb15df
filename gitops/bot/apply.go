package bot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/ducksnest/nestbot/store"
)

// LockWait bounds how long a push waits for the fleet lock another apply
// holds.
var LockWait = 30 * time.Minute

func (b *Bot) now() time.Time { return time.Now().UTC() }

func (b *Bot) onPush(ctx context.Context, e *gogithub.PushEvent) error {
	repo := nestgh.Repo{Owner: cmp.Or(e.GetRepo().GetOwner().GetLogin(), e.GetRepo().GetOwner().GetName()), Name: e.GetRepo().GetName()}
	if e.GetDeleted() || e.GetAfter() == "" || strings.Trim(e.GetAfter(), "0") == "" {
		return nil
	}
	if email := e.GetHeadCommit().GetAuthor().GetEmail(); strings.EqualFold(email, b.cfg.CommitEmail) {
		b.log(ctx).Info("nestbot's own commit; no apply", "repository", repo.FullName(), "sha", fleet.ShortRev(e.GetAfter()))
		return nil
	}
	_, err := b.ApplyPush(ctx, b.client(e.GetInstallation()), Push{Repo: repo, CloneURL: e.GetRepo().GetCloneURL(), Ref: e.GetRef(),
		DefaultBranch: e.GetRepo().GetDefaultBranch(), SHA: e.GetAfter(), Pusher: e.GetPusher().GetName()})
	return err
}

// Push is a push to apply.
type Push struct {
	Repo     nestgh.Repo
	CloneURL string
	Ref      string // refs/heads/<branch>
	// DefaultBranch is the repository's default branch, as GitHub names
	// it: the only branch a push applies.
	DefaultBranch string
	SHA           string // the pushed head
	Pusher        string
}

// ApplyResult is what an apply came to.
type ApplyResult struct {
	Skipped    string // why nothing was applied, if nothing was
	Plan       *reconcile.Plan
	Report     *reconcile.Report
	Deployment int64
	CertCommit string
	Err        error
	// Summary is the report in Markdown, as the pull requests get it.
	Summary string

	rolled *rollout.Result
}

// ApplyPush applies a push to the repository's default branch (as GitHub
// names it, defaultBranch): the whole plan of its head commit, under the
// fleet lock. A push to any other branch applies nothing, whatever its
// nest.yaml says: github.default_branch only confirms the default branch
// (when it names another, nothing applies, and the reason says so).
func (b *Bot) ApplyPush(ctx context.Context, gh GitHub, p Push) (*ApplyResult, error) {
	repo, sha := p.Repo, p.SHA
	ctx, log := b.withLog(ctx, "repository", repo.FullName(), "sha", fleet.ShortRev(sha))
	log.Info("applying the push", "ref", p.Ref)
	branch, skip := pushBranch(p)
	if skip != "" {
		return &ApplyResult{Skipped: skip}, nil
	}
	co, done, err := b.workspace(ctx, gh, p.CloneURL, branch)
	defer done()
	if err != nil {
		return nil, err
	}
	d, err := fleet.Load(co.file)
	var invalid nest.Errors
	if err != nil && !errors.As(err, &invalid) {
		return nil, err
	}
	skip, superseded := pushSkip(b.cfg.File, d, invalid != nil, branch, co.head, sha)
	switch {
	case superseded:
		log.Info("the branch moved on; the newer push applies", "branch", branch, "head", fleet.ShortRev(co.head))
		return &ApplyResult{Skipped: skip}, nil
	case skip != "":
		return &ApplyResult{Skipped: skip}, nil
	case invalid != nil:
		b.observe("apply", "invalid")
		id, derr := gh.CreateDeployment(ctx, repo, sha, repo.Name, "nestbot: "+b.cfg.File+" is invalid")
		if derr == nil {
			derr = gh.DeploymentStatus(ctx, repo, id, "failure", fmt.Sprintf("%s has %d mistakes; nothing applied", b.cfg.File, len(invalid)), b.cfg.DetailsURL)
		}
		return &ApplyResult{Skipped: "invalid " + b.cfg.File}, errors.Join(fmt.Errorf("%s at %s:\n%w", b.cfg.File, fleet.ShortRev(sha), invalid), derr)
	}
	var prs []int
	if found, err := gh.PullsForCommit(ctx, repo, sha); err == nil {
		for _, pr := range found {
			if pr.Merged {
				prs = append(prs, pr.Number)
			}
		}
	}
	res, err := b.apply(ctx, applyRun{gh: gh, repo: repo, co: co, d: d, sha: sha, branch: branch, trigger: "push", actor: p.Pusher, prs: prs})
	return res, err
}

type applyRun struct {
	gh      applyReporter
	repo    nestgh.Repo
	co      *checkout
	d       *fleet.Desired
	sha     string
	branch  string // where certificate commits are pushed
	trigger string // push, comment
	actor   string
	prs     []int // pull requests told the result
	saved   *reconcile.SavedPlan
}

// apply runs one apply under the fleet lock, as a Deployment: observe,
// plan (or check the saved plan), apply, push the certificates' commit,
// report on the pull requests, audit.
func (b *Bot) apply(ctx context.Context, r applyRun) (*ApplyResult, error) {
	log := b.log(ctx)
	res := &ApplyResult{}
	lease, err := b.acquire(ctx, r.gh, r)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopRenew := sync.OnceFunc(b.keepLease(ctx, &lease, cancel))
	defer func() {
		stopRenew()
		if err := b.cfg.Locker.Release(context.WithoutCancel(ctx), lease); err != nil {
			log.Error("release the fleet lock", "err", err)
		}
	}()

	started := b.now()
	fleetName := r.d.Fleet.Name
	if res.Deployment, err = r.gh.CreateDeployment(ctx, r.repo, r.sha, fleetName, fmt.Sprintf("nestbot apply of %s (%s)", fleet.ShortRev(r.sha), r.trigger)); err != nil {
		return res, err
	}
	status := func(state, desc string) {
		if err := r.gh.DeploymentStatus(context.WithoutCancel(ctx), r.repo, res.Deployment, state, desc, b.cfg.DetailsURL); err != nil {
			log.Error("set the deployment's status", "deployment", res.Deployment, "state", state, "err", err)
		}
	}
	status("in_progress", "applying "+fleet.ShortRev(r.sha))

	res.Err = func() error {
		s, err := fleet.Observe(ctx, r.d, b.fleetOptions(ctx))
		if err != nil {
			return fmt.Errorf("observe the live fleet: %w", err)
		}
		defer s.Close()
		var plan *reconcile.Plan
		if r.saved != nil {
			if err := s.CheckSaved(r.saved); err != nil {
				return fmt.Errorf("the saved plan is stale: %w; comment /nest plan to see the plan as it is now", err)
			}
			plan = r.saved.Plan
		} else if plan, err = s.Plan(r.sha); err != nil {
			return err
		}
		res.Plan = plan
		if !plan.HasChanges() {
			res.Report = &reconcile.Report{}
			return nil
		}
		events := b.cfg.Events
		if events == nil {
			events = func(e rollout.Event) { log.Info("rollout: "+e.String(), "host", e.Host) }
		}
		applied, applyErr := s.Apply(ctx, plan, fleet.ApplyOptions{Out: logWriter{log}, Events: events})
		res.Report = applied.Report
		if applied.CertCommit != "" {
			res.CertCommit = applied.CertCommit
			if err := r.co.repo.Push(context.WithoutCancel(ctx), r.branch); err != nil {
				applyErr = errors.Join(applyErr, fmt.Errorf("push the certificates' commit %s to %s: %w", fleet.ShortRev(applied.CertCommit), r.branch, err))
			}
		}
		res.rolled = applied.Rolled
		return applyErr
	}()
	if cause := context.Cause(ctx); res.Err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		res.Err = fmt.Errorf("%w (%v)", res.Err, cause)
	}
	res.Err = r.co.relative(res.Err)

	result := "success"
	if res.Err != nil {
		result = "failure"
	}
	defer b.observe("apply", result) // once reported everywhere
	// The lock's holder records the outcome; a holder that lost the lock
	// is refused here, so a late result never overwrites a newer one.
	stopRenew()
	outcome, _ := json.Marshal(map[string]string{"revision": r.sha, "result": result, "at": b.now().Format(time.RFC3339)})
	if err := b.cfg.Locker.Fenced(context.WithoutCancel(ctx), lease, "applied/"+r.repo.FullName(), outcome); err != nil {
		res.Err = errors.Join(res.Err, fmt.Errorf("record the apply: %w", err))
	}
	if res.Err != nil {
		status("failure", oneLine(res.Err.Error()))
	} else {
		status("success", summaryLine(res))
	}
	report := renderApply(fleetName, r, res)
	res.Summary = report
	for _, n := range r.prs {
		if _, err := r.gh.Comment(context.WithoutCancel(ctx), r.repo, n, report); err != nil {
			log.Error("report the apply", "pr", n, "err", err)
		}
	}
	if b.cfg.Artifacts != nil {
		rec := store.AuditRecord{Fleet: fleetName, Revision: r.sha, Trigger: r.trigger, Actor: r.actor, Started: started, Finished: b.now(), Result: result}
		if res.Report != nil {
			rec.Counts = map[string]int{}
			for _, st := range []reconcile.StepStatus{reconcile.StatusApplied, reconcile.StatusFailed, reconcile.StatusSkipped} {
				rec.Counts[string(st)] = res.Report.Count(st)
			}
		}
		if res.rolled != nil {
			rec.Hosts = map[string]string{}
			for _, h := range res.rolled.Hosts {
				rec.Hosts[h.Name] = h.Now.Revision
			}
		}
		if res.Err != nil {
			rec.Error = oneLine(res.Err.Error())
		}
		if err := b.cfg.Artifacts.Audit(context.WithoutCancel(ctx), rec); err != nil {
			log.Error("audit", "err", err)
		}
	}
	log.Info("applied: "+summaryLine(res), "result", result)
	return res, res.Err
}

// acquire takes the fleet lock. A push waits (bounded by LockWait) for
// another apply to finish; a comment is told (through c) who holds it.
func (b *Bot) acquire(ctx context.Context, c commenter, r applyRun) (store.Lease, error) {
	deadline := time.Now().Add(LockWait)
	wait := 250 * time.Millisecond
	for {
		lease, err := b.cfg.Locker.Acquire(ctx, lockName(r.repo), b.cfg.Owner, b.cfg.LockTTL)
		var locked *store.LockedError
		if !errors.As(err, &locked) {
			return lease, err
		}
		if r.trigger == "comment" {
			return lease, errors.Join(err, b.reply(ctx, c, r.repo, r.prs[0], fmt.Sprintf("@%s: not applied: %s", r.actor, err)))
		}
		if time.Now().After(deadline) {
			return lease, fmt.Errorf("waited %s for the fleet lock: %w", LockWait, err)
		}
		b.log(ctx).Info("waiting for the fleet lock", "err", err)
		select {
		case <-ctx.Done():
			return lease, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// keepLease renews the lease while the apply runs; when it is lost (broken
// by /nest unlock, or expired) the apply is cancelled.
func (b *Bot) keepLease(ctx context.Context, lease *store.Lease, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(b.cfg.LockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			l, err := b.cfg.Locker.Renew(ctx, *lease, b.cfg.LockTTL)
			if err != nil {
				cancel(fmt.Errorf("the fleet lock was lost: %w", err))
				return
			}
			*lease = l
		}
	}()
	return func() { close(done); wg.Wait() }
}

// logWriter turns the lines of a report an apply writes (the
// certificates') into records.
type logWriter struct{ log *slog.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		if line = strings.TrimRight(line, "\n"); line != "" {
			l.log.Info(line)
		}
	}
	return len(p), nil
}
