package rollout_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/lab/tailnet"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/ducksnest/nestbot/store"
)

// These tests run a real tailnet (tailscale's test control server, DERP
// and STUN) in this process and the lab's hosts: real systemd, sshd,
// tailscaled and nix under systemd-nspawn (lab/host). The bot is a tsnet
// node that reaches the hosts only through SSH over the tailnet: Tailscale
// SSH as root, which the tailnet policy's ssh rule allows.

const (
	revA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	revB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// source is the repository tree the rollouts ship: a flake in infra/nix
// with a nixosConfiguration for each of the fleet's hosts, on the lab's
// nixpkgs, whose configurationRevision is the shipped .nest-revision.
func (f *fleet) source() fstest.MapFS {
	src := fstest.MapFS{
		"nest.yaml":                   {Data: []byte("version: 1\n")},
		"infra/nix/scripts/check.sh":  {Data: []byte("#!/bin/sh\nexit 0\n"), Mode: 0o755},
		"infra/nix/secrets/README.md": {Data: []byte("age-encrypted keys\n")},
	}
	var hosts []host.FlakeHost
	for _, name := range f.order {
		hosts = append(hosts, host.FlakeHost{Attribute: name, Module: f.specs[name].module, NoRevision: f.specs[name].noRevision})
	}
	for name, content := range host.FlakeFiles(f.inputs, hosts...) {
		src["infra/nix/"+name] = &fstest.MapFile{Data: []byte(content)}
	}
	return src
}

// hostSpec is a lab host to boot.
type hostSpec struct {
	name     string
	revision string
	faults   host.Faults
	logf     func(string, ...any)
	// module is more of the host's configuration in the shipped source
	// (not in the one it boots with); noRevision leaves the shipped
	// flake's configurationRevision unset for it.
	module     string
	noRevision bool
}

// fleet is a lab tailnet with hosts and the bot's node.
type fleet struct {
	t      testing.TB
	lab    *tailnet.Lab
	bot    *tsnet.Server
	hosts  map[string]*host.Host
	order  []string
	specs  map[string]hostSpec
	inputs []host.Input
}

func newFleet(t testing.TB, ctx context.Context, specs ...hostSpec) *fleet {
	t.Helper()
	if testing.Short() {
		t.Skip("boots lab hosts (systemd-nspawn)")
	}
	lab := &tailnet.Lab{Tags: []string{"tag:nest", "tag:nestbot"},
		SSH: []tailnet.SSHRule{{Src: []string{"tag:nestbot"}, Dst: []string{"tag:nest"}, Users: []string{"root"}}}}
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	_, inputs, err := host.StoreDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, lab: lab, hosts: map[string]*host.Host{}, specs: map[string]hostSpec{}, inputs: inputs}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(specs)+1)
	sem := make(chan struct{}, 8)
	for _, s := range specs {
		f.order = append(f.order, s.name)
		f.specs[s.name] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cfg := host.Config{Name: s.name, Revision: s.revision, Root: filepath.Join(t.TempDir(), s.name),
				Tags: []string{"tag:nest"}, Logf: s.logf}
			h, err := host.Boot(ctx, lab, cfg)
			if err != nil {
				errs <- err
				return
			}
			if err := h.SetFaults(s.faults); err != nil {
				errs <- err
			}
			mu.Lock()
			f.hosts[s.name] = h
			mu.Unlock()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		bot, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "nestbot", Dir: t.TempDir(), InMemory: true, Ephemeral: true, Tags: []string{"tag:nestbot"}})
		if err != nil {
			errs <- err
			return
		}
		f.bot = bot
	}()
	wg.Wait()
	// Cleanups run last-in first-out: hosts close before the lab.
	for _, h := range f.hosts {
		t.Cleanup(func() { h.Close() })
	}
	if f.bot != nil {
		t.Cleanup(func() { f.bot.Close() })
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("lab with %d hosts and the bot up in %v", len(specs), time.Since(start).Round(time.Millisecond))
	return f
}

func (f *fleet) host(name string) *host.Host { return f.hosts[name] }

// targets are every host with its key pinned.
func (f *fleet) targets() []rollout.Target {
	var ts []rollout.Target
	for _, name := range f.order {
		ts = append(ts, rollout.Target{Name: name, HostKey: f.hosts[name].HostKey()})
	}
	return ts
}

// events collects a run's events.
type events struct {
	mu  sync.Mutex
	all []rollout.Event
}

func (e *events) add(ev rollout.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

// of lists one host's states, in order.
func (e *events) of(host string) []rollout.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []rollout.State
	for _, ev := range e.all {
		if ev.Host == host {
			out = append(out, ev.State)
		}
	}
	return out
}

