package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab/host"
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
	t.Parallel() // boots a lab of its own
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
	t.Parallel() // boots a lab of its own
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

// TestAFailingHealthCheckRollsBackToWhatRan: the host runs a system that is
// not its boot default (its admin rolled the profile back by hand after an
// earlier rollout), and has a unit that had failed before. The new system
// starts a service that fails a moment later: the check names it, and the
// host returns to exactly the system it ran — not the profile's — with the
// profile and the boot default untouched; the unit that had failed before
// is not blamed; the next host is not started.
func TestAFailingHealthCheckRollsBackToWhatRan(t *testing.T) {
	t.Parallel() // boots a lab of its own
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

// TestARollbackWaitsForTheActivation: the activation takes longer than
// confirm_within (a unit slow to start), so the dead-man fires while it
// holds switch-to-configuration's lock. The rollback waits for it rather
// than stop it, then returns the host to what it ran; the activation ran
// to its end.
func TestARollbackWaitsForTheActivation(t *testing.T) {
	t.Parallel() // boots a lab of its own
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
	t.Parallel() // boots a lab of its own
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
	testkit.WaitForContext(t, ctx, "the arm script waiting for the lock", func() bool {
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

// addStandIns puts the lab's stand-in flakes into the store where the
// test runs (the machine's), as the hosts' store has them, so that the
// flake.lock's inputs resolve here too (host.StoreDir does both).
func addStandIns(t *testing.T) {
	t.Helper()
	if _, _, err := host.StoreDir(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestBuildOnLocalCopiesTheClosure: with build_on local, the system is
// built where nestbot runs (this machine's nix and store) and nix copy
// sends its closure to the host over the same way in as the rollout's
// sessions — the tailnet, the pinned host key, Tailscale SSH as root or
// OpenSSH as the deploy user (the host's nix-daemon through sudo). The
// host builds nothing and was sent no commit.
func TestBuildOnLocalCopiesTheClosure(t *testing.T) {
	t.Parallel() // boots a lab of its own
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

// Configuration a test's commit gives a host (a Nix attribute set's body).

// slowUnit is a oneshot unit that takes secs to start, so the activation
// that starts it takes as long. A new nonce makes it a changed unit, which
// the next activation restarts.
func slowUnit(secs float64, nonce string) string {
	return fmt.Sprintf(`systemd.services.nest-slow = { wantedBy = [ "multi-user.target" ]; environment.NEST_NONCE = %q; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/bin/sleep %g"; }; };`, nonce, secs)
}

// failingStart is a oneshot unit that fails to start: the activation's
// systemctl start fails, and switch-to-configuration exits 4.
const failingStart = `systemd.services.nest-fails = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; ExecStart = "/bin/false"; }; };`

// failingService starts, then fails a moment later: the activation
// succeeds, the unit check sees it.
const failingService = `systemd.services.nest-broken = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "simple"; ExecStart = "/bin/sh -c 'sleep 1; exit 3'"; }; };`

// changeTailscaled changes tailscaled's unit: the activation restarts it,
// and every connection over the tailnet dies with it.
func changeTailscaled(nonce string) string {
	return fmt.Sprintf(`systemd.services.tailscaled.environment.NEST_CHANGE = %q;`, nonce)
}

// change is an ordinary change to a host's configuration.
func change(nonce string) string {
	return fmt.Sprintf(`environment.etc."nest-test".text = %q;`, nonce)
}

var fullRoll = []rollout.State{rollout.StateQueued, rollout.StateShipping, rollout.StateBuilding, rollout.StateArmed, rollout.StateActivating,
	rollout.StateHealth, rollout.StateBooting, rollout.StateConfirmed}

// TestProbeLearnsTheHostKey: first contact with nothing pinned learns the
// host's ed25519 key — the real tailscaled offers rsa, ecdsa and ed25519
// (sshd's, from /etc/ssh) and Go's client would take the ecdsa key — and
// reads what the host runs.
func TestProbeLearnsTheHostKey(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	p, err := rollout.Probe(ctx, f.bot, rollout.Target{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	st := f.state("web")
	if p.Generation != 1 || p.System != st.System || !strings.HasPrefix(p.System, "/nix/store/") || p.NixOSVersion != host.DefaultNixOSVersion || !p.Boots() {
		t.Errorf("probe %+v, want generation 1, system %s, booted from it", p, st.System)
	}
	// The hosts booted from a copy of the flake, not a git checkout: no
	// self.rev, no configurationRevision, nothing nestbot recorded.
	if p.Revision != "" || p.ConfigurationRevision != "" || p.Deployed != "" {
		t.Errorf("probe %+v: a revision from a host that was never given one", p)
	}
	if p.HostKey == nil || p.HostKey.Type() != ssh.KeyAlgoED25519 || keyString(p.HostKey) != keyString(f.host("web").HostKey()) {
		t.Errorf("learned host key %v, want the host's ed25519 key %s", p.HostKey, keyString(f.host("web").HostKey()))
	}
	// The host does offer the others: asked for ecdsa, it gives ecdsa.
	offered := f.sh("web", "ls /etc/ssh/ssh_host_ecdsa_key.pub /etc/ssh/ssh_host_rsa_key.pub")
	if !strings.Contains(offered, "ecdsa") || !strings.Contains(offered, "rsa") {
		t.Errorf("the host has no ecdsa or rsa key: %s", offered)
	}
	if run := p.HostRun(); !run.Reachable || run.System != st.System || run.Generation != 1 {
		t.Errorf("HostRun %+v", run)
	}
}

// TestRollsInOrderAndSkipsUnchanged: three hosts roll in role order (the
// control plane in batch 1, the workers in batch 2, two at a time); a
// worker already on the commit is not rolled.
func TestRollsInOrderAndSkipsUnchanged(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "cp"}, hostSpec{name: "w1"}, hostSpec{name: "w2"}, hostSpec{name: "w3"})
	rev := f.change("a change", change("b"))
	if res, err := f.rollout(rev, nil, []string{"w3"}).Run(ctx); err != nil {
		t.Fatalf("w3 ahead: %v%s", err, describe(res))
	}
	w3 := f.state("w3")
	before := map[string]string{}
	for _, name := range []string{"cp", "w1", "w2"} {
		before[name] = f.state(name).System
	}
	ev := &events{}
	r := f.rollout(rev, ev, []string{"cp"}, []string{"w1", "w2", "w3"})
	r.MaxParallel = 2
	start := time.Now()
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	t.Logf("rolled in %v%s", time.Since(start).Round(time.Millisecond), describe(res))
	for _, name := range []string{"cp", "w1", "w2"} {
		wantStates(t, ev, name, fullRoll...)
		st := f.state(name)
		if st.System == before[name] || st.Generation != 2 || st.BootDefault != 2 || st.Revision != rev {
			t.Errorf("%s runs %+v, want the commit's system as generation 2, the boot default", name, st)
		}
		if tr := f.trials(name, before[name]); len(tr) != 1 || tr[0].Status != 0 || tr[0].System != st.System {
			t.Errorf("%s activated %+v, want once, the new system", name, tr)
		}
		if timers := f.armedTimers(name); len(timers) != 0 {
			t.Errorf("%s still has a rollback armed: %v", name, timers)
		}
		if got := f.sh(name, "git -C /var/lib/nestbot/src rev-parse refs/nest/"+rev); got != rev {
			t.Errorf("%s: shipped %q, want the commit", name, got)
		}
		if h, _ := res.Host(name); h.State != rollout.StateConfirmed || !h.OnTarget(rev) || h.From != "" || h.HostKey != keyString(f.host(name).HostKey()) {
			t.Errorf("%s result %+v", name, h)
		}
	}
	// The unchanged host: probed, not rolled.
	wantStates(t, ev, "w3", rollout.StateSkipped)
	if st := f.state("w3"); st.System != w3.System || st.Generation != w3.Generation || len(f.trials("w3", "")) != 1 {
		t.Errorf("w3 was already on the commit and changed: %+v, before %+v", st, w3)
	}
	if h, _ := res.Host("w3"); h.State != rollout.StateSkipped || !h.OnTarget(rev) || !strings.Contains(h.Detail, "already on") {
		t.Errorf("w3 result %+v", h)
	}
	// Batch 2 started after batch 1 ended (cp the boot default), by the
	// hosts' own clocks.
	cpBoot := f.activations("cp", "boot")
	if len(cpBoot) == 0 {
		t.Fatal("cp was never made the boot default")
	}
	cpEnd := cpBoot[len(cpBoot)-1].End
	for _, w := range []string{"w1", "w2"} {
		if tr := f.trials(w, before[w]); len(tr) == 0 {
			t.Errorf("%s did not activate", w)
		} else if s := tr[0].Start; !s.After(cpEnd) {
			t.Errorf("%s started activating at %v, before cp finished at %v", w, s.Format(time.RFC3339Nano), cpEnd.Format(time.RFC3339Nano))
		}
	}
}

// TestHealthFailureRollsBackAndHalts: a host whose new system has a
// service that fails is rolled back; the host activating beside it in its
// batch finishes; no other host starts.
func TestHealthFailureRollsBackAndHalts(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "cp"}, hostSpec{name: "w1"}, hostSpec{name: "w2"}, hostSpec{name: "w3"}, hostSpec{name: "w4"})
	before := map[string]host.State{}
	for _, name := range f.order {
		before[name] = f.state(name)
	}
	rev := f.commit("w1 breaks, w2 is slow", map[string]string{"cp": change("b"), "w1": failingService, "w2": slowUnit(8, "w2"), "w3": change("b"), "w4": change("b")})
	ev := &events{}
	r := f.rollout(rev, ev, []string{"cp"}, []string{"w1", "w2", "w3"}, []string{"w4"})
	r.MaxParallel = 2
	res, err := r.Run(ctx)
	t.Logf("%v%s", err, describe(res))
	var he *rollout.HostError
	if !errors.As(err, &he) || he.Host != "w1" || !he.RolledBack || he.Step != rollout.StateHealth || !strings.Contains(err.Error(), "nest-broken.service failed") {
		t.Fatalf("error %v, want w1's failed unit check, rolled back", err)
	}
	if !res.Halted {
		t.Error("result not marked halted")
	}
	wantStates(t, ev, "cp", fullRoll...)
	wantStates(t, ev, "w1", rollout.StateQueued, rollout.StateShipping, rollout.StateBuilding, rollout.StateArmed, rollout.StateActivating,
		rollout.StateHealth, rollout.StateFailed, rollout.StateRolledBack)
	if st := f.state("w1"); st.System != before["w1"].System || st.Generation != 1 || !slices.Equal(st.Generations, []int{1}) || st.BootDefault != 1 {
		t.Errorf("w1 runs %+v, want back on %s, generation 1 its only one and the boot default", st, before["w1"].System)
	}
	if timers := f.armedTimers("w1"); len(timers) != 0 {
		t.Errorf("w1 still has a rollback armed: %v", timers)
	}
	// In flight beside w1: it finishes.
	wantStates(t, ev, "w2", fullRoll...)
	if h, _ := res.Host("w2"); !h.OnTarget(rev) {
		t.Errorf("w2: %+v, want it on the commit", h)
	}
	// Not started: as they were, never activated.
	for _, name := range []string{"w3", "w4"} {
		if tr := f.trials(name, ""); len(tr) != 0 {
			t.Errorf("%s activated after the rollout halted: %+v", name, tr)
		}
		if st := f.state(name); st.System != before[name].System || st.Generation != 1 {
			t.Errorf("%s runs %+v, want %s", name, st, before[name].System)
		}
		if h, _ := res.Host(name); h.State != rollout.StateSkipped || h.Now.System != before[name].System {
			t.Errorf("%s result %+v, want skipped, on what it ran", name, h)
		}
	}
	// The result says who runs what, probed at the end.
	for name, rolled := range map[string]bool{"cp": true, "w1": false, "w2": true, "w3": false, "w4": false} {
		h, _ := res.Host(name)
		if h.OnTarget(rev) != rolled || !h.Reachable || h.Now.System != f.state(name).System {
			t.Errorf("result: %s runs %s (reachable %v, on the commit %v), want on the commit %v", name, h.Now.System, h.Reachable, h.OnTarget(rev), rolled)
		}
	}
}

// TestSwitchFailureRollsBack: an activation that fails outright (a unit of
// the new system fails to start: switch-to-configuration exits 4) is
// rolled back too, and the next host does not start.
func TestSwitchFailureRollsBack(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"}, hostSpec{name: "db"})
	before := f.state("web")
	rev := f.commit("a unit that fails to start", map[string]string{"web": failingStart, "db": change("b")})
	ev := &events{}
	res, err := f.rollout(rev, ev, []string{"web", "db"}).Run(ctx)
	var he *rollout.HostError
	if !errors.As(err, &he) || he.Host != "web" || he.Step != rollout.StateActivating || !he.RolledBack || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("error %v, want web's failed activation (exit status 4), rolled back%s", err, describe(res))
	}
	wantStates(t, ev, "web", rollout.StateQueued, rollout.StateShipping, rollout.StateBuilding, rollout.StateArmed, rollout.StateActivating,
		rollout.StateFailed, rollout.StateRolledBack)
	if st := f.state("web"); st.System != before.System || st.Generation != 1 || st.BootDefault != 1 {
		t.Errorf("web runs %+v, want back on %s", st, before.System)
	}
	// Nothing failed is left behind: the rollback's switch-to-configuration
	// reset the new system's failed unit, and nestbot's units are collected.
	if failed := f.sh("web", "systemctl list-units --state=failed --plain --no-legend --no-pager"); failed != "" {
		t.Errorf("failed units left on web:\n%s", failed)
	}
	if tr := f.trials("db", ""); len(tr) != 0 {
		t.Errorf("db activated after web failed: %+v", tr)
	}
}

// TestReconnectsWhenTailscaledRestarts: the activation restarts tailscaled
// (its unit changed): the host drops off the tailnet, the bot's connection
// dies silently, the activation carries on detached, and the bot
// reconnects and confirms.
func TestReconnectsWhenTailscaledRestarts(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	rev := f.change("tailscaled changes", changeTailscaled("b"))
	ev := &events{}
	start := time.Now()
	res, err := f.rollout(rev, ev).Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	h, _ := res.Host("web")
	t.Logf("confirmed in %v after %d reconnects; timings %+v", time.Since(start).Round(time.Millisecond), h.Reconnects, h.Timings)
	wantStates(t, ev, "web", fullRoll...)
	if restarted := f.restarted("web"); !strings.Contains(restarted, "tailscaled.service") {
		t.Fatalf("the activation restarted %q, not tailscaled", restarted)
	}
	if h.Reconnects < 1 {
		t.Errorf("the bot did not reconnect (%d reconnects)", h.Reconnects)
	}
	if st := f.state("web"); st.Revision != rev || !h.OnTarget(rev) {
		t.Errorf("web runs %+v (result %+v), want %s", st, h.Now, rev)
	}
	if timers := f.armedTimers("web"); len(timers) != 0 {
		t.Errorf("web still has a rollback armed: %v", timers)
	}
}

// TestCancelledMidSwitchRollsBackThenResumes: the bot stops while the host
// activates; nobody confirms, so the host's dead-man timer rolls it back
// after confirm_within — waiting for the activation to end, not killing
// it. A new run reports the interrupted step from the journal and finishes
// the rollout; a third has nothing to do.
func TestCancelledMidSwitchRollsBackThenResumes(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"}, hostSpec{name: "db"})
	before := f.state("web")
	rev := f.commit("web slow to activate", map[string]string{"web": slowUnit(4, "a"), "db": change("b")})
	journal := openJournal(t)

	// Run 1: cancelled once web's activation runs on the host.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ev := &events{}
	r := f.rollout(rev, ev, []string{"web"}, []string{"db"})
	r.Journal, r.ConfirmWithin = journal, 2*time.Second
	done := make(chan error, 1)
	go func() { _, err := r.Run(runCtx); done <- err }()
	testkit.WaitForContext(t, ctx, "web's activation to start", func() bool {
		return ev.reached("web", rollout.StateActivating) && len(f.trials("web", before.System)) > 0
	})
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("run 1: %v, want it cancelled", err)
	}

	// The journal shows where it stopped.
	in, err := rollout.Interrupted(journal, rev)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].Host != "web" || in[0].Step != rollout.StateActivating || in[0].Generation != 1 {
		t.Fatalf("interrupted %+v, want web while activating, to roll back to generation 1", in)
	}

	// Nobody confirms: the host's dead-man timer rolls it back, once the
	// activation has ended.
	testkit.WaitForContext(t, ctx, "web to roll itself back", func() bool {
		return f.sh("web", "cat /var/lib/nestbot/run/"+rev[:12]+"/rollback.result 2>/dev/null || true") != "" && f.state("web").System == before.System
	})
	if got := f.sh("web", "cat /var/lib/nestbot/run/"+rev[:12]+"/rollback.result"); got != "success exited 0" {
		t.Errorf("the dead-man rollback ended %q", got)
	}
	tr := f.trials("web", before.System)
	if len(tr) != 1 || tr[0].Status != 0 || tr[0].End.IsZero() {
		t.Errorf("web's trial activation %+v, want it to have run to its end before the rollback", tr)
	}
	back := f.activations("web", "test")
	if last := back[len(back)-1]; last.System != before.System || last.Start.Before(tr[0].End) {
		t.Errorf("web's last activation %+v: want the old system, after the trial ended at %v", last, tr[0].End)
	}
	if st := f.state("web"); st.Generation != 1 || st.BootDefault != 1 || !slices.Equal(st.Generations, []int{1}) {
		t.Errorf("after the dead-man rollback web runs %+v, want generation 1, its only one", st)
	}
	if tr := f.trials("db", ""); len(tr) != 0 {
		t.Errorf("db activated during the cancelled run: %+v", tr)
	}

	// Run 2: reports what run 1 left, and finishes the rollout.
	ev = &events{}
	r2 := f.rollout(rev, ev, []string{"web"}, []string{"db"})
	r2.Journal = journal
	res, err := r2.Run(ctx)
	if err != nil {
		t.Fatalf("run 2: %v%s", err, describe(res))
	}
	if len(res.Interrupted) != 1 || res.Interrupted[0].Host != "web" || res.Interrupted[0].Step != rollout.StateActivating ||
		!strings.Contains(res.Interrupted[0].Found, "rolled back by its dead-man timer") {
		t.Errorf("run 2 found %+v, want web interrupted while activating and rolled back by its dead-man timer", res.Interrupted)
	}
	wantStates(t, ev, "web", fullRoll...)
	wantStates(t, ev, "db", fullRoll...)
	for _, name := range []string{"web", "db"} {
		if h, _ := res.Host(name); !h.OnTarget(rev) {
			t.Errorf("%s: %+v, want it on %s", name, h, rev)
		}
	}
	if in, err := rollout.Interrupted(journal, rev); err != nil || len(in) != 0 {
		t.Errorf("after run 2 the journal still shows %+v (%v)", in, err)
	}

	// Run 3: nothing left to do.
	ev = &events{}
	r3 := f.rollout(rev, ev, []string{"web"}, []string{"db"})
	r3.Journal = journal
	if res, err := r3.Run(ctx); err != nil || len(res.Interrupted) != 0 {
		t.Fatalf("run 3: %v, %+v", err, res.Interrupted)
	}
	wantStates(t, ev, "web", rollout.StateSkipped)
	wantStates(t, ev, "db", rollout.StateSkipped)
}

// TestResumesARunningSwitch: the bot is killed while the host activates (a
// unit slow to start). A new run finds the activation still running,
// waits for it, checks health, confirms within the armed timer and makes
// it the boot default — activating it once.
func TestResumesARunningSwitch(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	before := f.state("web")
	rev := f.change("a unit slow to start", slowUnit(6, "a"))
	journal := openJournal(t)
	ev := &events{}
	r := f.rollout(rev, ev)
	r.Journal = journal
	rctx, kill := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := r.Run(rctx); done <- err }()
	testkit.WaitForContext(t, ctx, "web activating", func() bool {
		return ev.reached("web", rollout.StateActivating) && len(f.trials("web", before.System)) > 0
	})
	kill()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the killed run: %v", err)
	}
	if tr := f.trials("web", before.System); len(tr) != 1 || !tr[0].End.IsZero() {
		t.Fatalf("web's activation %+v, want it still running", tr)
	}
	ev2 := &events{}
	r = f.rollout(rev, ev2)
	r.Journal = journal
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("resume: %v%s", err, describe(res))
	}
	if len(res.Interrupted) != 1 || !strings.Contains(res.Interrupted[0].Found, "still running") {
		t.Errorf("interrupted: %+v, want web's activation still running", res.Interrupted)
	}
	wantStates(t, ev2, "web", rollout.StateQueued, rollout.StateActivating, rollout.StateHealth, rollout.StateBooting, rollout.StateConfirmed)
	if h, _ := res.Host("web"); !h.OnTarget(rev) {
		t.Errorf("web: %+v", h)
	}
	if tr := f.trials("web", before.System); len(tr) != 1 || tr[0].Status != 0 {
		t.Errorf("web activated %+v, want exactly the one activation", tr)
	}
	if n := strings.Count(f.unitLog("web", "nest-activate-"+rev[:12]+".service"), "Started"); n != 1 {
		t.Errorf("the activation unit started %d times, want once", n)
	}
	if timers := f.armedTimers("web"); len(timers) != 0 {
		t.Errorf("web still has a rollback armed: %v", timers)
	}
}

