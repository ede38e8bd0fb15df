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
// Batches run in order, each once the one before has finished. Within a
// batch, MaxParallel hosts roll at once, and the next one starts as soon as
// one is done (a sliding window, not waves of MaxParallel). Each host is
// reached and probed, and its source shipped, MaxParallel hosts ahead of
// its turn (while the hosts before it switch): a host that cannot be
// reached, or that offers another host key than the pinned one, is refused
// before anything runs on it, and halts the rollout like any failure.
//
// A Journal records each host's steps under the revision, so that a new
// Run with the same revision resumes one that was stopped (the bot killed,
// its context cancelled). Hosts on the revision are skipped. A host the
// journal shows in flight is looked at on the host itself: a switch still
// running is waited for, then checked and confirmed; a finished switch
// whose dead-man timer is still armed is checked and confirmed; a host the
// timer already rolled back is rolled again — the bot failed to confirm,
// not the host — unless its switch had itself failed, which halts the
// rollout like any failure (a later run tries it again). Interrupted lists
// such hosts from the journal alone; Result.Interrupted adds what the run
// found on each.
package rollout // import "github.com/ducksnest/nestbot/reconcile/rollout"

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
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
		cfg:      cfg,
		names:    newNames(cfg.Revision, cfg.FlakeDir),
		res:      &Result{Revision: cfg.Revision, Started: time.Now()},
		shipSem:  make(chan struct{}, max(cfg.MaxParallel, 4)),
		probeSem: make(chan struct{}, cfg.ProbeParallel),
	}
	byName := map[string]Target{}
	for _, t := range cfg.Hosts {
		byName[t.Name] = t
	}
	for i, names := range cfg.Batches {
		var batch []*hostRun
		for _, name := range names {
			h := &hostRun{target: byName[name], batch: i + 1, ready: make(chan struct{}), shipDone: make(chan struct{})}
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

	ru.rollBatches(ctx)
	ru.bg.Wait()
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
