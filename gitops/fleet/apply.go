package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ducksnest/nestbot/gitops/git"
	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/pki/certtree"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
	"github.com/ducksnest/nestbot/store"
)

// ApplyOptions shape an apply.
type ApplyOptions struct {
	// NoCommit writes certificates into pki.dir without committing them.
	NoCommit bool
	// Out receives the certificates' report; nil discards it.
	Out io.Writer
	// Events receives each host's state changes during the rollout (nil:
	// a record each to Options.Logger).
	Events func(rollout.Event)
	// AuthKey gives the tailnet auth key for a new instance's user-data
	// (nil: the secret tailnet.auth_key names).
	AuthKey func(ctx context.Context, host string) (string, error)
}

// Applied is what an apply did.
type Applied struct {
	// Report says what was done to each step (empty, not nil, when the
	// apply could not start).
	Report *reconcile.Report
	// CertCommit is the commit the apply made of the certificates ("" for
	// none).
	CertCommit string
	// Rolled is what the apply's rollout did (nil when it had none).
	Rolled *rollout.Result
}

// applying is one apply: what its planes change, for the planes after them.
type applying struct {
	s    *Session
	opts ApplyOptions
	// live is the live state as observed, with the tailnet bound again
	// once new hosts joined (as joined: host → node id).
	live   *reconcile.Live
	joined map[string]string
	// revision is what the hosts roll to: the checkout's, or the commit
	// that holds the certificates this apply issued.
	revision  string
	certHosts map[string]bool // hosts whose certificates this apply committed
	done      Applied
}

// planeStep applies one plane of a plan; apply is nil when the session
// cannot apply it (the executor then skips its steps, and says why).
type planeStep struct {
	plane reconcile.Plane
	apply reconcile.PlaneApplier
}

// Apply carries out plan plane by plane — cloud, tailnet, certificates
// (committed unless NoCommit), hosts — stopping at the first failure. The
// report says what was applied before it.
func (s *Session) Apply(ctx context.Context, plan *reconcile.Plan, opts ApplyOptions) (*Applied, error) {
	a := &applying{s: s, opts: opts, live: cloneLive(s.live)}
	if s.repo != nil {
		a.revision = s.repo.revision
	}
	steps, err := a.steps()
	if err != nil {
		a.done.Report = &reconcile.Report{} // nothing was applied
		return &a.done, err
	}
	exec := &reconcile.Executor{Appliers: map[reconcile.Plane]reconcile.PlaneApplier{}}
	for _, st := range steps {
		if st.apply != nil {
			exec.Appliers[st.plane] = st.apply
		}
	}
	if s.bot != nil && s.repo != nil {
		exec.More = func(plane reconcile.Plane, steps []reconcile.Step) []reconcile.Step {
			if plane != reconcile.PlaneHosts {
				return steps
			}
			return a.rollAlso(steps)
		}
	}
	a.done.Report, err = exec.Apply(ctx, plan)
	return &a.done, err
}

// steps are the planes of an apply, in the order they are applied
// (reconcile.Planes): the cloud, the tailnet, the certificates, the hosts.
func (a *applying) steps() ([]planeStep, error) {
	s := a.s
	api, err := s.TailscaleAPI()
	if err != nil {
		return nil, err
	}
	if a.opts.AuthKey == nil {
		a.opts.AuthKey = s.authKeys(api)
	}
	cloud, err := a.cloudStep()
	if err != nil {
		return nil, err
	}
	return []planeStep{
		{reconcile.PlaneCloud, cloud},
		{reconcile.PlaneTailnet, a.tailnetStep(api)},
		{reconcile.PlanePKI, a.pkiStep()},
		{reconcile.PlaneHosts, a.hostsStep()},
	}, nil
}

// authKeys gives each new instance its tailnet auth key: minted for it
// when the Tailscale API is at hand and the fleet has tags, else the
// secret tailnet.auth_key names; masked before anything could print it.
func (s *Session) authKeys(api *nesttailnet.API) func(ctx context.Context, host string) (string, error) {
	d := s.desired
	if api != nil && len(d.Fleet.Tailnet.Tags) > 0 {
		// One key per new host, minted for it, tagged with the fleet's
		// tags.
		mint := api.KeySource(d.Fleet.Tailnet.Tags, nesttailnet.KeyOptions{Fleet: d.Fleet.Name})
		return func(ctx context.Context, host string) (string, error) {
			key, err := mint(ctx, host)
			s.opts.mask(key)
			return key, err
		}
	}
	static := authKeySource(d.Fleet, s.opts.Getenv, s.opts.SecretsDir)
	return func(ctx context.Context, host string) (string, error) {
		key, err := static(ctx, host)
		s.opts.maskUnlessEnv(d.Fleet.Tailnet.AuthKey, key)
		return key, err
	}
}

