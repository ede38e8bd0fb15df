package rollout_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// What the real programs do under a rollout that stubs did not: each test
// states the behaviour a rollout on a NixOS host must have.

// A switch whose configuration changes sshd's and tailscaled's units
// restarts both (switch-to-configuration restarts changed units, these two
// after activation as their X-StopIfChanged=false says), under the
// session nestbot holds over Tailscale SSH: the switch carries on in its
// own units, nestbot reconnects, and the host is confirmed on the commit.
func TestSwitchRestartsSSHDAndTailscaledOverTailscaleSSH(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", revision: revA, module: `
  systemd.services.sshd.environment.NEST_GENERATION = "2";
  systemd.services.tailscaled.environment.NEST_GENERATION = "2";`})
	defer f.dumpOnFailure("web")
	ev := &events{}
	res, err := f.rollout(ev, []string{"web"}).Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	wantStates(t, ev, "web", fullRoll...)
	restarted := ""
	evs, err := f.host("web").Events()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Name == "units-restart" {
			restarted = e.Fields["units"]
		}
	}
	if !strings.Contains(restarted, "sshd.service") || !strings.Contains(restarted, "tailscaled.service") {
		t.Errorf("the switch restarted %q, want sshd.service and tailscaled.service", restarted)
	}
	if st := f.state("web"); st.Revision != revB {
		t.Errorf("web runs %+v, want %s", st, revB)
	}
	for _, u := range []string{"sshd", "tailscaled"} {
		if out, err := f.host("web").Run(ctx, "systemctl", "show", u, "-p", "Environment", "--value"); err != nil || !strings.Contains(out, "NEST_GENERATION=2") {
			t.Errorf("%s runs with environment %q (%v), want the new unit's", u, out, err)
		}
	}
}

// The same over OpenSSH, as the deploy user with its key and sudo: sshd
// restarting must not cut nestbot's session (KillMode=process), and
// tailscaled restarting drops it.
func TestSwitchRestartsSSHDAndTailscaledOverOpenSSH(t *testing.T) {
	t.Skip("needs issue 14: nestbot logs in only as root with no credentials (Tailscale SSH); rollout.Target has no user, key or sudo for OpenSSH")
}

// A unit that failed before the rollout is not the rollout's fault: the
// host is switched and confirmed (switch-to-configuration's reset-failed
// clears the old failure; nestbot must not blame it either way).
func TestPreexistingFailedUnitIsNotTheRolloutsFault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", revision: revA})
	defer f.dumpOnFailure("web")
	h := f.host("web")
	if out, err := h.Run(ctx, "systemd-run", "--unit=backup-nightly", "--service-type=oneshot", "--", "/bin/sh", "-c", "echo disk full; exit 1"); err == nil {
		t.Fatalf("the failing unit did not fail: %s", out)
	}
	if out, _ := h.Run(ctx, "systemctl", "is-system-running"); strings.TrimSpace(out) != "degraded" {
		t.Fatalf("the host reads %q before the rollout, want degraded", out)
	}
	ev := &events{}
	res, err := f.rollout(ev, []string{"web"}).Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	wantStates(t, ev, "web", fullRoll...)
	if st := f.state("web"); st.Revision != revB {
		t.Errorf("web runs %+v, want %s", st, revB)
	}
}

// A flake that does not set system.configurationRevision (the DucksNest
// flake does not): nixos-version --json says nothing of the commit, so the
// host's revision is not the evidence; what it runs is: the switched host
// runs the toplevel the commit builds, and is confirmed.
func TestFlakeWithoutConfigurationRevision(t *testing.T) {
	t.Skip("needs issue 14: nestbot checks nixos-version's configurationRevision after the switch; a flake that sets none fails health (\"after the switch the host runs revision \\\"\\\"\") and is rolled back, though it runs the commit's toplevel")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", noRevision: true})
	defer f.dumpOnFailure("web")
	before := f.state("web").System
	ev := &events{}
	res, err := f.rollout(ev, []string{"web"}).Run(ctx)
	st := f.state("web")
	if st.Revision != "" {
		t.Fatalf("the host reports configurationRevision %q from a flake that sets none", st.Revision)
	}
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	wantStates(t, ev, "web", fullRoll...)
	if st.System == before || st.Generation != 2 {
		t.Errorf("web runs %+v, want the new toplevel as generation 2", st)
	}
}

// The host stops and starts inside the confirm window (after the switch,
// before nestbot confirmed): it must boot the generation it ran before the
// rollout, as NixOS does when the boot loader was not yet switched, and
// the rollout must not report it confirmed on the commit.
func TestRebootInsideTheConfirmWindowBootsTheOldGeneration(t *testing.T) {
	t.Skip("needs issue 14: nixos-rebuild switch installs the boot loader (new generation the default) before activation and the dead-man timer lives in /run, so the host reboots into the new generation, the timer is gone, and nestbot confirms it on the new commit")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", revision: revA})
	defer f.dumpOnFailure("web")
	old := f.state("web")
	r := f.rollout(nil, []string{"web"})
	r.Health = []string{"sleep 2"}
	rebooted := make(chan error, 1)
	logEvent := r.Events
	r.Events = func(e rollout.Event) {
		logEvent(e)
		if e.Host == "web" && e.State == rollout.StateHealth {
			go func() {
				h := f.host("web")
				h.Stop()
				rebooted <- h.Start(ctx)
			}()
		}
	}
	res, err := r.Run(ctx)
	if rerr := <-rebooted; rerr != nil {
		t.Fatal(rerr)
	}
	st := f.state("web")
	if st.Booted != old.System || st.System != old.System {
		t.Errorf("after the reboot web booted %s and runs %s, want the old generation %s", st.Booted, st.System, old.System)
	}
	if h, _ := res.Host("web"); err == nil && h.State == rollout.StateConfirmed && h.OnTarget(revB) {
		t.Errorf("the rollout reports web confirmed on %s though it rebooted into the old generation", revB)
	}
	var he *rollout.HostError
	if err != nil && !errors.As(err, &he) {
		t.Errorf("the rollout failed without saying which host: %v", err)
	}
}
