package host

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The stubs, run as a session runs them but without the tailnet: the
// command line through h.command, in a real shell.

func newRoot(t *testing.T, name, rev string) *Host {
	t.Helper()
	h := &Host{
		cfg:  Config{Name: name, Revision: rev, NixOSVersion: DefaultNixOSVersion},
		root: t.TempDir(),
		stop: make(chan struct{}),
	}
	var err error
	if h.hostKey, err = h.prepareRoot(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.killUnits)
	return h
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, h *Host, line string, stdin []byte) result {
	t.Helper()
	cmd := h.command(line, "root")
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = sessionWaitDelay
	err := cmd.Run()
	return result{stdout.String(), stderr.String(), exitStatus(cmd, err)}
}

func mustRun(t *testing.T, h *Host, line string, stdin []byte) string {
	t.Helper()
	r := run(t, h, line, stdin)
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", line, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flakeTar is a source tree as the bot ships it: a flake at infra/nix and
// the revision at the top.
func flakeTar(t *testing.T, rev string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range map[string]string{
		".nest-revision":      rev + "\n",
		"infra/nix/flake.nix": "{ outputs = _: { }; }\n",
	} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type version struct {
	NixosVersion          string `json:"nixosVersion"`
	NixpkgsRevision       string `json:"nixpkgsRevision"`
	ConfigurationRevision string `json:"configurationRevision"`
}

func nixosVersion(t *testing.T, h *Host) version {
	t.Helper()
	var v version
	out := mustRun(t, h, "nixos-version --json", nil)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("nixos-version --json: %q: %v", out, err)
	}
	return v
}

func ship(t *testing.T, h *Host, rev string) string {
	t.Helper()
	dir := "$HOME/.nest/src/" + rev
	mustRun(t, h, "mkdir -p "+dir+" && tar -x -C "+dir, flakeTar(t, rev))
	return dir + "/infra/nix"
}

func TestStubsBootState(t *testing.T) {
	h := newRoot(t, "web", "aaaa")
	v := nixosVersion(t, h)
	if v.ConfigurationRevision != "aaaa" || !strings.HasPrefix(v.NixosVersion, "25.05.") || len(v.NixpkgsRevision) != 40 {
		t.Errorf("nixos-version --json = %+v, want revision aaaa on 25.05 with a 40-char nixpkgs revision", v)
	}
	if got := mustRun(t, h, "nixos-version", nil); !strings.HasSuffix(got, "(Warbler)\n") {
		t.Errorf("nixos-version = %q, want … (Warbler)", got)
	}
	sys := strings.TrimSpace(mustRun(t, h, "readlink /run/current-system", nil))
	if !regexp.MustCompile(`^/nix/store/[0-9a-df-np-sv-z]{32}-nixos-system-web-25\.05\.`).MatchString(sys) {
		t.Errorf("readlink /run/current-system = %q, want /nix/store/<hash>-nixos-system-web-25.05…", sys)
	}
	if got := mustRun(t, h, "nix-env -p /nix/var/nix/profiles/system --list-generations", nil); !regexp.MustCompile(`^   1   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d   \(current\)\n$`).MatchString(got) {
		t.Errorf("--list-generations = %q, want generation 1, current", got)
	}
	if got := mustRun(t, h, "hostname; cat /etc/hostname; cat /etc/ssh/ssh_host_ed25519_key.pub", nil); !strings.HasPrefix(got, "web\nweb\nssh-ed25519 ") {
		t.Errorf("hostname, /etc/hostname, host key = %q", got)
	}
	st, err := h.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != "aaaa" || st.Generation != 1 || st.System != sys || len(st.Generations) != 1 {
		t.Errorf("State = %+v, want generation 1 of aaaa at %s", st, sys)
	}
	if r := run(t, h, "systemctl is-system-running", nil); r.code != 0 || r.stdout != "running\n" {
		t.Errorf("is-system-running = %+v, want running", r)
	}
	if r := run(t, h, "systemctl is-active tailscaled nothing.service", nil); r.code != 0 || r.stdout != "active\ninactive\n" {
		t.Errorf("is-active tailscaled nothing = %+v, want active, inactive", r)
	}
}

func TestStubsSwitchAndRollback(t *testing.T) {
	h := newRoot(t, "web", "aaaa")
	flake := ship(t, h, "bbbb")
	r := run(t, h, "nixos-rebuild switch --flake "+flake+"#web", nil)
	if r.code != 0 || !strings.Contains(r.stderr, "building the system configuration") {
		t.Fatalf("switch = %+v", r)
	}
	if v := nixosVersion(t, h); v.ConfigurationRevision != "bbbb" {
		t.Errorf("after switch, revision %q, want bbbb", v.ConfigurationRevision)
	}
	// The same configuration again makes no new generation.
	mustRun(t, h, "nixos-rebuild switch --flake "+flake+"#web", nil)
	st, _ := h.State()
	if st.Generation != 2 || len(st.Generations) != 2 {
		t.Errorf("after two switches to bbbb: %+v, want generation 2 of 2", st)
	}

	// A rollback by hand: the profile, then the generation's activation.
	mustRun(t, h, "nix-env --profile /nix/var/nix/profiles/system --rollback && /nix/var/nix/profiles/system/bin/switch-to-configuration switch", nil)
	if v := nixosVersion(t, h); v.ConfigurationRevision != "aaaa" {
		t.Errorf("after rollback, revision %q, want aaaa", v.ConfigurationRevision)
	}
	if r := run(t, h, "nix-env -p /nix/var/nix/profiles/system --rollback", nil); r.code == 0 || !strings.Contains(r.stderr, "no generation older than the current (1)") {
		t.Errorf("rollback past generation 1 = %+v, want an error", r)
	}
	mustRun(t, h, "nix-env -p /nix/var/nix/profiles/system --switch-generation 2 && nixos-rebuild switch --rollback", nil)
	if st, _ := h.State(); st.Generation != 1 || st.Revision != "aaaa" {
		t.Errorf("after --switch-generation 2 and nixos-rebuild switch --rollback: %+v, want generation 1 (aaaa)", st)
	}

	if r := run(t, h, "nixos-rebuild switch --flake $HOME/nowhere#web", nil); r.code == 0 || !strings.Contains(r.stderr, "flake.nix' does not exist") {
		t.Errorf("switch to a missing flake = %+v, want an error", r)
	}
	sws, err := h.Switches()
	if err != nil {
		t.Fatal(err)
	}
	if len(sws) != 4 || sws[0].Revision != "bbbb" || sws[0].Status != 0 || sws[0].End.Before(sws[0].Start) ||
		!sws[2].Rollback || sws[3].Status != 1 {
		t.Errorf("Switches = %+v, want 2 switches to bbbb, a rollback and a failure", sws)
	}
}

func TestStubsUnits(t *testing.T) {
	h := newRoot(t, "web", "aaaa")
	show := func(unit string) string {
		return mustRun(t, h, "systemctl show "+unit+" -p ActiveState,Result,ExecMainStatus", nil)
	}

	// A unit that runs until told, outliving the session that started it.
	r := run(t, h, "systemd-run --unit nest-long -- sh -c 'while [ ! -e $HOME/go ]; do sleep 0.05; done; exit 3'", nil)
	if r.code != 0 || r.stderr != "Running as unit: nest-long.service\n" {
		t.Fatalf("systemd-run = %+v", r)
	}
	if got := show("nest-long"); got != "ActiveState=active\nResult=success\nExecMainStatus=0\n" {
		t.Errorf("running unit: %q", got)
	}
	if r := run(t, h, "systemd-run --unit nest-long true", nil); r.code == 0 || !strings.Contains(r.stderr, "already loaded") {
		t.Errorf("second unit of the same name = %+v, want an error", r)
	}
	mustRun(t, h, "touch $HOME/go", nil)
	waitFor(t, 5*time.Second, "nest-long to fail", func() bool {
		return run(t, h, "systemctl is-failed -q nest-long", nil).code == 0
	})
	if got := show("nest-long.service"); got != "ActiveState=failed\nResult=exit-code\nExecMainStatus=3\n" {
		t.Errorf("failed unit: %q", got)
	}
	if r := run(t, h, "systemctl is-system-running", nil); r.code != 1 || r.stdout != "degraded\n" {
		t.Errorf("with a failed unit, is-system-running = %+v, want degraded", r)
	}
	mustRun(t, h, "systemctl reset-failed nest-long", nil)
	if r := run(t, h, "systemctl is-system-running --wait", nil); r.code != 0 {
		t.Errorf("after reset-failed, is-system-running = %+v, want running", r)
	}

	// A unit that succeeds is gone; one with RemainAfterExit stays.
	mustRun(t, h, "systemd-run --unit ok1 true && systemd-run -p RemainAfterExit=yes --unit ok2 true", nil)
	waitFor(t, 5*time.Second, "ok1 and ok2 to end", func() bool {
		return run(t, h, "systemctl show ok2 -p SubState --value", nil).stdout == "exited\n"
	})
	if got := mustRun(t, h, "systemctl show ok1 -p LoadState,ActiveState,Result,ExecMainStatus", nil); got != "LoadState=not-found\nActiveState=inactive\nResult=success\nExecMainStatus=0\n" {
		t.Errorf("succeeded unit: %q", got)
	}
	if r := run(t, h, "systemd-run --wait -q --unit w -- sh -c 'echo out; exit 5'; echo status=$?; journalctl -u w", nil); r.stdout != "status=5\nout\n" {
		t.Errorf("systemd-run --wait = %+v, want status 5 and the unit's output in the journal", r)
	}

	// Timers fire after their delay, unless stopped.
	mustRun(t, h, "systemd-run --on-active=0.2 --timer-property=AccuracySec=1ms --unit fire -- touch /var/fired", nil)
	waitFor(t, 5*time.Second, "the timer to fire", func() bool {
		_, err := os.Stat(h.path("var/fired"))
		return err == nil
	})
	mustRun(t, h, "systemd-run --on-active=30s --unit deadman -- touch /var/rolledback", nil)
	if got := mustRun(t, h, "systemctl is-active deadman.timer", nil); got != "active\n" {
		t.Errorf("waiting timer: %q", got)
	}
	pid := strings.TrimSpace(mustRun(t, h, "systemctl show deadman.timer -p MainPID --value", nil))
	if !processAlive(pid) {
		t.Fatalf("timer process %s is not running", pid)
	}
	mustRun(t, h, "systemctl stop deadman.timer", nil)
	if r := run(t, h, "systemctl is-active deadman.timer", nil); r.stdout != "inactive\n" || processAlive(pid) {
		t.Errorf("after stop: %+v, process alive %v; want the timer inactive and its process gone", r, processAlive(pid))
	}
	if _, err := os.Stat(h.path("var/rolledback")); err == nil {
		t.Error("a stopped timer fired")
	}
}

// TestStubsStopRightAfterStart stops units the moment systemd-run has
// returned, before their process can have settled in its own session:
// each stop still ends the unit's process, and the unit is gone.
func TestStubsStopRightAfterStart(t *testing.T) {
	h := newRoot(t, "web", "aaaa")
	for i := range 10 {
		for _, start := range []string{
			"systemd-run --unit quick -- sleep 30",
			"systemd-run --on-active=30s --unit quick -- touch /var/fired",
		} {
			out := mustRun(t, h, start+" 2>/dev/null && systemctl show quick.service quick.timer -p MainPID --value && systemctl stop quick.timer quick.service", nil)
			var pid string
			for _, p := range strings.Fields(out) {
				if p != "0" {
					pid = p
				}
			}
			if pid == "" {
				t.Fatalf("round %d, %s: no MainPID in %q", i, start, out)
			}
			waitFor(t, 5*time.Second, "process "+pid+" of a stopped unit to end", func() bool { return !processAlive(pid) })
			if r := run(t, h, "systemctl is-active quick.service quick.timer", nil); r.stdout != "inactive\ninactive\n" {
				t.Fatalf("round %d, %s: after stop, is-active = %q, want both inactive", i, start, r.stdout)
			}
		}
	}
	if _, err := os.Stat(h.path("var/fired")); err == nil {
		t.Error("a stopped timer fired")
	}
}

// TestStubsUnitProcessIsReaped: as under systemd, a unit's main process
// has a parent that reaps it the moment it ends, whatever the machine's
// init does with orphans (this one leaves them zombies for a second or
// more): the unit's own process group leader, which waits for it. So a
// client can wait for the unit with tail --pid.
func TestStubsUnitProcessIsReaped(t *testing.T) {
	h := newRoot(t, "web", "aaaa")
	out := mustRun(t, h, "systemd-run -p RemainAfterExit=yes --unit short -- sleep 0.3 2>/dev/null && systemctl show short -p MainPID,LabProcessGroup --value", nil)
	ids := strings.Fields(out)
	if len(ids) != 2 || ids[0] == "0" {
		t.Fatalf("MainPID and LabProcessGroup of a running unit: %q", out)
	}
	main, group := ids[0], ids[1]
	b, err := os.ReadFile("/proc/" + main + "/stat")
	if err != nil {
		t.Fatalf("the unit's process %s: %v", main, err)
	}
	_, after, _ := strings.Cut(string(b), ") ")
	if f := strings.Fields(after); len(f) < 3 || f[1] != group || f[2] != group {
		t.Errorf("the unit's process %s: stat %q, want its parent and process group %s", main, after, group)
	}
	if r := run(t, h, "timeout 10 tail --pid="+main+" -s 0.02 -f /dev/null", nil); r.code != 0 {
		t.Fatalf("tail --pid %s: %+v, want it to return once the unit's process ended", main, r)
	}
	if got := mustRun(t, h, "systemctl show short -p SubState,Result,MainPID", nil); got != "SubState=exited\nResult=success\nMainPID=0\n" {
		t.Errorf("after its process ended, the unit is %q, want exited, success", got)
	}
}

func TestStubsFaults(t *testing.T) {
	h := newRoot(t, "web", "aaaa")
	flake := ship(t, h, "bbbb")

	h.SetFaults(Faults{SwitchFails: true})
	r := run(t, h, "nixos-rebuild switch --flake "+flake, nil)
	if r.code != 4 || !strings.Contains(r.stderr, "error(s) occurred while switching") {
		t.Errorf("failing switch = %+v, want exit 4", r)
	}
	if st, _ := h.State(); st.Generation != 2 || st.Revision != "bbbb" {
		t.Errorf("after a failed activation: %+v, want generation 2 (bbbb) current, as a half-done activation leaves it", st)
	}
	h.SetFaults(Faults{})
	mustRun(t, h, "nixos-rebuild switch --rollback", nil)

	h.SetFaults(Faults{HealthFails: true, SlowSwitch: 300 * time.Millisecond})
	flake = ship(t, h, "cccc")
	start := time.Now()
	mustRun(t, h, "nixos-rebuild switch --flake "+flake+"#web", nil)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("slow switch took %v, want at least 300ms", d)
	}
	if r := run(t, h, "systemctl is-system-running --wait", nil); r.code != 1 || r.stdout != "degraded\n" {
		t.Errorf("unhealthy generation: is-system-running = %+v, want degraded", r)
	}
	if got := mustRun(t, h, "systemctl list-units --failed --plain --no-legend", nil); !strings.Contains(got, "failed") {
		t.Errorf("list-units --failed = %q, want a failed unit", got)
	}
	// Back to generation 1 by number: --rollback would pick generation 2,
	// the broken one.
	mustRun(t, h, "nix-env -p /nix/var/nix/profiles/system -G 1 && /nix/var/nix/profiles/system/bin/switch-to-configuration switch", nil)
	if r := run(t, h, "systemctl is-system-running", nil); r.code != 0 {
		t.Errorf("after rolling back: is-system-running = %+v, want running", r)
	}
}

