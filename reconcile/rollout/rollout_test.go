package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/internal/fixtures"
	labagenix "github.com/ducksnest/nestbot/lab/agenix"
	"github.com/ducksnest/nestbot/lab/host"
	labnixpkgs "github.com/ducksnest/nestbot/lab/nixpkgs"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// TestRollsOverBothLoginPaths rolls a commit to a host that lets nestbot
// in with Tailscale SSH (the tailnet policy's ssh rule, as root) and one
// that lets it in over OpenSSH as the deploy user, with its key and the
// sudo rules of nestbot's NixOS module — a host whose flake attribute,
// networking.hostName and tailnet name all differ from its name, and whose
// flake does not set configurationRevision. The first host's key is not
// pinned: first contact pins its ed25519 key. Each ends running and
// booting the new system, with the commit recorded on it.
func TestRollsOverBothLoginPaths(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "web"},
		hostSpec{name: "firebat", attr: "laptop-firebat", hostName: "ducksnest-laptop-firebat", tailnetName: "ducks-firebat", login: host.LoginOpenSSH, noRevision: true})
	before := map[string]system{"web": f.system("web"), "firebat": f.system("firebat")}
	rev := f.change("a change to every host", `environment.etc."nest-test".text = "b";`)
	ev := &events{}
	r := f.rollout(rev, ev)
	r.Hosts[0].HostKey = nil // learn it
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("rollout: %v%s", err, describe(res))
	}
	for _, name := range f.order {
		h, _ := res.Host(name)
		want := []rollout.State{rollout.StateQueued, rollout.StateShipping, rollout.StateBuilding, rollout.StateArmed, rollout.StateActivating,
			rollout.StateHealth, rollout.StateBooting, rollout.StateConfirmed}
		wantStates(t, ev, name, want...)
		if !h.OnTarget(rev) {
			t.Errorf("%s: not on the target: %+v", name, h)
		}
		now := f.system(name)
		if now.current == before[name].current || now.profile != now.current || now.booted != before[name].booted {
			t.Errorf("%s: before %+v, after %+v: want the new system current and the boot default, booted unchanged", name, before[name], now)
		}
		if got := f.sh(name, "cat /var/lib/nestbot/deployed"); got != rev+" "+now.current {
			t.Errorf("%s: recorded %q, want %q", name, got, rev+" "+now.current)
		}
		if got, want := f.bootDefault(name), "nixos-generation-"+strings.TrimSuffix(strings.TrimPrefix(now.generation, "system-"), "-link")+".conf"; got != want {
			t.Errorf("%s: boots %s, want %s", name, got, want)
		}
	}
	// The deploy user ran nestbot's root commands through sudo.
	if log := f.sh("firebat", "journalctl --no-pager -o cat _COMM=sudo | grep -c 'USER=root ; COMMAND=/run/current-system/sw/bin/systemd-run --unit=nest-' || true"); log == "0" || log == "" {
		t.Errorf("firebat: no sudo of systemd-run by the deploy user in its journal")
	}
	// The flake without configurationRevision: the host's nixos-version
	// does not say, and nestbot knows from its own record.
	var v map[string]string
	json.Unmarshal([]byte(f.sh("firebat", "nixos-version --json")), &v)
	if _, ok := v["configurationRevision"]; ok {
		t.Errorf("firebat's nixos-version says %v", v)
	}
	if h, _ := res.Host("firebat"); h.Now.Revision != rev || h.Now.ConfigurationRevision != "" {
		t.Errorf("firebat: %+v", h.Now)
	}
	json.Unmarshal([]byte(f.sh("web", "nixos-version --json")), &v)
	if v["configurationRevision"] != rev {
		t.Errorf("web's flake sets configurationRevision from self.rev: %v, want %s", v, rev)
	}
	// First contact pinned web's ed25519 key.
	if h, _ := res.Host("web"); h.HostKey != keyString(f.host("web").HostKey()) || !strings.HasPrefix(h.HostKey, ssh.KeyAlgoED25519) {
		t.Errorf("web: learned %q, want its ed25519 key %q", h.HostKey, keyString(f.host("web").HostKey()))
	}
	// A second run finds both on the commit.
	res, err = f.rollout(rev, nil).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.Hosts {
		if h.State != rollout.StateSkipped || !strings.Contains(h.Detail, "already on") {
			t.Errorf("%s again: %s (%s)", h.Name, h.State, h.Detail)
		}
	}
}

