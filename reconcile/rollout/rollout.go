// Package rollout rolls a NixOS configuration across hosts reached over
// the tailnet: `nixos-rebuild switch` a few hosts at a time, each armed
// with a dead-man rollback before it switches, checked after, and the whole
// rollout halted the moment one host fails.
//
// The bot reaches a host only through SSH over its tsnet node (a Dialer),
// with the host key pinned. Per host, a run:
//
//  1. probes it (nixos-version --json, /run/current-system, the system
//     profile's generation) and skips it if it already runs the revision;
//  2. ships the repository tree at the revision as a tar stream into
//     $HOME/.nest/src/<revision>, with a .nest-revision file holding the
//     revision in the flake's directory (the flake's configurationRevision);
//  3. records the current generation and arms the dead-man rollback first:
//     a systemd timer (nest-rollback-<rev>) that, unless stopped within
//     ConfirmWithin, switches the system profile back to that generation
//     (nix-env --switch-generation N) and activates it;
//  4. starts `nixos-rebuild switch --flake <dir>#<host>` detached, as the
//     unit nest-switch-<rev> (systemd-run, RemainAfterExit=yes), so that a
//     restart of tailscaled or sshd during activation cannot kill it;
//  5. polls the unit until it ends, reconnecting as often as needed
//     (keepalives notice a connection that died silently);
//  6. checks that the host now runs the revision and runs the health
//     commands (every one must exit 0);
//  7. confirms: stops the timer.
//
// A failure at any step rolls that host back at once (the same rollback,
// started now), lets the hosts already switching in its batch finish, starts
// no other host, and the run reports where every host stands, probed again
// at the end.
//
// Before any host switches, every host of the rollout is reached and
// probed: a host that cannot be reached, or that offers another host key
// than the pinned one, halts the rollout before it starts.
//
// A Journal records each host's steps under the revision, so that a run
// that was stopped (the bot killed, the context cancelled) can be resumed by
// a new Run with the same revision: confirmed hosts are skipped as already
// on the revision, and a host the journal shows in flight is looked at on
// the host (see decide for what is done with it) and reported in
// Result.Interrupted.
package rollout // import "github.com/ducksnest/nestbot/reconcile/rollout"

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/store"
)

// Defaults for the zero values of Rollout's settings.
const (
	DefaultConfirmWithin   = 120 * time.Second
	DefaultPollInterval    = 500 * time.Millisecond
	DefaultRollbackTimeout = 5 * time.Minute
	DefaultProbeParallel   = 16
)

// Rollout is one rollout of a revision across hosts. Fill its fields and
// call Run.
type Rollout struct {
	// Dialer reaches hosts over the tailnet (the bot's *tsnet.Server).
	Dialer Dialer
	// Hosts are the hosts that Batches name, with their pinned keys.
	Hosts []Target
	// Batches lists host names batch by batch (BatchesFromSteps makes them
	// from a plan). Batches run in order: one starts when the one before
	// has finished.
	Batches [][]string
	// MaxParallel is how many hosts of a batch roll at once; at least 1.
	MaxParallel int

	// Source is the repository tree at Revision (gitops/git's Repo.Tree,
	// or os.DirFS of a checkout). It is shipped whole.
	Source fs.FS
	// FlakeDir is the flake's directory within Source ("." for the root).
	// Hosts are its nixosConfigurations.<host name>.
	FlakeDir string
	// Revision is the commit being rolled out; it names the rollout in the
	// journal, the source directory and the units on the hosts.
	Revision string

	// Health are shell command lines run on each host after its switch;
	// every one must exit 0 (e.g. "systemctl is-system-running --wait").
	Health []string
	// ConfirmWithin is how long after arming the dead-man rollback the
	// switch, health checks and confirmation must take; past it the host
	// rolls itself back. Zero means DefaultConfirmWithin.
	ConfirmWithin time.Duration

	// Journal, if set, records each step, and lets a run resume one that
	// stopped.
	Journal Journal
	// Events, if set, is called with every change of a host's state, one
	// call at a time, in order.
	Events func(Event)
	// Logf, if set, receives diagnostics (reconnects, journal trouble).
	Logf func(format string, args ...any)

	// PollInterval is how often a switch unit is polled; zero means
	// DefaultPollInterval.
	PollInterval time.Duration
	// DialTimeout bounds one dial and SSH handshake; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// RollbackTimeout bounds rolling a failed host back; zero means
	// DefaultRollbackTimeout.
	RollbackTimeout time.Duration
	// ProbeParallel is how many hosts are probed at once before and after
	// the rollout; zero means DefaultProbeParallel.
	ProbeParallel int
}

