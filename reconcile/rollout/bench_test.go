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
//	ideal-s      the wall time with no waiting between a host's steps and
//	             perfect packing at max_parallel: the larger of the sum of
//	             the hosts' steps (ship to boot) ÷ max_parallel and the
//	             longest host's steps (idealWall)
//	wall/ideal   wall-s ÷ ideal-s
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
		var steps []time.Duration
		for _, h := range res.Hosts {
			t := h.Timings
			steps = append(steps, hostSteps(t))
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
		ideal := idealWall(steps, parallel)
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(ideal.Seconds(), "ideal-s")
		b.ReportMetric(wall.Seconds()/ideal.Seconds(), "wall/ideal")
		for _, m := range []struct {
			d    time.Duration
			name string
		}{{sum.Ship, "ship-s"}, {sum.Build, "build-s"}, {sum.Arm, "arm-s"}, {sum.Activate, "activate-s"}, {sum.Health, "health-s"},
			{sum.Confirm, "confirm-s"}, {sum.Boot, "boot-s"}, {sum.Probe, "probe-s"}, {sum.Dial, "dial-s"}, {sum.Handshake, "handshake-s"}} {
			b.ReportMetric(per(m.d), m.name)
		}
	}
}

// hostSteps is what a host's steps took, ship to boot, each from its start
// until the bot saw it done (probes, dials and handshakes happen inside
// them or between them, and are not counted again).
func hostSteps(t rollout.Timings) time.Duration {
	return t.Ship + t.Build + t.Arm + t.Activate + t.Health + t.Confirm + t.Boot
}

// idealWall is the least wall time hosts whose steps take steps could
// roll in at parallel at a time, with no waiting between a host's steps
// and the hosts packed perfectly onto the slots: the larger of their sum ÷
// parallel and the longest (which no packing shortens). It is a lower
// bound (it packs as if a host's work could be split between slots), so
// wall ÷ ideal counts the packing a real order loses, too.
func idealWall(steps []time.Duration, parallel int) time.Duration {
	var sum, longest time.Duration
	for _, d := range steps {
		sum += d
		longest = max(longest, d)
	}
	return max(sum/time.Duration(max(parallel, 1)), longest)
}

// TestIdealWall: the ideal is the hosts' work spread evenly over the
// slots, unless one host alone takes longer.
func TestIdealWall(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		steps    []time.Duration
		parallel int
		want     time.Duration
	}{
		{[]time.Duration{4 * s, 4 * s, 4 * s, 4 * s}, 2, 8 * s},
		{[]time.Duration{9 * s, 1 * s, 1 * s, 1 * s}, 2, 9 * s},
		{[]time.Duration{3 * s, 3 * s, 3 * s}, 2, 4500 * time.Millisecond},
		{[]time.Duration{2 * s, 2 * s}, 10, 2 * s},
	} {
		if got := idealWall(tc.steps, tc.parallel); got != tc.want {
			t.Errorf("idealWall(%v, %d) = %v, want %v", tc.steps, tc.parallel, got, tc.want)
		}
	}
}