// slowBuild is configuration whose toplevel takes secs to build (once per
// nonce).
func slowBuild(rev string, secs int) string {
	return fmt.Sprintf(`environment.etc."nest-slow".source = pkgs.runCommand "nest-slow" { } "sleep %d; echo %s > $out";`, secs, rev)
}

// TestABuildLongerThanTheWindowDoesNotRollBack: the dead-man is armed
// only once the system is built, so a build that takes longer than
// confirm_within confirms.
func TestABuildLongerThanTheWindowDoesNotRollBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	rev := f.commit("slow to build", map[string]string{"web": slowBuild(fmt.Sprint(time.Now().UnixNano()), 14)}) // a new derivation each run: the store is shared
	ev := &events{}
	r := f.rollout(rev, ev)
	r.ConfirmWithin = 10 * time.Second
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("rollout: %v%s", err, describe(res))
	}
	h, _ := res.Host("web")
	if h.State != rollout.StateConfirmed || h.Timings.Build < 14*time.Second {
		t.Fatalf("web: %s, build took %v; want confirmed after a build of at least 14 s", h.State, h.Timings.Build)
	}
	t.Logf("web: build %v, then activation %v, health %v (confirm_within %v)", h.Timings.Build, h.Timings.Activate, h.Timings.Health, r.ConfirmWithin)
	if got := f.sh("web", "ls /var/lib/nestbot/run/*/rollback.result 2>/dev/null || echo none"); got != "none" {
		t.Errorf("a rollback ran: %s", got)
	}
}

// TestASwitchThatRestartsSSHDAndTailscaled: the new configuration changes
// sshd's and tailscaled's units, so the activation restarts both under
// nestbot's sessions, over each way in. The activation runs on (it is a
// unit of its own), nestbot reconnects, and each host confirms.
func TestASwitchThatRestartsSSHDAndTailscaled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"}, hostSpec{name: "db", login: host.LoginOpenSSH})
	rev := f.change("restart sshd and tailscaled", `systemd.services.sshd.environment.NEST_CHANGE = "b"; systemd.services.tailscaled.environment.NEST_CHANGE = "b";`)
	res, err := f.rollout(rev, nil).Run(ctx)
	if err != nil {
		t.Fatalf("rollout: %v%s", err, describe(res))
	}
	for _, name := range f.order {
		h, _ := res.Host(name)
		restarted := f.sh(name, "grep units-restart /var/log/nest-lab/events.log | tail -n 1")
		if h.State != rollout.StateConfirmed || !strings.Contains(restarted, "sshd.service") || !strings.Contains(restarted, "tailscaled.service") {
			t.Errorf("%s: %s (%s); restarted %q", name, h.State, h.Detail, restarted)
		}
		if h.Reconnects == 0 {
			t.Errorf("%s: no reconnect after tailscaled restarted", name)
		}
	}
}