// run is one Run's state.
type run struct {
	cfg     Rollout
	names   names
	hosts   []*hostRun // in rollout order
	batches [][]*hostRun
	halted  atomic.Bool
	res     *Result

	emitMu sync.Mutex // serializes Events and Logf

	shipSem chan struct{}
}

// hostRun is one host's part in a run.
type hostRun struct {
	target Target
	batch  int
	conn   *conn

	// From preflight.
	found    Probed
	ins      inspection
	dec      decision
	inFlight bool
	gen      int // the generation to roll back to; 0 while unknown

	mu       sync.Mutex
	state    State
	detail   string
	err      error
	now      Probed
	nowFresh bool // now was probed after the host's last step

	shipOnce sync.Once
	shipDone chan struct{}
	shipErr  error
}

func (h *hostRun) setNow(p Probed) {
	h.mu.Lock()
	h.now, h.nowFresh = p, true
	h.mu.Unlock()
}

func (h *hostRun) getState() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// Run rolls the revision out. The error is the failure that halted the
// rollout (a *HostError), ctx's error if it was cancelled (the hosts in
// flight are left to their dead-man timers, and the journal says where
// they were), or a configuration error; the Result says where every host
// stands in any case but the last.
func (r *Rollout) Run(ctx context.Context) (*Result, error) {
	cfg, err := r.withDefaults()
	if err != nil {
		return nil, err
	}
	ru := &run{
		cfg:     cfg,
		names:   newNames(cfg.Revision, cfg.FlakeDir),
		res:     &Result{Revision: cfg.Revision, Started: time.Now()},
		shipSem: make(chan struct{}, max(cfg.MaxParallel, 4)),
	}
	byName := map[string]Target{}
	for _, t := range cfg.Hosts {
		byName[t.Name] = t
	}
	for i, names := range cfg.Batches {
		var batch []*hostRun
		for _, name := range names {
			h := &hostRun{target: byName[name], batch: i + 1, shipDone: make(chan struct{})}
			h.conn = newConn(cfg.Dialer, h.target, cfg.DialTimeout, ru.logf)
			ru.hosts = append(ru.hosts, h)
			batch = append(batch, h)
		}
		ru.batches = append(ru.batches, batch)
	}
	defer func() {
		for _, h := range ru.hosts {
			h.conn.close()
		}
	}()

	if cfg.Journal != nil {
		ins, err := Interrupted(cfg.Journal, cfg.Revision)
		if err != nil {
			return nil, err
		}
		ru.res.Interrupted = ins
	}

	ru.preflight(ctx)
	if ctx.Err() == nil {
		ru.rollBatches(ctx)
	}
	if ctx.Err() == nil {
		ru.reprobe(ctx)
	}
	return ru.finish(ctx)
}

