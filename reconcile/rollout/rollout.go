// Package rollout rolls a NixOS configuration across hosts reached over
// the tailnet, a few hosts at a time, the way nixos-rebuild switch does it
// on one host but with a dead-man rollback around the activation, and the
// whole rollout halted the moment one host fails.
//
// The bot reaches a host only through SSH over its tsnet node (a Dialer),
// with the host key pinned, logging in as the host allows (Login): Tailscale
// SSH as root, or OpenSSH as a deploy user with nestbot's key, running its
// root commands through sudo (SudoRules). Per host, a run:
//
//  1. probes it (nixos-version --json, /run/current-system, the system
//     profile, the commit nestbot recorded there) and skips it if it runs
//     and boots the revision;
//  2. ships the commit as a git pack into a shallow repository on the host
//     (StateDir/src), so that the flake's self.rev is the commit;
//  3. builds nixosConfigurations.<attr>.config.system.build.toplevel from
//     git+file://…?rev=<commit>, detached (the unit nest-build-<rev>) and
//     bounded by BuildTimeout — or, with BuildOn local, builds it where
//     nestbot runs and nix-copies it over the same SSH login; nothing on the
//     host but its store has changed yet. A host that already runs that
//     toplevel skips to step 8;
//  4. records what /run/current-system and the system profile are, and
//     arms the dead-man rollback to them: a systemd timer
//     (nest-rollback-<rev>) that, unless stopped within ConfirmWithin,
//     waits for any activation still running and activates the system that
//     ran before (putting the profile back if it moved);
//  5. activates the new system with switch-to-configuration test, detached
//     (nest-activate-<rev>), so that a restart of sshd or tailscaled during
//     activation cannot kill it, and the boot default is still the old
//     generation: a crash or reboot inside the window boots what ran before;
//  6. waits for it, reconnecting as often as needed, then checks that the
//     host runs the built system and that no unit failed (or waits to
//     restart) that had not failed before, and runs the health commands;
//  7. confirms: stops the timer;
//  8. makes it the boot default as nixos-rebuild switch does (nix-env --set
//     the profile, switch-to-configuration boot, in nest-boot-<rev>), and
//     records the commit and toplevel in StateDir/deployed.
//
// Each unit records how it ended in a file (ExecStopPost writes
// $SERVICE_RESULT): switch-to-configuration calls reset-failed, and a
// collected unit is forgotten, so systemd cannot say afterwards.
//
// A failure at any step from 4 on rolls that host back at once (the same
// rollback, started now), lets the hosts already activating in its batch
// finish, starts no other host, and the run reports where every host
// stands, probed again at the end.
//
// Batches run in order, each once the one before has finished. Within a
// batch, MaxParallel hosts roll at once, and the next one starts as soon as
// one is done (a sliding window, not waves of MaxParallel). Each host is
// reached and probed, and its commit shipped, MaxParallel hosts ahead of
// its turn (while the hosts before it roll): a host that cannot be reached,
// or that offers another host key than the pinned one, is refused before
// anything runs on it, and halts the rollout like any failure.
//
// A Journal records each host's steps under the revision, so that a new
// Run with the same revision resumes one that was stopped (the bot killed,
// its context cancelled). A host the journal shows in flight is looked at
// on the host itself (decide): an activation still running is waited for,
// then checked and confirmed; an activated system whose dead-man timer is
// still armed is checked and confirmed; a confirmed one is made the boot
// default; a host the timer already rolled back is rolled again — the bot
// failed to confirm, not the host — unless its activation had itself
// failed, which halts the rollout like any failure (a later run tries it
// again). Interrupted lists such hosts from the journal alone;
// Result.Interrupted adds what the run found on each.
package rollout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	DefaultBuildTimeout    = time.Hour
	DefaultHealthSettle    = 3 * time.Second
)

// Where a host's system is built (Rollout.BuildOn).
const (
	BuildTarget = "target" // on the host, from the shipped commit
	BuildLocal  = "local"  // where nestbot runs, then nix copy to the host
)

