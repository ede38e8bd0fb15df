package rollout_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// BenchmarkRolloutSteps rolls a commit that changes every host across
// lab hosts ($NESTBOT_BENCH_HOSTS, default 4; every other one logging in
// over OpenSSH as the deploy user, the rest with Tailscale SSH) at
// max_parallel 2, and reports the wall time and, per host on average,
// where its time went, step by step (the bot's view: each step from its
// start until it saw the host done with it):
//
//	wall-s       the rollout, from the first probe to the last host confirmed
//	ship-s       the commit's git pack into the host's repository
//	build-s      nix build of the toplevel on the host (detached, bounded)
//	arm-s        recording what runs, arming the dead-man, starting the activation
//	activate-s   switch-to-configuration test, until its unit ended
//	health-s     the unit check (systemd settled, HealthSettle) and rollout.health
//	confirm-s    stopping the dead-man timer
//	boot-s       nix-env --set and switch-to-configuration boot, and the record
//	probe-s, dial-s, handshake-s   probes, tsnet dials and SSH handshakes
func BenchmarkRolloutSteps(b *testing.B) {
	n := 4
	if v, err := strconv.Atoi(os.Getenv("NESTBOT_BENCH_HOSTS")); err == nil && v > 0 {
		n = v
	}
	parallel := 2
	if v, err := strconv.Atoi(os.Getenv("NESTBOT_BENCH_PARALLEL")); err == nil && v > 0 {
		parallel = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var specs []hostSpec
	for i := range n {
		s := hostSpec{name: fmt.Sprintf("node-%02d", i+1)}
		if i%2 == 1 {
			s.login = host.LoginOpenSSH
		}
		specs = append(specs, s)
	}
	f := newFleet(b, ctx, specs...)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		rev := f.change(fmt.Sprintf("change %d", i), fmt.Sprintf(`environment.etc."nest-bench".text = "%d";`, i))
		r := f.rollout(rev, nil)
		r.MaxParallel = parallel
		r.Events = func(e rollout.Event) { b.Log(e) }
		b.StartTimer()
		start := time.Now()
		res, err := r.Run(ctx)
		wall := time.Since(start)
		if err != nil {
			b.Fatalf("rollout: %v%s", err, describe(res))
		}
		var sum rollout.Timings
		for _, h := range res.Hosts {
			t := h.Timings
			sum.Ship += t.Ship
			sum.Build += t.Build
			sum.Arm += t.Arm
			sum.Activate += t.Activate
			sum.Health += t.Health
			sum.Confirm += t.Confirm
			sum.Boot += t.Boot
			sum.Probe += t.Probe
			sum.Dial += t.Dial
			sum.Handshake += t.Handshake
			b.Logf("%s: %s, ship %v build %v arm %v activate %v health %v confirm %v boot %v (probe %v dial %v handshake %v, %d reconnects)",
				h.Name, h.State, t.Ship.Round(time.Millisecond), t.Build.Round(time.Millisecond), t.Arm.Round(time.Millisecond),
				t.Activate.Round(time.Millisecond), t.Health.Round(time.Millisecond), t.Confirm.Round(time.Millisecond), t.Boot.Round(time.Millisecond),
				t.Probe.Round(time.Millisecond), t.Dial.Round(time.Millisecond), t.Handshake.Round(time.Millisecond), h.Reconnects)
		}
		per := func(d time.Duration) float64 { return d.Seconds() / float64(len(res.Hosts)) }
		b.ReportMetric(wall.Seconds(), "wall-s")
		for _, m := range []struct {
			d    time.Duration
			name string
		}{{sum.Ship, "ship-s"}, {sum.Build, "build-s"}, {sum.Arm, "arm-s"}, {sum.Activate, "activate-s"}, {sum.Health, "health-s"},
			{sum.Confirm, "confirm-s"}, {sum.Boot, "boot-s"}, {sum.Probe, "probe-s"}, {sum.Dial, "dial-s"}, {sum.Handshake, "handshake-s"}} {
			b.ReportMetric(per(m.d), m.name)
		}
	}
}
