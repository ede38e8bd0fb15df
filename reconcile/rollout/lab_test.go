package rollout_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/gitops/git"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/lab/tailnet"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/ducksnest/nestbot/store"
)

// These tests run a real tailnet (tailscale's test control server, DERP
// and STUN) in this process and the lab's hosts: real systemd, sshd, sudo,
// tailscaled and nix under systemd-nspawn (lab/host), each built from a
// flake on the lab's stand-in nixpkgs and set up by nestbot's NixOS module.
// The bot is a tsnet node that reaches the hosts only through SSH over the
// tailnet: Tailscale SSH as root (the tailnet policy's ssh rule lets
// tag:nestbot in), or OpenSSH as the deploy user with nestbot's key and
// sudo. What the tests change between commits is the hosts' NixOS
// configuration, as a user would: a unit that fails, a slow build, a
// change to sshd's and tailscaled's units.

// hostSpec is a lab host to boot.
type hostSpec struct {
	name        string // nest.yaml's
	attr        string // nixosConfigurations.<attr>; default name
	hostName    string // networking.hostName; default attr
	tailnetName string // default name
	login       host.Login
	noRevision  bool // the flake does not set configurationRevision
	logf        func(string, ...any)
}

func (s hostSpec) attribute() string { return cmpOr(s.attr, s.name) }
func (s hostSpec) node() string      { return cmpOr(s.tailnetName, s.name) }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fleet is a lab tailnet with hosts, the bot's node, and the repository
// the rollouts ship: a flake in infra/nix with a nixosConfiguration for
// each host.
type fleet struct {
	t      testing.TB
	lab    *tailnet.Lab
	bot    *tsnet.Server
	dialer *dropDialer
	hosts  map[string]*host.Host
	specs  map[string]hostSpec
	order  []string
	inputs []host.Input
	key    ssh.Signer // nestbot's own key, for OpenSSH logins

	repoDir string
	repo    *git.Repo
	first   string // the commit the hosts booted from
}