// withDefaults checks the configuration and fills in defaults.
func (r *Rollout) withDefaults() (Rollout, error) {
	cfg := *r
	fail := func(format string, args ...any) (Rollout, error) {
		return cfg, fmt.Errorf("rollout: "+format, args...)
	}
	if cfg.Dialer == nil {
		return fail("no dialer: the bot's tailnet node is needed to reach hosts")
	}
	if !validRevision.MatchString(cfg.Revision) {
		return fail("bad revision %q: give the commit being rolled out", cfg.Revision)
	}
	if cfg.FlakeDir == "" {
		cfg.FlakeDir = "."
	}
	cfg.FlakeDir = path.Clean(cfg.FlakeDir)
	if !fs.ValidPath(cfg.FlakeDir) || !validFlakeDir.MatchString(cfg.FlakeDir) {
		return fail("bad flake directory %q: give a relative path inside the repository (letters, digits, . _ + - /)", r.FlakeDir)
	}
	if err := checkSource(cfg.Source, cfg.FlakeDir); err != nil {
		return fail("%v", err)
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 1
	}
	if cfg.ConfirmWithin == 0 {
		cfg.ConfirmWithin = DefaultConfirmWithin
	}
	if cfg.ConfirmWithin < time.Second {
		return fail("confirm_within %v is too short to switch and check a host; give at least 1s", cfg.ConfirmWithin)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RollbackTimeout <= 0 {
		cfg.RollbackTimeout = DefaultRollbackTimeout
	}
	if cfg.ProbeParallel <= 0 {
		cfg.ProbeParallel = DefaultProbeParallel
	}
	for _, c := range cfg.Health {
		if strings.TrimSpace(c) == "" {
			return fail("an empty health command")
		}
	}
	known := map[string]bool{}
	for _, t := range cfg.Hosts {
		if !validHostName.MatchString(t.Name) {
			return fail("bad host name %q", t.Name)
		}
		if known[t.Name] {
			return fail("host %s is listed twice", t.Name)
		}
		known[t.Name] = true
	}
	inBatch := map[string]bool{}
	for i, b := range cfg.Batches {
		for _, name := range b {
			if !known[name] {
				return fail("batch %d names %q, which is not among the hosts", i+1, name)
			}
			if inBatch[name] {
				return fail("host %s is in two batches", name)
			}
			inBatch[name] = true
		}
	}
	return cfg, nil
}

func (ru *run) logf(format string, args ...any) {
	if ru.cfg.Logf == nil {
		return
	}
	ru.emitMu.Lock()
	defer ru.emitMu.Unlock()
	ru.cfg.Logf(format, args...)
}

// set moves h to state, telling Events and the journal.
func (ru *run) set(h *hostRun, state State, detail string) {
	h.mu.Lock()
	h.state, h.detail = state, detail
	gen := h.gen
	h.mu.Unlock()
	now := time.Now()
	if j := ru.cfg.Journal; j != nil {
		err := j.Record(store.Entry{Rollout: ru.cfg.Revision, Host: h.target.Name, Step: string(state), Time: now, Generation: gen, Detail: detail})
		if err != nil {
			ru.logf("rollout: %s: journal: %v", h.target.Name, err)
		}
	}
	if ru.cfg.Events == nil {
		return
	}
	ru.emitMu.Lock()
	defer ru.emitMu.Unlock()
	ru.cfg.Events(Event{Time: now, Revision: ru.cfg.Revision, Host: h.target.Name, Batch: h.batch, State: state, Generation: gen, Detail: detail})
}

// preflight reaches and probes every host, and decides what to do with
// each. A host that cannot be reached or offers the wrong key halts the
// rollout before it starts.
func (ru *run) preflight(ctx context.Context) {
	ru.parallel(ctx, ru.hosts, func(h *hostRun) {
		var hist []store.Entry
		if j := ru.cfg.Journal; j != nil {
			var err error
			if hist, err = j.History(ru.cfg.Revision, h.target.Name); err != nil {
				ru.logf("rollout: %s: journal: %v", h.target.Name, err)
			}
		}
		if n := len(hist); n > 0 && State(hist[n-1].Step).inFlight() {
			h.inFlight = true
		}
		h.gen = lastGeneration(hist)
		p, err := probe(ctx, h.conn, ru.names.inspectSections(&h.ins))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ru.halted.Store(true)
			ru.fail(h, StateQueued, fmt.Errorf("before the rollout: %w", err))
			return
		}
		h.found = p
		h.dec = decide(ru.cfg.Revision, p, h.ins, h.inFlight)
		if h.inFlight {
			ru.noteFound(h.target.Name, h.dec.found)
		}
		switch h.dec.act {
		case actSkip:
			h.setNow(p)
			ru.set(h, StateSkipped, h.dec.detail)
		case actFail:
			ru.halted.Store(true)
			err := errors.New(h.dec.detail)
			if h.dec.rolledBack {
				h.mu.Lock()
				h.err = &HostError{Host: h.target.Name, Step: StateSwitching, RolledBack: true, Err: err}
				h.mu.Unlock()
				ru.set(h, StateRolledBack, h.dec.detail)
				ru.afterRollback(ctx, h)
				return
			}
			ru.fail(h, StateQueued, err)
		default:
			detail := ""
			if h.found.Revision != "" {
				detail = "on " + shortRev(h.found.Revision)
			}
			if h.inFlight {
				detail = h.dec.found
			}
			ru.set(h, StateQueued, detail)
		}
	})
	if ru.halted.Load() {
		for _, h := range ru.hosts {
			if h.getState() == StateQueued && !resumes(h) {
				ru.set(h, StateSkipped, "not started: the rollout halted before it began")
			}
		}
	}
}