// cloudStep applies the cloud plane through EC2, when it was observed.
func (a *applying) cloudStep() (reconcile.PlaneApplier, error) {
	s, d := a.s, a.s.desired
	if s.ec2 == nil {
		return nil, nil
	}
	deployKey, err := DeployPublicKey(d.Fleet, s.opts.Getenv, s.opts.SecretsDir)
	if err != nil {
		return nil, err
	}
	return cloudApplier(&nestaws.Applier{Client: s.ec2, Fleet: d.Fleet, Live: &a.live.Cloud, Logger: s.opts.Logger,
		AuthKey: a.opts.AuthKey, DeployKey: deployKey}), nil
}

// tailnetStep applies the tailnet plane (nestbot's node, the API or both),
// then, when a new host joined, observes the tailnet again: the later
// planes reach each host at the node bound to it now (the one that joined
// as it), not one that was named like it before.
func (a *applying) tailnetStep(api *nesttailnet.API) reconcile.PlaneApplier {
	s, d := a.s, a.s.desired
	if s.bot == nil && api == nil {
		return nil
	}
	apply := (&nesttailnet.Applier{Bot: s.bot, API: api, Tags: d.Fleet.Tailnet.Tags,
		JoinTimeout: d.Fleet.Tailnet.JoinTimeout.Duration, Logger: s.opts.Logger,
		// A new host is a node that joins now, not one that was there.
		Before: maps.Clone(s.seen), Pinned: s.pinnedNodes(nil), Since: time.Now(),
		Joined: func(host, id string) {
			if a.joined == nil {
				a.joined = map[string]string{}
			}
			a.joined[host] = id
		}}).Apply
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		out, err := apply(ctx, steps)
		if len(a.joined) > 0 && s.bot != nil {
			if t, oerr := nesttailnet.Observe(ctx, s.bot); oerr == nil {
				t.Nodes, _ = s.bind(t.Nodes, a.joined)
				a.live.Tailnet = t
			}
		}
		return out, err
	}
}

// cloudApplier adapts the AWS applier to the executor.
func cloudApplier(a *nestaws.Applier) reconcile.PlaneApplier {
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		done, err := a.Apply(ctx, steps)
		var out []reconcile.StepResult
		for i, st := range steps {
			switch {
			case i < len(done):
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: done[i].ID})
			case i == len(done) && err != nil:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: err.Error()})
			default:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "an earlier step failed"})
			}
		}
		return out, err
	}
}

// authKeySource reads the tailnet auth key for new hosts from the secret
// nest.yaml names.
func authKeySource(f *nest.Fleet, getenv func(string) string, secretsDir string) func(context.Context, string) (string, error) {
	return func(context.Context, string) (string, error) {
		if f.Tailnet.AuthKey == nil {
			return "", errors.New("tailnet.auth_key is not set in nest.yaml: new instances could not join the tailnet")
		}
		return f.Tailnet.AuthKey.Resolve(getenv, secretsDir)
	}
}

// TailscaleAPI is the Tailscale API client, from TAILSCALE_* in the
// environment or nest.yaml's tailnet.oauth; nil when neither gives
// credentials (keys then come from tailnet.auth_key, strays stay).
func (s *Session) TailscaleAPI() (*nesttailnet.API, error) {
	f := s.desired.Fleet
	cfg, err := nesttailnet.APIConfigFromEnv(s.opts.Getenv)
	if err != nil {
		return nil, err
	}
	if o := f.Tailnet.OAuth; o != nil {
		secret, err := o.ClientSecret.Resolve(s.opts.Getenv, s.opts.SecretsDir)
		if err != nil {
			return nil, fmt.Errorf("tailnet.oauth.client_secret: %w", err)
		}
		s.opts.maskUnlessEnv(&o.ClientSecret, secret)
		cfg.OAuthClientID, cfg.OAuthClientSecret = o.ClientID, secret
	}
	if s.opts.TailscaleAPIURL != "" {
		cfg.BaseURL = s.opts.TailscaleAPIURL
	}
	if !cfg.HasCredentials() {
		return nil, nil
	}
	return nesttailnet.NewAPI(cfg)
}