// TestAFailingHealthCheckRollsBackToWhatRan: the host runs a system that is
// not its boot default (its admin rolled the profile back by hand after an
// earlier rollout), and has a unit that had failed before. The new system
// starts a service that fails a moment later: the check names it, and the
// host returns to exactly the system it ran — not the profile's — with the
// profile and the boot default untouched; the unit that had failed before
// is not blamed; the next host is not started.
func TestAFailingHealthCheckRollsBackToWhatRan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"}, hostSpec{name: "db"})
	c1 := f.change("an ordinary change", `environment.etc."nest-test".text = "c1";`)
	if res, err := f.rollout(c1, nil, []string{"web"}).Run(ctx); err != nil {
		t.Fatalf("rollout of c1: %v%s", err, describe(res))
	}
	f.sh("web", "nix-env -p /nix/var/nix/profiles/system --rollback >/dev/null 2>&1 && /nix/var/nix/profiles/system/bin/switch-to-configuration boot")
	f.sh("web", "systemd-run --unit=lab-old-failure --quiet -- /bin/false; sleep 0.5; systemctl is-failed lab-old-failure >/dev/null")
	before := f.system("web")
	bootBefore := f.bootDefault("web")
	if before.current == before.profile {
		t.Fatalf("setup: web runs its profile's system %s", before.current)
	}
	rev := f.change("a service that fails", `systemd.services.nest-broken = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "simple"; ExecStart = "/bin/sh -c 'sleep 1; exit 3'"; }; };`)
	ev := &events{}
	res, err := f.rollout(rev, ev).Run(ctx)
	var he *rollout.HostError
	if !errors.As(err, &he) || he.Host != "web" || !he.RolledBack || !strings.Contains(he.Error(), "nest-broken.service failed") || strings.Contains(he.Error(), "lab-old-failure") {
		t.Fatalf("err = %v, want web rolled back after nest-broken.service failed%s", err, describe(res))
	}
	after := f.system("web")
	if after != before || f.bootDefault("web") != bootBefore {
		t.Errorf("web before %+v (boots %s), after %+v (boots %s): want exactly what ran before", before, bootBefore, after, f.bootDefault("web"))
	}
	if h, _ := res.Host("db"); h.State != rollout.StateSkipped || f.system("db").current != h.Now.System {
		t.Errorf("db: %s, want skipped: the rollout halted", h.State)
	}
	wantStates(t, ev, "web", rollout.StateQueued, rollout.StateShipping, rollout.StateBuilding, rollout.StateArmed, rollout.StateActivating,
		rollout.StateHealth, rollout.StateFailed, rollout.StateRolledBack)
}

// TestAStopAndStartInsideTheWindowBootsTheOldGeneration: the host is
// stopped and started while the new system is on trial. The trial never
// touched the boot default, so it boots what it ran before, its dead-man
// timer gone with /run; a later run rolls it again and confirms.
func TestAStopAndStartInsideTheWindowBootsTheOldGeneration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	before := f.system("web")
	rev := f.change("a change", `environment.etc."nest-test".text = "b";`)
	ev := &events{}
	journal := openJournal(t)
	r := f.rollout(rev, ev)
	r.Journal = journal
	r.Health = []string{"sleep 600"} // holds the host in its window
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := r.Run(rctx); done <- err }()
	waitFor(t, ctx, "web on trial", func() bool { return ev.reached("web", rollout.StateHealth) })
	trial := f.system("web")
	if trial.current == before.current || trial.profile != before.profile {
		t.Fatalf("on trial: %+v, before %+v", trial, before)
	}
	f.host("web").Stop()
	if err := f.host("web").Start(ctx); err != nil {
		t.Fatal(err)
	}
	after := f.system("web")
	if after.current != before.current || after.booted != before.current || after.profile != before.profile {
		t.Errorf("after the restart web runs %+v; want the old generation %+v", after, before)
	}
	stop()
	<-done
	ev2 := &events{}
	r = f.rollout(rev, ev2)
	r.Journal = journal
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("the next run: %v%s", err, describe(res))
	}
	if h, _ := res.Host("web"); h.State != rollout.StateConfirmed || len(res.Interrupted) != 1 || !strings.Contains(res.Interrupted[0].Found, "rolling it again") {
		t.Errorf("the next run: %+v; interrupted %+v", h, res.Interrupted)
	}
}