// processAlive reports whether process pid runs (exists, and is not a
// zombie waiting for a slow init to reap it).
func processAlive(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return after != "" && after[0] != 'Z' && after[0] != 'X'
}

func TestRewritePaths(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"readlink /run/current-system", "readlink R/run/current-system"},
		{"/nix/var/nix/profiles/system/bin/switch-to-configuration switch", "R/nix/var/nix/profiles/system/bin/switch-to-configuration switch"},
		{`cat "/etc/ssh/x.pub";ls '/var/lib'`, `cat "R/etc/ssh/x.pub";ls 'R/var/lib'`},
		{"nixos-rebuild switch --flake=/root/src#web", "nixos-rebuild switch --flake=R/root/src#web"},
		{"PATH=/run/wrappers/bin:/nix/bin x", "PATH=R/run/wrappers/bin:R/nix/bin x"},
		{"ls /etc", "ls R/etc"},
		{"cat /dev/null /tmp/x /usr/bin/env /etcetera /runner", "cat /dev/null /tmp/x /usr/bin/env /etcetera /runner"},
		{"ls ${HOME}/etc $(pwd)/nix a/run ~/var file:///etc", "ls ${HOME}/etc $(pwd)/nix a/run ~/var file:///etc"},
	} {
		if got := rewritePaths(tc.in, "R"); got != tc.want {
			t.Errorf("rewritePaths(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRootIsKeptAcrossBoots(t *testing.T) {
	h := newRoot(t, "web", "aaaa")
	mustRun(t, h, "nixos-rebuild switch --flake "+ship(t, h, "bbbb"), nil)
	again := &Host{cfg: Config{Name: "web", Revision: "zzzz", NixOSVersion: DefaultNixOSVersion}, root: h.root}
	key, err := again.prepareRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key.Marshal(), h.hostKey.Marshal()) {
		t.Error("host key changed across boots")
	}
	if st, _ := again.State(); st.Revision != "bbbb" || st.Generation != 2 {
		t.Errorf("after reboot: %+v, want generation 2 (bbbb)", st)
	}
	link, err := os.Readlink(filepath.Join(h.root, tsnetDir, "ssh", "ssh_host_ed25519_key"))
	if err != nil || filepath.Join(h.root, tsnetDir, "ssh", link) != filepath.Join(h.root, hostKeyFile) {
		t.Errorf("tailssh's key file links to %q (%v), want the host key", link, err)
	}
}