// CertsApplier is the certificate tree's applier, with the bot's identity
// from NEST_AGE_IDENTITY (or NEST_AGE_IDENTITY_FILE), logging to logger
// (nil discards).
func (d *Desired) CertsApplier(getenv func(string) string, logger *slog.Logger) (*certtree.Applier, error) {
	return d.certsApplier(getenv, func(string) {}, logger)
}

func (d *Desired) certsApplier(getenv func(string) string, mask func(string), logger *slog.Logger) (*certtree.Applier, error) {
	id, err := certtree.IdentityFromEnv(getenv, mask)
	if err != nil {
		return nil, err
	}
	return &certtree.Applier{Files: certtree.Dir(d.PKIDir()), Identity: id, RenewBefore: d.Fleet.PKI.RenewBefore.Duration,
		Logger: logs.AtLeast(logger, slog.LevelWarn)}, nil // its info records repeat the report CommitCerts writes
}

// ApplyCerts issues, renews, reissues and rekeys the certificate tree in the
// repository. It first observes again the live state the SANs come from (a
// host created by this apply has addresses only now) and pins the host keys
// of hosts that just joined, so their keys are encrypted to them.
func (s *Session) ApplyCerts(ctx context.Context) (*pki.Report, error) {
	return s.applyCerts(ctx, s.live, nil)
}

// applyCerts is ApplyCerts from live, as an apply's earlier planes left it
// (joined: the nodes new hosts joined as).
func (s *Session) applyCerts(ctx context.Context, live *reconcile.Live, joined map[string]string) (*pki.Report, error) {
	d := s.desired
	a, err := d.certsApplier(s.opts.Getenv, s.opts.mask, s.opts.Logger)
	if err != nil {
		return nil, err
	}
	live, err = s.refresh(ctx, live, joined)
	if err != nil {
		return nil, err
	}
	pinned, unlearned, err := s.learnHostKeys(ctx, live)
	if err != nil {
		return nil, err
	}
	rep, err := a.ApplyFleet(ctx, d.Fleet, d.HostKeys, reconcile.HostFacts(d.reconcileDesired(), live))
	if err != nil {
		return nil, err
	}
	rep.Written = append(rep.Written, pinned...)
	rep.Warnings = append(rep.Warnings, unlearned...)
	return rep, nil
}

// pkiStep applies the certificate plane, when it was observed, commits it
// (unless NoCommit), and reports each plan step by what was done to it.
func (a *applying) pkiStep() reconcile.PlaneApplier {
	s := a.s
	if s.desired.Fleet.PKI == nil || !s.live.Observed(reconcile.PlanePKI) {
		return nil
	}
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		out := make([]reconcile.StepResult, 0, len(steps))
		rep, err := s.applyCerts(ctx, a.live, a.joined)
		if err != nil {
			for _, st := range steps {
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: "nothing was written"})
			}
			return out, err
		}
		done := map[reconcile.Address]pki.Result{}
		for _, r := range rep.Results {
			done[reconcile.CertAddress(r.ID)] = r
		}
		for _, st := range steps {
			r, ok := done[st.Address]
			switch {
			case !ok:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "not in the certificate set"})
			case r.Action == pki.Held:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: r.Reason})
			case r.Action == pki.Unchanged:
				// The tree changed between the plan and the apply.
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "already current"})
			default:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: string(r.Action)})
			}
		}
		sha, err := s.desired.CommitCerts(ctx, rep, CommitOptions{NoCommit: a.opts.NoCommit, Out: a.opts.Out, Getenv: s.opts.Getenv})
		if sha != "" && s.repo != nil {
			a.revision = sha // the rollout ships the commit that holds the certificates
		}
		if sha != "" {
			a.done.CertCommit = sha
			a.certHosts = certHosts(s.desired, append(append([]string{}, rep.Written...), rep.Removed...))
		}
		return out, err
	}
}

// CommitOptions shape how certificates are committed.
type CommitOptions struct {
	NoCommit bool
	Out      io.Writer // the report; nil discards it
	Getenv   func(string) string
}