func newFleet(t testing.TB, ctx context.Context, specs ...hostSpec) *fleet {
	t.Helper()
	if testing.Short() {
		t.Skip("boots lab hosts (systemd-nspawn)")
	}
	fixtures.Require(t, "git")
	fixtures.Require(t, "nix")
	fixtures.Require(t, "systemd-nspawn")
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
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, lab: lab, hosts: map[string]*host.Host{}, specs: map[string]hostSpec{}, inputs: inputs, key: key, repoDir: t.TempDir()}
	for _, s := range specs {
		f.order = append(f.order, s.name)
		f.specs[s.name] = s
	}
	f.first = f.commit("the hosts as they boot", nil)
	flake := filepath.Join(t.TempDir(), "flake")
	if err := os.CopyFS(flake, os.DirFS(filepath.Join(f.repoDir, "infra/nix"))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(specs)+1)
	sem := make(chan struct{}, 4)
	for _, s := range specs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cfg := host.Config{Name: s.name, Attribute: s.attribute(), HostName: s.hostName, TailnetName: s.node(),
				Root: filepath.Join(t.TempDir(), s.name), Tags: []string{"tag:nest"}, Login: s.login, Flake: flake,
				DeployKeys: []ssh.PublicKey{key.PublicKey()}, Logf: s.logf}
			h, err := host.Boot(ctx, lab, cfg)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			f.hosts[s.name] = h
			mu.Unlock()
		})
	}
	wg.Go(func() {
		bot, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "nestbot", Dir: t.TempDir(), InMemory: true, Ephemeral: true, Tags: []string{"tag:nestbot"}})
		if err != nil {
			errs <- err
			return
		}
		f.bot = bot
		f.dialer = &dropDialer{d: bot}
	})
	wg.Wait()
	// Cleanups run last-in first-out: hosts close before the lab.
	for name, h := range f.hosts {
		t.Cleanup(func() { h.Close() })
		t.Cleanup(func() { f.dumpOnFailure(name) }) // before the host closes
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

// commit writes the flake with each host's extra configuration (a Nix
// attribute set's body, by host name) and commits it; it returns the
// commit.
func (f *fleet) commit(msg string, extra map[string]string) string {
	f.t.Helper()
	var hosts []host.FlakeHost
	for _, name := range f.order {
		s := f.specs[name]
		hosts = append(hosts, host.FlakeHost{Attribute: s.attribute(), HostName: cmpOr(s.hostName, s.attribute()), NoRevision: s.noRevision,
			DeployKeys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.key.PublicKey())))}, Module: extra[name]})
	}
	if err := os.WriteFile(filepath.Join(f.repoDir, "nest.yaml"), []byte("version: 1\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	for name, content := range host.FlakeFiles(f.inputs, hosts...) {
		p := filepath.Join(f.repoDir, "infra/nix", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", f.repoDir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...).CombinedOutput()
		if err != nil {
			f.t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if f.repo == nil {
		run("init", "-q", "-b", "main")
	}
	run("add", "-A")
	run("commit", "-q", "--allow-empty", "-m", msg)
	rev := run("rev-parse", "HEAD")
	if f.repo == nil {
		repo, err := git.Open(f.repoDir, git.Options{})
		if err != nil {
			f.t.Fatal(err)
		}
		f.repo = repo
	}
	return rev
}

// change commits the same extra configuration for every host.
func (f *fleet) change(msg, module string) string {
	f.t.Helper()
	extra := map[string]string{}
	for _, name := range f.order {
		extra[name] = module
	}
	return f.commit(msg, extra)
}

func (f *fleet) host(name string) *host.Host { return f.hosts[name] }

// targets are every host as nest.yaml would give them, keys pinned.
func (f *fleet) targets() []rollout.Target {
	var ts []rollout.Target
	for _, name := range f.order {
		s := f.specs[name]
		t := rollout.Target{Name: name, Attr: s.attribute(), Addr: s.node() + ":22", HostKey: f.hosts[name].HostKey()}
		if s.login == host.LoginOpenSSH {
			t.Login = rollout.Login{Via: rollout.ViaOpenSSH, User: host.DefaultDeployUser, Key: f.key}
		}
		ts = append(ts, t)
	}
	return ts
}

// rollout is a rollout of rev over the fleet.
func (f *fleet) rollout(rev string, ev *events, batches ...[]string) *rollout.Rollout {
	if len(batches) == 0 {
		batches = [][]string{f.order}
	}
	r := &rollout.Rollout{
		Dialer:        f.dialer,
		Hosts:         f.targets(),
		Batches:       batches,
		MaxParallel:   1,
		Source:        f.repo,
		FlakeDir:      "infra/nix",
		Revision:      rev,
		ConfirmWithin: 60 * time.Second,
		PollInterval:  100 * time.Millisecond,
		Events: func(e rollout.Event) {
			if ev != nil {
				ev.add(e)
			}
			f.t.Log(e)
		},
		Logger: slog.New(slog.NewTextHandler(f.t.Output(), nil)),
	}
	return r
}

// sh runs a shell command line on a host, as root, outside the tailnet.
func (f *fleet) sh(name, cmd string) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := f.hosts[name].Run(ctx, "/bin/sh", "-c", cmd)
	if err != nil {
		f.t.Fatalf("%s: %s: %v: %s", name, cmd, err, out)
	}
	return strings.TrimSpace(out)
}

// system is what a host runs, boots and has as its boot default.
type system struct{ current, booted, profile, generation string }

func (f *fleet) system(name string) system {
	f.t.Helper()
	l := strings.Split(f.sh(name, "readlink /run/current-system; readlink /run/booted-system; readlink -f /nix/var/nix/profiles/system; readlink /nix/var/nix/profiles/system"), "\n")
	if len(l) != 4 {
		f.t.Fatalf("%s: system %q", name, l)
	}
	return system{l[0], l[1], l[2], l[3]}
}

// bootDefault is the generation the host's boot loader starts.
func (f *fleet) bootDefault(name string) string {
	f.t.Helper()
	return f.sh(name, "sed -n 's/^default //p' /boot/loader/loader.conf")
}

// unitLog is what systemd logged of a unit on the host.
func (f *fleet) unitLog(name, unit string) string {
	f.t.Helper()
	return f.sh(name, "journalctl --no-pager -o cat -u "+unit+" || true")
}

// state reads what a host runs and its generations from its root.
func (f *fleet) state(name string) host.State {
	f.t.Helper()
	st, err := f.hosts[name].State()
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// activation is one run of switch-to-configuration on a host, from the
// host's event log (the stand-in's activate-start and activate-end), by the
// host's clock. The lock lets one run at a time: a start while one is open
// means the open one never ended (the host stopped under it).
type activation struct {
	Start, End time.Time // End is zero for one that never ended
	Action     string    // test, boot, switch
	System     string    // the toplevel activated
	Status     int
}

// activations are a host's activations of action ("" for any), in order.
func (f *fleet) activations(name, action string) []activation {
	f.t.Helper()
	evs, err := f.hosts[name].Events()
	if err != nil {
		f.t.Fatal(err)
	}
	var all []activation
	open := -1
	for _, e := range evs {
		switch e.Name {
		case "activate-start":
			all = append(all, activation{Start: e.Time, Action: e.Fields["action"], System: e.Fields["path"]})
			open = len(all) - 1
		case "activate-end":
			if open >= 0 {
				all[open].End = e.Time
				all[open].Status, _ = strconv.Atoi(e.Fields["status"])
				open = -1
			}
		}
	}
	var out []activation
	for _, a := range all {
		if action == "" || a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

// trials are a host's trial activations (switch-to-configuration test) of
// any system but not, the rollback's.
func (f *fleet) trials(name, not string) []activation {
	f.t.Helper()
	var out []activation
	for _, a := range f.activations(name, "test") {
		if a.System != not {
			out = append(out, a)
		}
	}
	return out
}

// maxOverlap is the most of the given intervals open at one instant.
func maxOverlap(as []activation) int {
	type edge struct {
		t     time.Time
		delta int
	}
	var edges []edge
	for _, a := range as {
		edges = append(edges, edge{a.Start, 1}, edge{a.End, -1})
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

// restarted lists the units the host's last activation that restarted
// units restarted (switch-to-configuration's units-restart event).
func (f *fleet) restarted(name string) string {
	f.t.Helper()
	evs, err := f.hosts[name].Events()
	if err != nil {
		f.t.Fatal(err)
	}
	last := ""
	for _, e := range evs {
		if e.Name == "units-restart" {
			last = e.Fields["units"]
		}
	}
	return last
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
	var units []string
	for line := range strings.Lines(f.sh(name, "systemctl list-units --all --plain --no-legend "+pattern)) {
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
	return f.sh(name, "journalctl --no-pager -u "+unit)
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

// of lists one host's states, in order, each once in a row.
func (e *events) of(host string) []rollout.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []rollout.State
	for _, ev := range e.all {
		if ev.Host == host && (len(out) == 0 || out[len(out)-1] != ev.State) {
			out = append(out, ev.State)
		}
	}
	return out
}

// reached reports whether the host has been in state.
func (e *events) reached(host string, state rollout.State) bool {
	return slices.Contains(e.of(host), state)
}

// dropDialer dials over the tailnet and can cut every connection it made.
type dropDialer struct {
	d     rollout.Dialer
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (d *dropDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.d.Dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.conns == nil {
		d.conns = map[net.Conn]bool{}
	}
	d.conns[c] = true
	d.mu.Unlock()
	return c, nil
}

// drop closes every connection dialed so far: as a network that broke.
func (d *dropDialer) drop() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range maps.Keys(d.conns) {
		c.Close()
	}
	n := len(d.conns)
	d.conns = nil
	return n
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

func wantStates(t testing.TB, ev *events, host string, want ...rollout.State) {
	t.Helper()
	if got := ev.of(host); !slices.Equal(got, want) {
		t.Errorf("%s went %s, want %s", host, statesString(got), statesString(want))
	}
}

func keyString(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }

func describe(res *rollout.Result) string {
	if res == nil {
		return "no result"
	}
	var b strings.Builder
	for _, h := range res.Hosts {
		fmt.Fprintf(&b, "\n  %s batch %d: %s (%s) now %q on %s", h.Name, h.Batch, h.State, h.Detail, h.Now.Revision, h.Now.System)
	}
	return b.String()
}
