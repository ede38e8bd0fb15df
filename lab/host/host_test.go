package host_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/lab/tailnet"
)

// These tests run real control, DERP and STUN servers and tsnet nodes on
// loopback. The "bot" is a tsnet node that reaches hosts only through SSH
// over the tailnet, as nestbot does.

func startLab(t *testing.T) *tailnet.Lab {
	t.Helper()
	lab := &tailnet.Lab{Tags: []string{"tag:nest", "tag:nestbot"}}
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	return lab
}

func boot(t *testing.T, ctx context.Context, lab *tailnet.Lab, cfg host.Config) *host.Host {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = filepath.Join(t.TempDir(), cfg.Name)
	}
	if cfg.Tags == nil {
		cfg.Tags = []string{"tag:nest"}
	}
	if testing.Verbose() {
		cfg.Logf = t.Logf
	}
	start := time.Now()
	h, err := host.Boot(ctx, lab, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host %s booted and joined in %v", cfg.Name, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { h.Close() })
	return h
}

func startBot(t *testing.T, ctx context.Context, lab *tailnet.Lab, name string, tags ...string) *tsnet.Server {
	t.Helper()
	s, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: name, Dir: t.TempDir(), InMemory: true, Ephemeral: true, Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dialSSH connects to name's port 22 over the tailnet and shakes hands as
// root, checking the host key with hostKey (ssh.FixedHostKey pins one).
func dialSSH(ctx context.Context, bot *tsnet.Server, name string, hostKey ssh.HostKeyCallback) (*ssh.Client, error) {
	conn, err := bot.Dial(ctx, "tcp", name+":22")
	if err != nil {
		return nil, err
	}
	return handshake(ctx, conn, name, hostKey)
}

// handshake does the SSH client handshake as root on conn, bounded by ctx's
// deadline, and closes conn if it fails.
func handshake(ctx context.Context, conn net.Conn, name string, hostKey ssh.HostKeyCallback) (*ssh.Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, name+":22", &ssh.ClientConfig{
		User:            "root",
		HostKeyCallback: hostKey,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// dialer returns a dial for unitResult: SSH to h, pinning its host key.
func dialer(bot *tsnet.Server, h *host.Host) func(context.Context) (*ssh.Client, error) {
	return func(ctx context.Context) (*ssh.Client, error) {
		return dialSSH(ctx, bot, h.Name(), ssh.FixedHostKey(h.HostKey()))
	}
}

func mustDial(t *testing.T, ctx context.Context, bot *tsnet.Server, h *host.Host) *ssh.Client {
	t.Helper()
	c, err := dialer(bot, h)(ctx)
	if err != nil {
		t.Fatalf("ssh to %s: %v", h.Name(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs one command over SSH. A session that ends without an exit
// status (the connection died) is an error.
func run(c *ssh.Client, cmd string, stdin []byte) (result, error) {
	s, err := c.NewSession()
	if err != nil {
		return result{}, err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if stdin != nil {
		s.Stdin = bytes.NewReader(stdin)
	}
	err = s.Run(cmd)
	r := result{stdout.String(), stderr.String(), 0}
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitStatus()
	case err != nil:
		return r, err
	}
	return r, nil
}

func mustRun(t *testing.T, c *ssh.Client, cmd string, stdin []byte) string {
	t.Helper()
	r, err := run(c, cmd, stdin)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", cmd, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func revision(t *testing.T, c *ssh.Client) string {
	t.Helper()
	var v struct {
		NixosVersion          string `json:"nixosVersion"`
		ConfigurationRevision string `json:"configurationRevision"`
	}
	out := mustRun(t, c, "nixos-version --json", nil)
	if err := json.Unmarshal([]byte(out), &v); err != nil || !strings.HasPrefix(v.NixosVersion, "25.05") {
		t.Fatalf("nixos-version --json = %q (%v)", out, err)
	}
	return v.ConfigurationRevision
}

func sourceTar(t *testing.T, rev string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{".nest-revision", rev + "\n"},
		{"infra/nix/flake.nix", "{ outputs = _: { }; }\n"},
		{"infra/nix/hosts/web.nix", "{ }\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// startSwitch ships rev's source tree over the session's stdin and starts
// nixos-rebuild switch detached, in unit nest-switch-<rev>.
func startSwitch(t *testing.T, c *ssh.Client, name, rev string) string {
	t.Helper()
	dir := "$HOME/.nest/src/" + rev
	mustRun(t, c, "mkdir -p "+dir+" && tar -x -C "+dir, sourceTar(t, rev))
	unit := "nest-switch-" + rev
	mustRun(t, c, fmt.Sprintf("systemd-run --unit %s -p RemainAfterExit=yes -- nixos-rebuild switch --flake %s/infra/nix#%s", unit, dir, name), nil)
	return unit
}

// unitResult polls the unit until it has ended and returns its
// ExecMainStatus. Each poll is a new session, on a new connection if the
// last one broke; the wait is bounded by ctx.
func unitResult(t *testing.T, ctx context.Context, dial func(context.Context) (*ssh.Client, error), unit string) int {
	t.Helper()
	var c *ssh.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		if c == nil {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, _ = dial(dctx)
			cancel()
		}
		if c != nil {
			r, err := run(c, "systemctl show "+unit+" -p SubState,ExecMainStatus", nil)
			if err != nil {
				c.Close()
				c = nil
			} else {
				var sub string
				var status int
				fmt.Sscanf(strings.ReplaceAll(r.stdout, "\n", " "), "SubState=%s ExecMainStatus=%d", &sub, &status)
				if sub == "exited" || sub == "failed" {
					return status
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", unit, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// keepalive sends an SSH keepalive every interval until the connection
// fails.
func keepalive(c *ssh.Client, interval time.Duration) {
	for {
		if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			c.Close()
			return
		}
		time.Sleep(interval)
	}
}

func TestBootProbeAndSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")

	nodes, err := tailnet.Nodes(ctx, bot)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(nodes, func(n tailnet.Node) bool { return n.Name == "web" })
	if i < 0 || !slices.Equal(nodes[i].Tags, []string{"tag:nest"}) || nodes[i].IPs[0] != web.TailscaleIP() {
		t.Fatalf("bot sees %+v, want web tagged tag:nest at %v", nodes, web.TailscaleIP())
	}

	start := time.Now()
	c := mustDial(t, ctx, bot, web)
	t.Logf("tsnet dial + SSH handshake: %v", time.Since(start).Round(time.Millisecond))
	if rev := revision(t, c); rev != "aaaa" {
		t.Errorf("revision %q, want aaaa", rev)
	}
	if got := mustRun(t, c, "cat /etc/ssh/ssh_host_ed25519_key.pub", nil); !strings.HasPrefix(got, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(web.HostKey())))) {
		t.Errorf("host key file %q is not the key the host serves", got)
	}

	// stdin, stdout, stderr and the exit status go through.
	r, err := run(c, "cat; echo oops >&2; exit 7", []byte("quack"))
	if err != nil || r.stdout != "quack" || r.stderr != "oops\n" || r.code != 7 {
		t.Errorf("cat; echo oops >&2; exit 7 = %+v, %v", r, err)
	}

	// Arm a dead-man timer, switch detached, confirm.
	mustRun(t, c, "systemd-run --unit nest-deadman --on-active=60s -- nixos-rebuild switch --rollback", nil)
	unit := startSwitch(t, c, "web", "bbbb")
	dial := dialer(bot, web)
	if status := unitResult(t, ctx, dial, unit); status != 0 {
		t.Fatalf("%s ended with status %d", unit, status)
	}
	if rev := revision(t, c); rev != "bbbb" {
		t.Errorf("after the switch, revision %q, want bbbb", rev)
	}
	mustRun(t, c, "systemctl stop nest-deadman.timer", nil)
	if got := mustRun(t, c, "nix-env -p /nix/var/nix/profiles/system --list-generations | grep -c .; systemctl is-active nest-deadman.timer || true", nil); got != "2\ninactive\n" {
		t.Errorf("generations and timer after confirming: %q, want 2 generations and the timer inactive", got)
	}
	if st, err := web.State(); err != nil || st.Revision != "bbbb" || st.Generation != 2 {
		t.Errorf("host state %+v (%v), want generation 2 at bbbb", st, err)
	}
}

func TestHostKeyAndPeerChecks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab := startLab(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa", HostKey: key, SSHFrom: []string{"tag:nestbot"}})
	if want, _ := ssh.NewPublicKey(key.Public()); !bytes.Equal(web.HostKey().Marshal(), want.Marshal()) {
		t.Error("HostKey is not the configured key")
	}
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")
	stranger := startBot(t, ctx, lab, "stranger")

	other, _, _ := ed25519.GenerateKey(rand.Reader)
	wrong, _ := ssh.NewPublicKey(other)
	if c, err := dialSSH(ctx, bot, "web", ssh.FixedHostKey(wrong)); err == nil {
		c.Close()
		t.Error("SSH with a wrongly pinned host key succeeded")
	}

	c, err := dialSSH(ctx, stranger, "web", ssh.FixedHostKey(web.HostKey()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := run(c, "touch /var/pwned", nil); err != nil || r.code == 0 || !strings.Contains(r.stderr, "does not permit stranger") {
		t.Errorf("untagged peer: %+v, %v; want refused", r, err)
	}
	mustRun(t, mustDial(t, ctx, bot, web), "true", nil)
}

func TestFaultsVisibleToClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")
	c := mustDial(t, ctx, bot, web)
	dial := dialer(bot, web)

	web.SetFaults(host.Faults{SwitchFails: true})
	if status := unitResult(t, ctx, dial, startSwitch(t, c, "web", "bbbb")); status != 4 {
		t.Errorf("failing switch: unit status %d, want 4", status)
	}
	if r, _ := run(c, "systemctl is-system-running --wait", nil); r.code == 0 || r.stdout != "degraded\n" {
		t.Errorf("after a failed switch unit, is-system-running = %+v, want degraded", r)
	}
	mustRun(t, c, "systemctl reset-failed && nix-env -p /nix/var/nix/profiles/system -G 1 && /nix/var/nix/profiles/system/bin/switch-to-configuration switch", nil)

	web.SetFaults(host.Faults{HealthFails: true})
	if status := unitResult(t, ctx, dial, startSwitch(t, c, "web", "cccc")); status != 0 {
		t.Errorf("unhealthy switch: unit status %d, want 0", status)
	}
	if rev := revision(t, c); rev != "cccc" {
		t.Errorf("revision %q, want cccc", rev)
	}
	if r, _ := run(c, "systemctl is-system-running --wait", nil); r.code != 1 || r.stdout != "degraded\n" {
		t.Errorf("unhealthy generation: is-system-running = %+v, want degraded, exit 1", r)
	}
}

func TestTailscaledRestartDuringSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")
	c := mustDial(t, ctx, bot, web)

	web.SetFaults(host.Faults{SlowSwitch: 300 * time.Millisecond, RestartTailscaled: 1500 * time.Millisecond})
	// A session that is open while tailscaled restarts dies with it. Its
	// connection dies silently, as with a real tailscaled restart: the
	// client notices because it sends keepalives (an idle client without
	// them would wait forever).
	go keepalive(c, 250*time.Millisecond)
	sessionDone := make(chan error, 1)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("sleep 30"); err != nil {
		t.Fatal(err)
	}
	go func() { sessionDone <- s.Wait() }()

	unit := startSwitch(t, c, "web", "bbbb")
	if err := web.WaitDown(ctx); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	select {
	case err := <-sessionDone:
		var exit *ssh.ExitError
		if err == nil || errors.As(err, &exit) && exit.ExitStatus() == 0 {
			t.Errorf("open session ended with %v, want it to die without success", err)
		}
		t.Logf("open session died %v after tailscaled went down: %v", time.Since(down).Round(time.Millisecond), err)
	case <-ctx.Done():
		t.Fatal("open session outlived the tailscaled restart")
	}

	// The switch carries on; the bot reconnects and sees it finish.
	dial := dialer(bot, web)
	if status := unitResult(t, ctx, dial, unit); status != 0 {
		t.Fatalf("%s ended with status %d", unit, status)
	}
	t.Logf("reconnected and saw the switch end %v after tailscaled went down", time.Since(down).Round(time.Millisecond))
	c2, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if rev := revision(t, c2); rev != "bbbb" {
		t.Errorf("after the switch, revision %q, want bbbb", rev)
	}
	evs, err := web.Events()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ev := range evs {
		names = append(names, ev.Name)
	}
	if i, j := slices.Index(names, "tailscaled-restart"), slices.Index(names, "activate-end"); i < 0 || j < i {
		t.Errorf("events %v, want tailscaled-restart before activate-end", names)
	}
}

func TestHostNeverReturns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")
	c := mustDial(t, ctx, bot, web)

	web.SetFaults(host.Faults{NeverReturns: true})
	startSwitch(t, c, "web", "bbbb")
	if err := web.WaitDown(ctx); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	if c, err := dialSSH(dctx, bot, "web", ssh.FixedHostKey(web.HostKey())); err == nil {
		c.Close()
		t.Fatal("reached a host whose tailscaled stopped")
	}
	// On the host itself, the switch still finished.
	deadline := time.Now().Add(10 * time.Second)
	for {
		sws, err := web.Switches()
		if err != nil {
			t.Fatal(err)
		}
		if len(sws) == 1 && !sws[0].End.IsZero() {
			if sws[0].Status != 0 || sws[0].Revision != "bbbb" {
				t.Errorf("switch %+v, want a successful switch to bbbb", sws[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("switch did not finish on the host: %+v", sws)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if web.Up() {
		t.Error("host came back")
	}
}

func TestSwitchTimesFromHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")
	const slow = 400 * time.Millisecond
	var hosts []*host.Host
	for _, name := range []string{"worker-1", "worker-2"} {
		h := boot(t, ctx, lab, host.Config{Name: name, Revision: "aaaa"})
		h.SetFaults(host.Faults{SlowSwitch: slow})
		hosts = append(hosts, h)
	}
	// Both at once, then wait for both.
	var units []string
	for _, h := range hosts {
		units = append(units, startSwitch(t, mustDial(t, ctx, bot, h), h.Name(), "bbbb"))
	}
	for i, h := range hosts {
		dial := dialer(bot, h)
		if status := unitResult(t, ctx, dial, units[i]); status != 0 {
			t.Fatalf("%s: %s ended with status %d", h.Name(), units[i], status)
		}
	}
	// Each host logged its switch, by its own clock: a rollout's test can
	// check from these how many hosts were switching at once.
	for _, h := range hosts {
		s, err := h.Switches()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 1 || s[0].Status != 0 || s[0].Revision != "bbbb" || s[0].End.Sub(s[0].Start) < slow {
			t.Fatalf("%s switches %+v, want one of at least %v to bbbb", h.Name(), s, slow)
		}
	}
}

// dialPort22 opens a TCP connection to name's port 22 over the tailnet,
// trying again (each try bounded, all of them by ctx) until the node
// answers. A test that wants the SSH handshake to fail dials with it
// first, so the failure is the SSH server's and not the tailnet's.
func dialPort22(t *testing.T, ctx context.Context, bot *tsnet.Server, name string) net.Conn {
	t.Helper()
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := bot.Dial(dctx, "tcp", name+":22")
		cancel()
		if err == nil {
			return conn
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tcp to %s:22 over the tailnet: %v (last try: %v)", name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// requireSSHRefused requires name's SSH server to be down: a TCP
// connection to its port 22 over the tailnet opens, and the SSH handshake
// on it fails at once, before the server presents a host key.
func requireSSHRefused(t *testing.T, ctx context.Context, bot *tsnet.Server, name string) {
	t.Helper()
	conn := dialPort22(t, ctx, bot, name)
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var keySeen atomic.Bool
	start := time.Now()
	c, err := handshake(hctx, conn, name, func(string, net.Addr, ssh.PublicKey) error {
		keySeen.Store(true)
		return nil
	})
	if err == nil {
		c.Close()
		t.Fatalf("SSH to %s, whose SSH server is down, succeeded", name)
	}
	if keySeen.Load() {
		t.Fatalf("%s, whose SSH server is down, presented its host key (handshake: %v)", name, err)
	}
	if hctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("SSH to %s, whose SSH server is down, waited for the deadline (%v), want it closed at once", name, err)
	}
	t.Logf("tcp to %s:22 opened, SSH refused after %v: %v", name, time.Since(start).Round(time.Millisecond), err)
}

func TestSSHDownRefusesUntilCleared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")
	open := mustDial(t, ctx, bot, web)

	if err := web.SetFaults(host.Faults{SSHDown: true}); err != nil {
		t.Fatal(err)
	}
	if !web.Faults().SSHDown {
		t.Error("Faults() does not report SSHDown")
	}
	// Every new connection is closed before the handshake: the client
	// never sees a host key.
	for range 3 {
		requireSSHRefused(t, ctx, bot, "web")
	}
	// A connection opened before carries on, and the node stays up.
	if got := mustRun(t, open, "hostname", nil); got != "web\n" {
		t.Errorf("hostname on the connection opened before = %q, want web", got)
	}
	if !web.Up() {
		t.Error("the host left the tailnet with its SSH server")
	}

	if err := web.SetFaults(host.Faults{}); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, mustDial(t, ctx, bot, web), "hostname", nil); got != "web\n" {
		t.Errorf("hostname = %q after the SSH server came back, want web", got)
	}
}

func TestSSHDownSurvivesTailscaledRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")

	if err := web.SetFaults(host.Faults{SSHDown: true}); err != nil {
		t.Fatal(err)
	}
	web.StopTailscaled()
	if err := web.StartTailscaled(ctx); err != nil {
		t.Fatal(err)
	}
	requireSSHRefused(t, ctx, bot, "web")
	if err := web.SetFaults(host.Faults{}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, mustDial(t, ctx, bot, web), "true", nil)
}