// ErrNotARepo says nest.yaml is not in a git checkout.
var ErrNotARepo = errors.New("not a git checkout")

// CommitCerts reports what a certificates apply did and commits the files
// it changed on the checked-out branch, returning the new commit ("" when
// nothing was committed).
func (d *Desired) CommitCerts(ctx context.Context, rep *pki.Report, opts CommitOptions) (string, error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	fmt.Fprintln(out, strings.TrimSpace(rep.CommitMessage()))
	for _, w := range rep.Warnings {
		fmt.Fprintln(out, "warning:", w)
	}
	changed := append(append([]string{}, rep.Written...), rep.Removed...)
	if len(changed) == 0 {
		fmt.Fprintln(out, "Nothing to commit: every certificate is current.")
		return "", nil
	}
	if opts.NoCommit {
		fmt.Fprintf(out, "%d files written under %s, not committed (--no-commit).\n", len(changed), d.Fleet.PKI.Dir)
		return "", nil
	}
	sha, err := d.commitCerts(ctx, changed, rep.CommitMessage(), opts.Getenv)
	switch {
	case errors.Is(err, ErrNotARepo):
		fmt.Fprintf(out, "%d files written under %s; not a git checkout, so nothing was committed.\n", len(changed), d.Fleet.PKI.Dir)
		return "", nil
	case err != nil:
		return "", fmt.Errorf("the files are written under %s, but the commit failed: %w", d.Fleet.PKI.Dir, err)
	}
	fmt.Fprintf(out, "Committed %d files as %s.\n", len(changed), sha[:12])
	return sha, nil
}

// commitCerts commits the changed files (relative to pki.dir) on the branch
// checked out where nest.yaml is.
func (d *Desired) commitCerts(ctx context.Context, changed []string, message string, getenv func(string) string) (string, error) {
	repo, err := git.Open(d.Root, git.Options{})
	if err != nil {
		return "", ErrNotARepo
	}
	abs := make([]string, len(changed))
	for i, p := range changed {
		if abs[i], err = filepath.Abs(filepath.Join(d.PKIDir(), filepath.FromSlash(p))); err != nil {
			return "", err
		}
	}
	author := git.Signature{Name: cmp.Or(getenv("GIT_AUTHOR_NAME"), "nestbot"), Email: cmp.Or(getenv("GIT_AUTHOR_EMAIL"), "nestbot@users.noreply.github.com")}
	return repo.CommitWorktree(ctx, abs, message, author)
}

// hostsStep rolls the plan's hosts, when the tailnet was joined and
// nest.yaml is in a git checkout: nixos-rebuild switch, in batches, with a
// dead-man rollback armed on each host first.
func (a *applying) hostsStep() reconcile.PlaneApplier {
	s := a.s
	if s.bot == nil || s.repo == nil {
		return nil
	}
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		res, err := s.rollout(ctx, a.live, a.revision, steps, s.events(a.opts))
		out := make([]reconcile.StepResult, 0, len(steps))
		for _, st := range steps {
			name := st.Address.Name
			hr, ok := res.Host(name)
			switch {
			case !ok:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "not rolled"})
			case hr.State == rollout.StateConfirmed:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: "on " + ShortRev(hr.Now.Revision)})
			case hr.State == rollout.StateSkipped:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: hr.Detail})
			default:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: fmt.Sprintf("%s: %s (now on %s)", hr.State, hr.Detail, ShortRev(hr.Now.Revision))})
			}
		}
		a.done.Rolled = res
		return out, err
	}
}

func (s *Session) events(o ApplyOptions) func(rollout.Event) {
	if o.Events != nil {
		return o.Events
	}
	return func(e rollout.Event) { logs.Or(s.opts.Logger).Info("rollout: "+e.String(), "host", e.Host) }
}

// Rollout rolls the hosts of steps (the plan's hosts plane) to the
// checkout's revision.
func (s *Session) Rollout(ctx context.Context, steps []reconcile.Step, events func(rollout.Event)) (*rollout.Result, error) {
	if s.bot == nil || s.repo == nil {
		return &rollout.Result{}, errors.New("rollout needs the tailnet and a git checkout")
	}
	return s.rollout(ctx, s.live, s.repo.revision, steps, events)
}