// Source is the commit being rolled out, as a git repository gives it.
// gitops/git's *Repo satisfies it.
type Source interface {
	// WritePack writes a git packfile holding the commit rev, its tree and
	// every blob in it (not its history).
	WritePack(w io.Writer, rev string) error
}

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

	// Source holds the commit Revision. It is shipped to each host (or,
	// with BuildOn local, built where nestbot runs).
	Source Source
	// FlakeDir is the flake's directory within the repository ("." for
	// the root). Hosts are its nixosConfigurations.<Target.Attr>.
	FlakeDir string
	// Revision is the commit being rolled out (40 hex digits); it names
	// the rollout in the journal and the units on the hosts.
	Revision string

	// BuildOn is BuildTarget (the default) or BuildLocal.
	BuildOn string
	// Nix runs nix where nestbot runs, for BuildOn local.
	Nix *LocalNix
	// BuildTimeout bounds one host's build. Zero means DefaultBuildTimeout.
	BuildTimeout time.Duration

	// Health are shell command lines run on each host (as the login user)
	// after the trial activation and the unit check; every one must exit 0.
	Health []string
	// HealthSettle is how long, once systemd has no jobs left after the
	// activation, the unit check waits before it looks: a service that
	// starts and fails a moment later, or crash-loops, shows by then. It
	// waits only when a service runs (or waits to restart) that did not
	// run before the activation or started again since: where the
	// activation started nothing, nothing can fail a moment after its
	// start. Zero means DefaultHealthSettle.
	HealthSettle time.Duration
	// ConfirmWithin is how long after arming the dead-man rollback (once
	// the build is done) the activation, health checks and confirmation
	// must take; past it the host rolls itself back. Zero means
	// DefaultConfirmWithin.
	ConfirmWithin time.Duration

	// Journal, if set, records each step, and lets a run resume one that
	// stopped.
	Journal Journal
	// Events, if set, is called with every change of a host's state, one
	// call at a time, in order.
	Events func(Event)
	// Logger receives diagnostics (reconnects, journal trouble), each with
	// the host it concerns; nil discards.
	Logger *slog.Logger

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
	// Stop, once closed, winds the rollout down (a first Ctrl-C): no host
	// starts any more, and the hosts in flight go on until they are
	// confirmed or rolled back. Cancelling Run's context instead stops at
	// once, leaving the hosts in flight to their dead-man timers.
	Stop <-chan struct{}
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
			t := byName[name]
			h := &hostRun{target: t, batch: i + 1, names: newNames(cfg.Revision, cfg.FlakeDir, t.Login.user()),
				ready: make(chan struct{}), shipDone: make(chan struct{})}
			h.conn = newConn(cfg.Dialer, h.target, cfg.DialTimeout, ru.warn)
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
	if cfg.BuildOn == BuildLocal {
		ru.local = newLocalBuild(cfg)
		defer ru.local.close()
	}

	if cfg.Journal != nil {
		ins, err := Interrupted(cfg.Journal, cfg.Revision)
		if err != nil {
			return nil, err
		}
		ru.res.Interrupted = ins
	}

	if cfg.Stop != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-cfg.Stop:
				ru.stopped.Store(true)
				ru.halted.Store(true)
			case <-done:
			}
		}()
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
		return fail("bad revision %q: give the commit being rolled out (40 hex digits)", cfg.Revision)
	}
	if cfg.Source == nil {
		return fail("no source: the commit must come from a git repository")
	}
	switch cfg.BuildOn {
	case "":
		cfg.BuildOn = BuildTarget
	case BuildTarget:
	case BuildLocal:
		if cfg.Nix == nil {
			return fail("build_on local needs nix where nestbot runs")
		}
	default:
		return fail("build_on %q: give %s or %s", cfg.BuildOn, BuildTarget, BuildLocal)
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = DefaultBuildTimeout
	}
	if cfg.HealthSettle <= 0 {
		cfg.HealthSettle = DefaultHealthSettle
	}
	if cfg.FlakeDir == "" {
		cfg.FlakeDir = "."
	}
	cfg.FlakeDir = path.Clean(cfg.FlakeDir)
	if path.IsAbs(cfg.FlakeDir) || cfg.FlakeDir == ".." || strings.HasPrefix(cfg.FlakeDir, "../") || !validFlakeDir.MatchString(cfg.FlakeDir) {
		return fail("bad flake directory %q: give a relative path inside the repository (letters, digits, . _ + - /)", r.FlakeDir)
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
		if !validAttr.MatchString(t.attr()) {
			return fail("host %s: bad flake attribute %q", t.Name, t.attr())
		}
		if !validUser.MatchString(t.Login.user()) {
			return fail("host %s: bad login user %q", t.Name, t.Login.user())
		}
		switch t.Login.via() {
		case ViaTailscale:
		case ViaOpenSSH:
			if t.Login.Key == nil {
				return fail("host %s logs in over openssh, which needs nestbot's key", t.Name)
			}
		default:
			return fail("host %s: login via %q: give %s or %s", t.Name, t.Login.Via, ViaTailscale, ViaOpenSSH)
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