// TestARollbackWaitsForTheActivation: the activation takes longer than
// confirm_within (a unit slow to start), so the dead-man fires while it
// holds switch-to-configuration's lock. The rollback waits for it rather
// than stop it, then returns the host to what it ran; the activation ran
// to its end.
func TestARollbackWaitsForTheActivation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	before := f.system("web")
	rev := f.change("a unit slow to start", `systemd.services.nest-slow = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/bin/sleep 8"; }; };`)
	r := f.rollout(rev, nil)
	r.ConfirmWithin = 3 * time.Second
	res, err := r.Run(ctx)
	var he *rollout.HostError
	if !errors.As(err, &he) || !he.RolledBack {
		t.Fatalf("err = %v, want web rolled back%s", err, describe(res))
	}
	if after := f.system("web"); after != before {
		t.Errorf("after %+v, want %+v", after, before)
	}
	if got := f.sh("web", "cat /var/lib/nestbot/run/*/activate.result"); got != "success exited 0" {
		t.Errorf("the activation ended %q: it was stopped, not waited for", got)
	}
	// On the host, the new system's activation ended before the rollback's began.
	evs := f.sh("web", "grep -E 'activate-(start|end) action=test' /var/log/nest-lab/events.log")
	lines := strings.Split(evs, "\n")
	var order []string
	for _, l := range lines {
		switch {
		case strings.Contains(l, "activate-start") && strings.Contains(l, before.current):
			order = append(order, "rollback-start")
		case strings.Contains(l, "activate-start"):
			order = append(order, "trial-start")
		case strings.Contains(l, "activate-end"):
			order = append(order, "end")
		}
	}
	if !slices.Equal(order[len(order)-4:], []string{"trial-start", "end", "rollback-start", "end"}) {
		t.Errorf("activations on the host: %q\n%s", order, evs)
	}
}

// TestARetriedArmArms: the connection drops while the arm script waits
// for another activation's lock. The second attempt looks at each unit on
// its own, finds no dead-man, and arms it (with systemctl show of both
// units in one call it would have seen a blank line, not "inactive", and
// activated with nothing armed).
func TestARetriedArmArms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	rev := f.change("a change", `environment.etc."nest-test".text = "b";`)
	f.sh("web", "mkdir -p /run/nixos && systemd-run --unit=lab-hold-lock --quiet -- flock /run/nixos/switch-to-configuration.lock sleep 6")
	ev := &events{}
	done := make(chan error, 1)
	var res *rollout.Result
	go func() {
		var err error
		res, err = f.rollout(rev, ev).Run(ctx)
		done <- err
	}()
	waitFor(t, ctx, "the arm script waiting for the lock", func() bool {
		return f.sh("web", "pgrep -f 'flock -w [6]0 /run' >/dev/null && echo yes || echo no") == "yes"
	})
	if n := f.dialer.drop(); n == 0 {
		t.Fatal("no connection to drop")
	}
	if err := <-done; err != nil {
		t.Fatalf("rollout: %v%s", err, describe(res))
	}
	short := rev[:12]
	timer := f.unitLog("web", "nest-rollback-"+short+".timer")
	if n := strings.Count(timer, "Started"); n != 1 {
		t.Errorf("the dead-man timer was started %d times, want once:\n%s", n, timer)
	}
	if h, _ := res.Host("web"); h.State != rollout.StateConfirmed || h.Reconnects == 0 {
		t.Errorf("web: %s, %d reconnects", h.State, h.Reconnects)
	}
}

// TestResumesAfterTheBotIsKilledMidActivation: the bot stops while the
// host activates (a slow unit). A new run finds the activation running,
// waits for it, checks health, confirms and makes it the boot default.
func TestResumesAfterTheBotIsKilledMidActivation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	rev := f.change("a unit slow to start", `systemd.services.nest-slow = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/bin/sleep 5"; }; };`)
	journal := openJournal(t)
	ev := &events{}
	r := f.rollout(rev, ev)
	r.Journal = journal
	rctx, kill := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := r.Run(rctx); done <- err }()
	waitFor(t, ctx, "web activating", func() bool { return ev.reached("web", rollout.StateActivating) })
	kill()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the killed run: %v", err)
	}
	ev2 := &events{}
	r = f.rollout(rev, ev2)
	r.Journal = journal
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("resume: %v%s", err, describe(res))
	}
	if len(res.Interrupted) != 1 || !strings.Contains(res.Interrupted[0].Found, "still running") {
		t.Errorf("interrupted: %+v", res.Interrupted)
	}
	wantStates(t, ev2, "web", rollout.StateQueued, rollout.StateActivating, rollout.StateHealth, rollout.StateBooting, rollout.StateConfirmed)
	if h, _ := res.Host("web"); !h.OnTarget(rev) {
		t.Errorf("web: %+v", h)
	}
	if n := strings.Count(f.unitLog("web", "nest-activate-"+rev[:12]+".service"), "Started"); n != 1 {
		t.Errorf("activated %d times, want once", n)
	}
}