// rollout rolls the hosts of steps, found in live, to revision.
func (s *Session) rollout(ctx context.Context, live *reconcile.Live, revision string, steps []reconcile.Step, events func(rollout.Event)) (*rollout.Result, error) {
	batches, err := rollout.BatchesFromSteps(steps)
	if err != nil {
		return &rollout.Result{}, err
	}
	ts, err := Targets(s.desired, live, s.opts.Getenv, s.opts.SecretsDir)
	if err != nil {
		return &rollout.Result{}, err
	}
	db := s.opts.DB
	if db == nil {
		if db, err = store.Open(filepath.Join(s.StateDir(), "nestbot.db")); err != nil {
			return &rollout.Result{}, err
		}
		defer db.Close()
	}
	f := s.desired.Fleet
	ro := &rollout.Rollout{Dialer: s.bot, Hosts: ts, Batches: batches, MaxParallel: f.Rollout.MaxParallel,
		Source: s.repo.git, FlakeDir: s.repo.flakeDir(f.Flake), Revision: revision, Health: f.Rollout.Health,
		ConfirmWithin: f.Rollout.ConfirmWithin.Duration, BuildOn: f.Rollout.BuildOn, BuildTimeout: f.Rollout.BuildTimeout.Duration,
		Journal: db.Journal(), Events: events,
		Logger: s.opts.Logger}
	if f.Rollout.BuildOn == rollout.BuildLocal {
		ro.Nix = s.opts.nix()
	}
	// ctx's end (a first Ctrl-C, a server shutting down) winds the
	// rollout down: no host starts, the hosts in flight are seen through.
	// What stops at once is the process (a second Ctrl-C): the hosts'
	// dead-man timers roll them back.
	ro.Stop = ctx.Done()
	res, err := ro.Run(context.WithoutCancel(ctx))
	if res == nil {
		res = &rollout.Result{}
	}
	return res, err
}

// ShortRev is a commit as people read it: 7 characters.
func ShortRev(rev string) string {
	if len(rev) > 7 {
		return rev[:7]
	}
	if rev == "" {
		return "(unknown)"
	}
	return rev
}

// certHosts are the hosts whose files among changed (relative to pki.dir)
// are: derived/<host>/… is that host's; ca/… (the CAs, their bundles, the
// service-account key) is every host's. A pinned host key (hosts/…) is a
// new host's, in the plan already, and secrets.nix is agenix's index for
// people re-keying, not part of any host's system.
func certHosts(d *Desired, changed []string) map[string]bool {
	hosts := map[string]bool{}
	for _, p := range changed {
		switch {
		case strings.HasPrefix(p, "ca/"):
			for _, h := range d.HostNames() {
				hosts[h] = true
			}
		case strings.HasPrefix(p, "derived/"):
			dir, _, ok := strings.Cut(strings.TrimPrefix(p, "derived/"), "/")
			for _, h := range d.HostNames() {
				if ok && d.Fleet.Hosts[h].NetworkingHostName() == dir {
					hosts[h] = true
				}
			}
		}
	}
	return hosts
}

// rollAlso adds to the plan's roll steps the reachable hosts whose
// certificates this apply committed, so they serve them now rather than
// after the next rollout, and numbers the batches by role again (one per
// role of rollout.order, as plans do).
func (a *applying) rollAlso(steps []reconcile.Step) []reconcile.Step {
	if len(a.certHosts) == 0 {
		return steps
	}
	d := a.s.desired
	f := d.Fleet
	rolling := map[string]bool{}
	for _, st := range steps {
		rolling[st.Address.Name] = true
	}
	for _, h := range d.HostNames() {
		run, ok := a.live.Hosts[h]
		if !a.certHosts[h] || rolling[h] || !ok || !run.Reachable {
			continue
		}
		steps = append(steps, reconcile.Step{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: reconcile.HostAddress(h),
			Reason:  "its certificates changed",
			Changes: []reconcile.Change{{Attr: "revision", Before: ShortRev(run.Revision), After: ShortRev(a.done.CertCommit)}}})
	}
	for i := range steps {
		host := f.Hosts[steps[i].Address.Name]
		if host == nil {
			continue
		}
		for g, role := range f.Rollout.Order {
			if host.HasRole(role) {
				steps[i].Batch = g + 1
				break
			}
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].Batch < steps[j].Batch })
	return steps
}