// resumes reports whether h is a host an earlier run left switching, which
// is seen through even when the rollout halts.
func resumes(h *hostRun) bool { return h.dec.act == actWait || h.dec.act == actHealth }

func (ru *run) noteFound(host, found string) {
	for i := range ru.res.Interrupted {
		if ru.res.Interrupted[i].Host == host {
			ru.res.Interrupted[i].Found = found
		}
	}
}

// parallel runs f for each host, ProbeParallel at a time.
func (ru *run) parallel(ctx context.Context, hosts []*hostRun, f func(*hostRun)) {
	sem := make(chan struct{}, ru.cfg.ProbeParallel)
	var wg sync.WaitGroup
	for _, h := range hosts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(h)
		}()
	}
	wg.Wait()
}

// rollBatches rolls batch after batch, MaxParallel hosts at a time, in
// order, until a host fails.
func (ru *run) rollBatches(ctx context.Context) {
	for i, batch := range ru.batches {
		// Ship ahead: this batch's sources, and the next one's while this
		// one switches. Shipping changes nothing a host runs.
		ru.shipAhead(ctx, batch)
		if i+1 < len(ru.batches) {
			ru.shipAhead(ctx, ru.batches[i+1])
		}
		sem := make(chan struct{}, ru.cfg.MaxParallel)
		var wg sync.WaitGroup
		for _, h := range batch {
			if h.getState().Final() {
				continue
			}
			if ru.halted.Load() && !resumes(h) {
				ru.set(h, StateSkipped, "not started: the rollout halted")
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			if ru.halted.Load() && !resumes(h) {
				<-sem
				ru.set(h, StateSkipped, "not started: the rollout halted")
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ru.roll(ctx, h)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
	}
}

// reprobe probes, once more, the hosts whose last probe is older than
// their last step, so that the result says what each one runs.
func (ru *run) reprobe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*ru.cfg.DialTimeout)
	defer cancel()
	var stale []*hostRun
	for _, h := range ru.hosts {
		h.mu.Lock()
		fresh := h.nowFresh
		h.mu.Unlock()
		if !fresh {
			stale = append(stale, h)
		}
	}
	ru.parallel(ctx, stale, func(h *hostRun) {
		if p, err := probe(ctx, h.conn, nil); err == nil {
			h.setNow(p)
		} else {
			ru.logf("rollout: %s: final probe: %v", h.target.Name, err)
		}
	})
}

// finish assembles the result.
func (ru *run) finish(ctx context.Context) (*Result, error) {
	res := ru.res
	res.Finished = time.Now()
	var first error
	for _, h := range ru.hosts {
		h.mu.Lock()
		hr := HostResult{
			Name:       h.target.Name,
			Batch:      h.batch,
			State:      h.state,
			Detail:     h.detail,
			From:       h.found.Revision,
			Now:        h.now,
			Reachable:  h.nowFresh,
			Reconnects: h.conn.reconnects(),
			Timings:    h.conn.getTimings(),
		}
		if first == nil && h.err != nil {
			first = h.err
		}
		h.mu.Unlock()
		if k := h.conn.hostKey(); k != nil {
			hr.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
			hr.Now.HostKey = k
		}
		res.Hosts = append(res.Hosts, hr)
	}
	res.Halted = ru.halted.Load()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("rollout %s: stopped: %w (hosts in flight roll themselves back unless a new run resumes them)", shortRev(ru.cfg.Revision), err)
	}
	if first != nil {
		return res, first
	}
	if res.Halted {
		return res, fmt.Errorf("rollout %s: halted", shortRev(ru.cfg.Revision))
	}
	return res, nil
}