// TestAChangedHostKeyIsRefused: a host offering another key than the
// pinned one runs nothing, and the error names both keys' types and the
// file to pin from.
func TestAChangedHostKeyIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	rev := f.change("a change", `environment.etc."nest-test".text = "b";`)
	r := f.rollout(rev, nil)
	r.Hosts[0].HostKey = f.key.PublicKey() // not web's
	_, err := r.Run(ctx)
	var hk *rollout.HostKeyError
	if !errors.As(err, &hk) || !strings.Contains(err.Error(), "pinned ssh-ed25519") || !strings.Contains(err.Error(), "/etc/ssh/ssh_host_ed25519_key.pub") {
		t.Fatalf("err = %v, want a host key error naming the key types and the file", err)
	}
	if got := f.sh("web", "ls /var/lib/nestbot/src 2>/dev/null || echo nothing"); got != "nothing" {
		t.Errorf("something was shipped: %s", got)
	}
}

// addStandIns puts the lab's stand-in flakes into the store where the
// test runs (the machine's), as the hosts' store has them, so that the
// flake.lock's inputs resolve here too.
func addStandIns(t *testing.T) {
	t.Helper()
	for name, src := range map[string]fs.FS{"nixpkgs": labnixpkgs.Source, "agenix": labagenix.Source} {
		dir := filepath.Join(t.TempDir(), name, "source")
		err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dir, p), 0o755)
			}
			b, err := fs.ReadFile(src, p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, p), b, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("nix", "--extra-experimental-features", "nix-command flakes", "store", "add-path", "--name", "source", dir).CombinedOutput(); err != nil {
			t.Fatalf("nix store add-path %s: %v: %s", name, err, out)
		}
	}
}

// TestBuildOnLocalCopiesTheClosure: with build_on local, the system is
// built where nestbot runs (this machine's nix and store) and nix copy
// sends its closure to the host over the same way in as the rollout's
// sessions — the tailnet, the pinned host key, Tailscale SSH as root or
// OpenSSH as the deploy user (the host's nix-daemon through sudo). The
// host builds nothing and was sent no commit.
func TestBuildOnLocalCopiesTheClosure(t *testing.T) {
	fixtures.Require(t, "ssh")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	addStandIns(t)
	f := newFleet(t, ctx, hostSpec{name: "web"}, hostSpec{name: "db", login: host.LoginOpenSSH})
	rev := f.change("a change", `environment.etc."nest-test".text = "local";`)
	nix := &rollout.LocalNix{}
	co, err := nix.Checkout(ctx, f.repo, rev, "infra/nix")
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	tops, err := nix.EvalToplevels(ctx, co, []string{"web", "db"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range f.order {
		if got := f.sh(name, "nix-store --check-validity "+tops[name]+" 2>/dev/null && echo valid || echo absent"); got != "absent" {
			t.Fatalf("%s already has %s", name, tops[name])
		}
	}
	r := f.rollout(rev, nil)
	r.BuildOn, r.Nix = rollout.BuildLocal, nix
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("rollout: %v%s", err, describe(res))
	}
	for _, name := range f.order {
		h, _ := res.Host(name)
		if !h.OnTarget(rev) || h.Now.System != tops[name] {
			t.Errorf("%s: %s on %s, want %s", name, h.State, h.Now.System, tops[name])
		}
		if got := f.sh(name, "ls /var/lib/nestbot/src 2>/dev/null || echo none"); got != "none" {
			t.Errorf("%s was sent the commit: %s", name, got)
		}
		if build := f.unitLog(name, "nest-build-"+rev[:12]+".service"); strings.Contains(build, "git+file") {
			t.Errorf("%s built from the flake:\n%s", name, build)
		}
	}
}