// TestNeverMoreThanMaxParallel: never more than max_parallel hosts
// activate at once, by the hosts' own clocks — and as many as that do.
func TestNeverMoreThanMaxParallel(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	var specs []hostSpec
	for _, n := range names {
		specs = append(specs, hostSpec{name: n})
	}
	f := newFleet(t, ctx, specs...)
	before := map[string]string{}
	for _, n := range names {
		before[n] = f.state(n).System
	}
	rev := f.change("slow activations", slowUnit(3, "a"))
	r := f.rollout(rev, nil, names)
	r.MaxParallel = 2
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	var all []activation
	for _, n := range names {
		tr := f.trials(n, before[n])
		if len(tr) != 1 || tr[0].End.IsZero() || tr[0].Status != 0 {
			t.Fatalf("%s activated %+v, want once", n, tr)
		}
		all = append(all, tr...)
	}
	if got := maxOverlap(all); got != 2 {
		t.Errorf("at most %d hosts were activating at once, want exactly max_parallel = 2", got)
	}
}

// TestChangedHostKeyIsRefused: a host offering another key than the pinned
// one is refused before any session opens on it — the error names both
// keys' types and the file to pin from — and the rollout does not start.
func TestChangedHostKeyIsRefused(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"}, hostSpec{name: "db"})
	rev := f.change("a change", change("b"))
	sessions := func() int { return strings.Count(f.journal("db", "tailscaled"), "ssh-session") }
	before := sessions()
	ev := &events{}
	r := f.rollout(rev, ev, []string{"db", "web"})
	for i := range r.Hosts {
		if r.Hosts[i].Name == "db" {
			r.Hosts[i].HostKey = f.key.PublicKey() // not db's
		}
	}
	res, err := r.Run(ctx)
	var hk *rollout.HostKeyError
	if !errors.As(err, &hk) || hk.Host != "db" || keyString(hk.Got) != keyString(f.host("db").HostKey()) {
		t.Fatalf("error %v, want db's host key refused%s", err, describe(res))
	}
	if !strings.Contains(err.Error(), "pinned ssh-ed25519") || !strings.Contains(err.Error(), "offers ssh-ed25519") || !strings.Contains(err.Error(), "/etc/ssh/ssh_host_ed25519_key.pub") {
		t.Errorf("error %v: want both keys' types and the file to pin from", err)
	}
	if n := sessions(); n != before {
		t.Errorf("%d Tailscale SSH sessions ran on db", n-before)
	}
	if !strings.Contains(f.journal("web", "tailscaled"), "ssh-session") {
		t.Error("web's tailscaled logged no session either: the check above cannot see one")
	}
	if got := f.sh("db", "ls /var/lib/nestbot/src 2>/dev/null || echo nothing"); got != "nothing" {
		t.Errorf("something was shipped to db: %s", got)
	}
	wantStates(t, ev, "db", rollout.StateFailed)
	// Nothing activated anywhere: web was at most prepared (probed, its
	// commit shipped ahead of its turn), never armed.
	got := ev.of("web")
	if len(got) == 0 || got[len(got)-1] != rollout.StateSkipped || slices.Contains(got, rollout.StateArmed) || slices.Contains(got, rollout.StateActivating) {
		t.Errorf("web went %s, want skipped without being armed", statesString(got))
	}
	for _, name := range f.order {
		if tr := f.trials(name, ""); len(tr) != 0 {
			t.Errorf("%s activated: %+v", name, tr)
		}
	}
}