// rollout is a rollout of revB over the fleet, quick to poll.
func (f *fleet) rollout(ev *events, batches ...[]string) *rollout.Rollout {
	r := &rollout.Rollout{
		Dialer:        f.bot,
		Hosts:         f.targets(),
		Batches:       batches,
		MaxParallel:   1,
		Source:        f.source(),
		FlakeDir:      "infra/nix",
		Revision:      revB,
		Health:        []string{"systemctl is-system-running"},
		ConfirmWithin: 30 * time.Second,
		PollInterval:  100 * time.Millisecond,
		Events: func(e rollout.Event) {
			if ev != nil {
				ev.add(e)
			}
			if testing.Verbose() {
				f.t.Log(e)
			}
		},
	}
	if testing.Verbose() {
		r.Logf = f.t.Logf
	}
	return r
}

// state reads a host's state from its root.
func (f *fleet) state(name string) host.State {
	f.t.Helper()
	st, err := f.hosts[name].State()
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// switches are a host's nixos-rebuild runs, from its own log.
func (f *fleet) switches(name string) []host.Switch {
	f.t.Helper()
	sw, err := f.hosts[name].Switches()
	if err != nil {
		f.t.Fatal(err)
	}
	return sw
}

// hostEvents are the names of a host's logged events.
func (f *fleet) hostEvents(name string) []string {
	f.t.Helper()
	evs, err := f.hosts[name].Events()
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		s := ev.Name
		if u := ev.Fields["unit"]; u != "" {
			s += " " + u
		}
		out = append(out, s)
	}
	return out
}

// armedTimers lists the nest-rollback timers still armed on a host, as
// its systemd says.
func (f *fleet) armedTimers(name string) []string {
	f.t.Helper()
	return f.units(name, "nest-rollback-*.timer", "active")
}

// units lists a host's loaded units matching pattern whose ActiveState is
// state ("" for any), as its systemd says.
func (f *fleet) units(name, pattern, state string) []string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := f.hosts[name].Run(ctx, "systemctl", "list-units", "--all", "--plain", "--no-legend", pattern)
	if err != nil {
		f.t.Fatalf("%s: systemctl list-units: %v: %s", name, err, out)
	}
	var units []string
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) >= 3 && (state == "" || fields[2] == state) {
			units = append(units, fields[0])
		}
	}
	return units
}

// journal is a unit's journal on a host.
func (f *fleet) journal(name, unit string) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := f.hosts[name].Run(ctx, "journalctl", "--no-pager", "-u", unit)
	if err != nil {
		f.t.Fatalf("%s: journalctl -u %s: %v: %s", name, unit, err, out)
	}
	return out
}

// dumpOnFailure logs, if the test failed, what the host's systemd says of
// nestbot's units and the switch, and the host's event log.
func (f *fleet) dumpOnFailure(name string) {
	if !f.t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := f.hosts[name].Run(ctx, "sh", "-c", "systemctl status --no-pager 'nest-*' nixos-rebuild-switch-to-configuration | cat; cat /var/log/nest-lab/events.log; journalctl --no-pager -u 'nest-*' -u 'nixos-rebuild*' | tail -30")
	f.t.Logf("%s:\n%s", name, out)
}

// waitFor polls cond until it holds, bounded by ctx.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func openJournal(t testing.TB) *store.Journal {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db.Journal()
}

func statesString(s []rollout.State) string {
	var parts []string
	for _, x := range s {
		parts = append(parts, string(x))
	}
	return strings.Join(parts, " → ")
}

func wantStates(t *testing.T, ev *events, host string, want ...rollout.State) {
	t.Helper()
	if got := ev.of(host); !slices.Equal(got, want) {
		t.Errorf("%s went %s, want %s", host, statesString(got), statesString(want))
	}
}

func keyString(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }

// maxOverlap is the most of the given intervals open at one instant.
func maxOverlap(sw []host.Switch) int {
	type edge struct {
		t     time.Time
		delta int
	}
	var edges []edge
	for _, s := range sw {
		edges = append(edges, edge{s.Start, 1}, edge{s.End, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.delta - b.delta // an end before a start at the same instant
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

func describe(res *rollout.Result) string {
	if res == nil {
		return "no result"
	}
	var b strings.Builder
	for _, h := range res.Hosts {
		fmt.Fprintf(&b, "\n  %s batch %d: %s (%s) now %q gen %d", h.Name, h.Batch, h.State, h.Detail, h.Now.Revision, h.Now.Generation)
	}
	return b.String()
}
