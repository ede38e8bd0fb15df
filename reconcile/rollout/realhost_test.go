package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// What the real programs do under a rollout that stubs did not: each test
// states the behaviour a rollout on a NixOS host must have.

// restartSSHDAndTailscaled changes sshd's and tailscaled's units, so an
// activation restarts both (switch-to-configuration restarts changed
// units, these two after activation as their X-StopIfChanged=false says).
const restartSSHDAndTailscaled = `systemd.services.sshd.environment.NEST_GENERATION = "2";
  systemd.services.tailscaled.environment.NEST_GENERATION = "2";`

// switchRestartsSSHDAndTailscaled rolls a configuration that restarts sshd
// and tailscaled to one host logging in as login, and checks that both
// restarted under nestbot's session, that nestbot reconnected, and that
// the host is confirmed on the commit with both running their new units.
func switchRestartsSSHDAndTailscaled(t *testing.T, login host.Login) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", login: login})
	rev := f.change("sshd and tailscaled change", restartSSHDAndTailscaled)
	ev := &events{}
	res, err := f.rollout(rev, ev).Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	wantStates(t, ev, "web", fullRoll...)
	if restarted := f.restarted("web"); !strings.Contains(restarted, "sshd.service") || !strings.Contains(restarted, "tailscaled.service") {
		t.Errorf("the switch restarted %q, want sshd.service and tailscaled.service", restarted)
	}
	h, _ := res.Host("web")
	if !h.OnTarget(rev) || h.Reconnects == 0 {
		t.Errorf("web: %s on %q, %d reconnects; want confirmed on %s after reconnecting", h.State, h.Now.Revision, h.Reconnects, rev)
	}
	if st := f.state("web"); st.Revision != rev {
		t.Errorf("web runs %+v, want %s", st, rev)
	}
	for _, u := range []string{"sshd", "tailscaled"} {
		if out := f.sh("web", "systemctl show "+u+" -p Environment --value"); !strings.Contains(out, "NEST_GENERATION=2") {
			t.Errorf("%s runs with environment %q, want the new unit's", u, out)
		}
	}
}

// TestSwitchRestartsSSHDAndTailscaledOverTailscaleSSH: under the session
// nestbot holds over Tailscale SSH (served by the tailscaled that
// restarts): the activation carries on in its own unit, nestbot
// reconnects, and the host is confirmed on the commit.
func TestSwitchRestartsSSHDAndTailscaledOverTailscaleSSH(t *testing.T) {
	t.Parallel() // boots a lab of its own
	switchRestartsSSHDAndTailscaled(t, host.LoginTailscale)
}

// TestSwitchRestartsSSHDAndTailscaledOverOpenSSH: the same over OpenSSH,
// as the deploy user with its key and sudo: sshd restarting does not cut
// nestbot's session (KillMode=process), tailscaled restarting does (the
// connection runs over the tailnet), and neither kills the activation.
func TestSwitchRestartsSSHDAndTailscaledOverOpenSSH(t *testing.T) {
	t.Parallel() // boots a lab of its own
	switchRestartsSSHDAndTailscaled(t, host.LoginOpenSSH)
}

// TestPreexistingFailedUnitIsNotTheRolloutsFault: a unit that failed
// before the rollout is not the rollout's fault: the host is activated and
// confirmed (switch-to-configuration's reset-failed clears the old
// failure; nestbot must not blame it either way).
func TestPreexistingFailedUnitIsNotTheRolloutsFault(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	h := f.host("web")
	if out, err := h.Run(ctx, "systemd-run", "--unit=backup-nightly", "--service-type=oneshot", "--", "/bin/sh", "-c", "echo disk full; exit 1"); err == nil {
		t.Fatalf("the failing unit did not fail: %s", out)
	}
	if out, _ := h.Run(ctx, "systemctl", "is-system-running"); strings.TrimSpace(out) != "degraded" {
		t.Fatalf("the host reads %q before the rollout, want degraded", out)
	}
	rev := f.change("a change", change("b"))
	ev := &events{}
	res, err := f.rollout(rev, ev).Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	wantStates(t, ev, "web", fullRoll...)
	if st := f.state("web"); st.Revision != rev {
		t.Errorf("web runs %+v, want %s", st, rev)
	}
}

