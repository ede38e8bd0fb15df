package host_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/lab/tailnet"
)

// labFor starts a tailnet for a test.
func labFor(t *testing.T) *tailnet.Lab {
	t.Helper()
	lab := &tailnet.Lab{Tags: []string{"tag:nest", "tag:nestbot"},
		SSH: []tailnet.SSHRule{{Src: []string{"tag:nestbot"}, Dst: []string{"tag:nest"}, Users: []string{"root"}}}}
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	return lab
}

func bootHost(t *testing.T, ctx context.Context, lab *tailnet.Lab, cfg host.Config) *host.Host {
	t.Helper()
	if testing.Short() {
		t.Skip("boots lab hosts (systemd-nspawn)")
	}
	if cfg.Root == "" {
		cfg.Root = filepath.Join(t.TempDir(), cfg.Name)
	}
	if cfg.Tags == nil {
		cfg.Tags = []string{"tag:nest"}
	}
	cfg.Logf = t.Logf
	h, err := host.Boot(ctx, lab, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestBootInstallsAndJoins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labFor(t)
	h := bootHost(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	st, err := h.State()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state %+v", st)
	if st.Revision != "aaaa" || st.Generation != 1 || st.System != st.Booted {
		t.Errorf("state %+v, want revision aaaa on generation 1, booted", st)
	}
	// Real systemctl: a blank line between units (the stub printed none).
	out, err := h.Run(ctx, "systemctl", "show", "sshd", "tailscaled", "-p", "ActiveState", "--value")
	if err != nil || out != "active\n\nactive\n" {
		t.Errorf("systemctl show sshd tailscaled -p ActiveState --value = %q, %v", out, err)
	}
	if out, err := h.Run(ctx, "systemctl", "is-system-running"); err != nil || strings.TrimSpace(out) != "running" {
		t.Errorf("is-system-running = %q, %v", out, err)
	}
}

// A stop and start boots the boot loader's default: switch makes the new
// generation the default, test does not; /run (current-system) is gone
// across it, /nix and the profile stay.
func TestStopAndStartBootsTheBootLoadersDefault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labFor(t)
	h := bootHost(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	first, _ := h.State()
	rebuild := func(action, rev string) {
		t.Helper()
		out, err := h.Run(ctx, "sh", "-c", "rm -rf /root/f && cp -r /etc/nixos /root/f && echo "+rev+" >/root/f/.nest-revision && nixos-rebuild "+action+" --flake /root/f#web")
		if err != nil {
			t.Fatalf("nixos-rebuild %s: %v\n%s", action, err, out)
		}
	}
	reboot := func() host.State {
		t.Helper()
		h.Stop()
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := h.State()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	rebuild("test", "bbbb")
	if st, _ := h.State(); st.Revision != "bbbb" || st.Generation != 1 || st.BootDefault != 1 {
		t.Fatalf("after nixos-rebuild test: %+v, want bbbb running, generation 1 the default", st)
	}
	if st := reboot(); st.System != first.System || st.Booted != first.System || st.Revision != "aaaa" {
		t.Errorf("after test and a reboot: %+v, want generation 1 (%s) booted", st, first.System)
	}
	rebuild("switch", "cccc")
	if st := reboot(); st.Revision != "cccc" || st.Generation != 2 || st.BootDefault != 2 || st.Booted != st.System {
		t.Errorf("after switch and a reboot: %+v, want generation 2 (cccc) booted", st)
	}
}

// switch-to-configuration fails at once while another holds its lock, as
// switch-to-configuration-ng does.
func TestSwitchToConfigurationLock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labFor(t)
	h := bootHost(t, ctx, lab, host.Config{Name: "web"})
	start := time.Now()
	out, err := h.Run(ctx, "sh", "-c", "flock /run/nixos/switch-to-configuration.lock /run/current-system/bin/switch-to-configuration test")
	if err == nil || !strings.Contains(out, "Could not acquire lock") {
		t.Errorf("a second switch-to-configuration said %q, %v; want it refused on the lock", out, err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("refused after %v: it waited for the lock", d)
	}
}

// SSHDown stops sshd and Tailscale SSH: port 22 refuses; clearing it
// serves again.
func TestSSHDownRefusesUntilCleared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab, bot := sshLab(t, ctx)
	h := bootHost(t, ctx, lab, host.Config{Name: "web"})
	cfg := &ssh.ClientConfig{User: "root", HostKeyCallback: ssh.FixedHostKey(h.HostKey()), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}
	if err := h.SetFaults(host.Faults{SSHDown: true}); err != nil {
		t.Fatal(err)
	}
	if out, err := sshRun(ctx, bot, "web:22", cfg, "true"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("with SSH down: %q, %v; want the connection refused", out, err)
	}
	if err := h.SetFaults(host.Faults{}); err != nil {
		t.Fatal(err)
	}
	if out, err := sshRun(ctx, bot, "web:22", cfg, "id -u"); err != nil || out != "0\n" {
		t.Errorf("with SSH back: %q, %v", out, err)
	}
}

// sshLab is a tailnet whose policy lets tag:nestbot in to tag:nest as
// root, with the bot's node on it.
func sshLab(t *testing.T, ctx context.Context) (*tailnet.Lab, *tsnet.Server) {
	t.Helper()
	lab := &tailnet.Lab{Tags: []string{"tag:nest", "tag:nestbot"},
		SSH: []tailnet.SSHRule{{Src: []string{"tag:nestbot"}, Dst: []string{"tag:nest"}, Users: []string{"root"}}}}
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	bot, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "nestbot", Dir: t.TempDir(), InMemory: true, Ephemeral: true, Tags: []string{"tag:nestbot"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bot.Close() })
	return lab, bot
}

// sshRun opens an SSH connection to addr over the tailnet and runs cmd.
func sshRun(ctx context.Context, bot *tsnet.Server, addr string, cfg *ssh.ClientConfig, cmd string) (string, error) {
	nc, err := bot.Dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		return "", err
	}
	cl := ssh.NewClient(c, chans, reqs)
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

func TestLoginPaths(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab, bot := sshLab(t, ctx)
	_, botKey, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(botKey)
	var web, db *host.Host
	done := make(chan struct{})
	go func() {
		defer close(done)
		web = bootHost(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa"})
	}()
	db = bootHost(t, ctx, lab, host.Config{Name: "db", Revision: "aaaa", Login: host.LoginOpenSSH, DeployKeys: []ssh.PublicKey{signer.PublicKey()}})
	<-done
	if web == nil {
		t.FailNow()
	}

	// Tailscale SSH, as root, by the policy: no credentials.
	out, err := sshRun(ctx, bot, "web:22", &ssh.ClientConfig{User: "root", HostKeyCallback: ssh.FixedHostKey(web.HostKey()), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}, "id -u; nixos-version --json")
	t.Logf("tailscale ssh: %q %v", out, err)
	if err != nil || !strings.HasPrefix(out, "0\n") || !strings.Contains(out, `"configurationRevision":"aaaa"`) {
		t.Errorf("Tailscale SSH as root: %q, %v", out, err)
	}
	// OpenSSH: the deploy user with its key, sudo without a password for
	// the deploy rules only.
	cfg := &ssh.ClientConfig{User: "nestbot", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(db.HostKey()), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}
	// (nestbot's rules, from its NixOS module: systemd-run of nest-* units.)
	out, err = sshRun(ctx, bot, "db:22", cfg, "id -un; sudo -n /run/current-system/sw/bin/systemd-run --unit=nest-lab-check --wait --quiet -- /bin/true && echo ran; nixos-version")
	t.Logf("openssh: %q %v", out, err)
	if err != nil || !strings.HasPrefix(out, "nestbot\nran\n") {
		t.Errorf("OpenSSH as nestbot: %q, %v", out, err)
	}
	if out, err := sshRun(ctx, bot, "db:22", cfg, "sudo -n id"); err == nil {
		t.Errorf("sudo id ran without a password: %q", out)
	}
	root := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(db.HostKey()), HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}
	if out, err := sshRun(ctx, bot, "db:22", root, "id"); err == nil {
		t.Errorf("OpenSSH let root in: %q", out)
	}
	// tailscaled as root serves /etc/ssh's keys, the three of them: with no
	// preference, Go's client picks ecdsa.
	var offered ssh.PublicKey
	sshRun(ctx, bot, "web:22", &ssh.ClientConfig{User: "root", HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { offered = k; return nil }}, "true")
	if offered == nil || offered.Type() != ssh.KeyAlgoECDSA256 {
		t.Errorf("with no preference the host offered %v, want its ecdsa key", offered)
	}
}

// TestHostOutlivesTheThreadThatStartedIt: the parent-death signal that
// halts a host when the lab's process dies comes when the thread that
// forked nspawn exits, and Go retires a thread whenever a goroutine ends
// locked to it (as each host's network namespace setup does). A host
// booted from a goroutine that ends locked keeps running.
func TestHostOutlivesTheThreadThatStartedIt(t *testing.T) {
	if testing.Short() { // before the goroutine: a skip there would fail the test
		t.Skip("boots lab hosts (systemd-nspawn)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := labFor(t)
	var h *host.Host
	var tid int
	for h == nil {
		booted := make(chan *host.Host, 1)
		go func() {
			var h *host.Host
			defer func() { booted <- h }()
			runtime.LockOSThread() // never unlocked: the thread is retired when this ends
			if tid = unix.Gettid(); tid == os.Getpid() {
				// The main thread is never retired, only parked: try
				// another goroutine.
				runtime.UnlockOSThread()
				return
			}
			h = bootHost(t, ctx, lab, host.Config{Name: "web"})
		}()
		if h = <-booted; h == nil && (tid != os.Getpid() || ctx.Err() != nil) {
			t.FailNow()
		}
	}
	// Once the thread is gone, its children have had their signal.
	testkit.WaitForContext(t, ctx, "the booting thread to be retired", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
		return errors.Is(err, fs.ErrNotExist)
	})
	for range 3 { // a few round trips for a halt, had one begun, to show
		if out, err := h.Run(ctx, "systemctl", "is-system-running"); err != nil || strings.TrimSpace(out) != "running" {
			t.Fatalf("after the thread that booted it was retired the host says %q, %v; want running", out, err)
		}
	}
}