// TestFlakeWithoutConfigurationRevision: a flake that does not set
// system.configurationRevision (the DucksNest flake does not):
// nixos-version --json says nothing of the commit, so the host's revision
// is not the evidence; what it runs is. The activated host runs the
// toplevel the commit builds, is confirmed, and nestbot's own record on
// the host says which commit it is.
func TestFlakeWithoutConfigurationRevision(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", noRevision: true})
	before := f.state("web").System
	rev := f.change("a change", change("b"))
	ev := &events{}
	res, err := f.rollout(rev, ev).Run(ctx)
	st := f.state("web")
	if st.Revision != "" {
		t.Fatalf("the host reports configurationRevision %q from a flake that sets none", st.Revision)
	}
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	wantStates(t, ev, "web", fullRoll...)
	if st.System == before || st.Generation != 2 || st.BootDefault != 2 {
		t.Errorf("web runs %+v, want the new toplevel as generation 2, the boot default", st)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(f.sh("web", "nixos-version --json")), &v); err != nil {
		t.Fatal(err)
	}
	if _, ok := v["configurationRevision"]; ok {
		t.Errorf("nixos-version --json says %v", v)
	}
	if got := f.sh("web", "cat /var/lib/nestbot/deployed"); got != rev+" "+st.System {
		t.Errorf("recorded %q, want %q", got, rev+" "+st.System)
	}
	if h, _ := res.Host("web"); !h.OnTarget(rev) || h.Now.ConfigurationRevision != "" {
		t.Errorf("web: %+v, want it on %s by nestbot's record", h.Now, rev)
	}
	// A second run knows it is on the commit.
	res, err = f.rollout(rev, nil).Run(ctx)
	if h, _ := res.Host("web"); err != nil || h.State != rollout.StateSkipped {
		t.Errorf("again: %v, %s (%s)", err, h.State, h.Detail)
	}
}

// TestRebootInsideTheConfirmWindowBootsTheOldGeneration: the host stops
// and starts while the new system is on trial (activated, its health
// checks running, not confirmed). The trial never touched the boot
// default, so it boots the generation it ran before, its dead-man timer
// gone with /run, as NixOS does; the rollout does not confirm it on the
// commit (nor make the commit its boot default), and a later run rolls it
// again and confirms.
func TestRebootInsideTheConfirmWindowBootsTheOldGeneration(t *testing.T) {
	t.Parallel() // boots a lab of its own
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web"})
	before := f.system("web")
	rev := f.change("a change", change("b"))
	ev := &events{}
	journal := openJournal(t)
	r := f.rollout(rev, ev)
	r.Journal = journal
	r.Health = []string{"sleep 20"} // the host is in its window meanwhile
	type outcome struct {
		res *rollout.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() { res, err := r.Run(ctx); done <- outcome{res, err} }()
	testkit.WaitForContext(t, ctx, "web on trial", func() bool { return ev.reached("web", rollout.StateHealth) })
	trial := f.system("web")
	if trial.current == before.current || trial.profile != before.profile {
		t.Fatalf("on trial: %+v, before %+v: want the new system running, the profile as it was", trial, before)
	}
	f.host("web").Stop()
	if err := f.host("web").Start(ctx); err != nil {
		t.Fatal(err)
	}
	after := f.system("web")
	if after.current != before.current || after.booted != before.current || after.profile != before.profile {
		t.Errorf("after the restart web runs %+v; want the old generation %+v", after, before)
	}
	if timers := f.armedTimers("web"); len(timers) != 0 {
		t.Errorf("a dead-man timer survived the restart: %v", timers)
	}
	o := <-done
	if h, _ := o.res.Host("web"); h.State == rollout.StateConfirmed || h.OnTarget(rev) {
		t.Errorf("the rollout reports web %s on %q though it rebooted into the old generation", h.State, h.Now.Revision)
	}
	var he *rollout.HostError
	if !errors.As(o.err, &he) || he.Host != "web" {
		t.Errorf("the rollout ended %v, want web's failure", o.err)
	}
	if now := f.system("web"); now.current != before.current || now.profile != before.profile || f.state("web").BootDefault != 1 {
		t.Errorf("after the rollout web runs %+v, boots generation %d; want %+v, generation 1", now, f.state("web").BootDefault, before)
	}
	// The next run rolls it again and confirms.
	ev2 := &events{}
	r = f.rollout(rev, ev2)
	r.Journal = journal
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("the next run: %v%s", err, describe(res))
	}
	wantStates(t, ev2, "web", fullRoll...)
	if h, _ := res.Host("web"); !h.OnTarget(rev) {
		t.Errorf("the next run: %+v", h)
	}
}
