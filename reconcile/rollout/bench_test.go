package rollout_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// BenchmarkRollout50 rolls 50 lab hosts, max_parallel 10, each switch a
// 2 s stub activation: ideally 10 s (five rounds of 2 s). It reports the
// wall time against that, and where the rest went:
//
//	preflight-s      from the start until the first host is armed and switching
//	                 (its batch probed, its source shipped, the arm-and-switch session)
//	round-over-s     per round of 10: from its first armed host to its last
//	                 confirmed one, less 2 s
//	cpu-bot-s        CPU of this process: the bot, and the lab's tsnet nodes and SSH servers
//	cpu-hosts-s      CPU of the lab hosts' shells and stubs that ran in SSH sessions
//	                 (the detached units — nixos-rebuild, timers — are not counted)
//	host-switch-s    the stub nixos-rebuild's own run on the host (2 s + the stub's work)
//	slot-idle-s      per slot of max_parallel, the time no switch ran on it:
//	                 wall − (sum of the hosts' switches ÷ max_parallel); the
//	                 overhead is this plus (host-switch-s − 2 s) × rounds
//	finish-ms        per host, from its switch's end on the host to confirmed
//	                 (noticing the end, the probe, health, confirming)
//	handover-ms      from the k-th host confirmed (a slot freed) to the
//	                 (k+max_parallel)-th switch starting on its host (arming,
//	                 the stub's start; with batches, waiting for the batch too)
//	reconnects       connections dialled again (0 unless something broke)
//	dial-ms … confirm-ms  per host, the bot's time in each step (tsnet dial, SSH
//	                 handshake, probes, shipping, arming, health, confirming)
//
// "batches" is what a plan gives for one role (five batches of ten, each
// waiting for the one before); "window" is one batch of 50, ten at a time.
func BenchmarkRollout50(b *testing.B) {
	const (
		hosts       = 50
		maxParallel = 10
		slow        = 2 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var specs []hostSpec
	var names []string
	for i := range hosts {
		name := fmt.Sprintf("node-%02d", i+1)
		specs = append(specs, hostSpec{name: name, revision: "r0", faults: host.Faults{SlowSwitch: slow}})
		names = append(names, name)
	}
	f := newFleet(b, ctx, specs...)
	journal := openJournal(b)
	ideal := time.Duration((hosts+maxParallel-1)/maxParallel) * slow
	runs := 0

	for _, mode := range []string{"batches", "window"} {
		b.Run(mode, func(b *testing.B) {
			var batches [][]string
			if mode == "window" {
				batches = [][]string{names}
			} else {
				for i := 0; i < hosts; i += maxParallel {
					batches = append(batches, names[i:min(i+maxParallel, hosts)])
				}
			}
			for b.Loop() {
				runs++
				rev := fmt.Sprintf("r%d", runs)
				ev := &events{}
				r := f.rollout(ev, batches...)
				r.Revision, r.MaxParallel, r.Journal = rev, maxParallel, journal
				var mu sync.Mutex
				r.Events = func(e rollout.Event) {
					mu.Lock()
					ev.all = append(ev.all, e)
					mu.Unlock()
				}
				self0, children0 := cpuTime()
				start := time.Now()
				res, err := r.Run(ctx)
				wall := time.Since(start)
				self1, children1 := cpuTime()
				b.ReportMetric((self1 - self0).Seconds(), "cpu-bot-s")
				b.ReportMetric((children1 - children0).Seconds(), "cpu-hosts-s")
				if err != nil {
					b.Fatalf("%v%s", err, describe(res))
				}
				report(b, f, res, ev, names, maxParallel, wall, ideal, slow)
			}
		})
	}
}

// cpuTime is the CPU time of this process (the bot, and the hosts' tsnet
// nodes and SSH servers) and of its children (the hosts' shells and stubs).
func cpuTime() (self, children time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	children = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return self, children
}

// BenchmarkRolloutOneHost rolls one idle lab host with an instant switch:
// what each step costs when nothing else runs.
func BenchmarkRolloutOneHost(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(b, ctx, hostSpec{name: "web", revision: "r0"})
	journal := openJournal(b)
	var sum rollout.Timings
	var wall, children time.Duration
	n := 0
	for b.Loop() {
		n++
		r := f.rollout(nil, []string{"web"})
		r.Revision, r.Journal = fmt.Sprintf("r%d", n), journal
		_, c0 := cpuTime()
		start := time.Now()
		res, err := r.Run(ctx)
		wall += time.Since(start)
		_, c1 := cpuTime()
		children += c1 - c0
		if err != nil {
			b.Fatal(err)
		}
		t := res.Hosts[0].Timings
		sum.Dial += t.Dial
		sum.Handshake += t.Handshake
		sum.Probe += t.Probe
		sum.Ship += t.Ship
		sum.Arm += t.Arm
		sum.Switch += t.Switch
		sum.Health += t.Health
		sum.Confirm += t.Confirm
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(n) / float64(time.Millisecond) }
	for _, m := range []struct {
		name string
		d    time.Duration
	}{{"dial", sum.Dial}, {"handshake", sum.Handshake}, {"probe", sum.Probe}, {"ship", sum.Ship}, {"arm+start", sum.Arm},
		{"switch+wait", sum.Switch}, {"health", sum.Health}, {"confirm", sum.Confirm}, {"wall", wall}, {"cpu-hosts", children}} {
		b.ReportMetric(ms(m.d), m.name+"-ms")
	}
}

// report prints and reports one run's figures.
func report(b *testing.B, f *fleet, res *rollout.Result, ev *events, names []string, maxParallel int, wall, ideal, slow time.Duration) {
	var sum rollout.Timings
	for _, h := range res.Hosts {
		if h.State != rollout.StateConfirmed {
			b.Fatalf("%s: %s", h.Name, h.State)
		}
		t := h.Timings
		sum.Dial += t.Dial
		sum.Handshake += t.Handshake
		sum.Probe += t.Probe
		sum.Ship += t.Ship
		sum.Arm += t.Arm
		sum.Switch += t.Switch
		sum.Health += t.Health
		sum.Confirm += t.Confirm
	}
	n := time.Duration(len(res.Hosts))
	ms := func(d time.Duration) float64 { return float64(d/n) / float64(time.Millisecond) }

	// Rounds, from the events: the i-th group of maxParallel hosts to arm.
	var firstArm time.Time
	armed := map[string]time.Time{}
	confirmed := map[string]time.Time{}
	for _, e := range ev.all {
		switch e.State {
		case rollout.StateArmed:
			armed[e.Host] = e.Time
			if firstArm.IsZero() {
				firstArm = e.Time
			}
		case rollout.StateConfirmed:
			confirmed[e.Host] = e.Time
		}
	}
	order := slices.Clone(names)
	slices.SortFunc(order, func(a, b string) int { return armed[a].Compare(armed[b]) })
	var roundOver []string
	var overSum time.Duration
	for i := 0; i < len(order); i += maxParallel {
		round := order[i:min(i+maxParallel, len(order))]
		var end time.Time
		for _, h := range round {
			if confirmed[h].After(end) {
				end = confirmed[h]
			}
		}
		over := end.Sub(armed[round[0]]) - slow
		overSum += over
		roundOver = append(roundOver, over.Round(time.Millisecond).String())
	}
	var lastConfirm time.Time
	for _, t := range confirmed {
		if t.After(lastConfirm) {
			lastConfirm = t
		}
	}
	var hostSwitch, finish time.Duration
	var starts, confirms []time.Time
	for _, name := range names {
		sw := f.switches(name)
		last := sw[len(sw)-1]
		hostSwitch += last.End.Sub(last.Start)
		finish += confirmed[name].Sub(last.End)
		starts = append(starts, last.Start)
		confirms = append(confirms, confirmed[name])
	}
	slotIdle := wall - hostSwitch/time.Duration(maxParallel)
	hostSwitch /= time.Duration(len(names))
	finish /= time.Duration(len(names))
	slices.SortFunc(starts, time.Time.Compare)
	slices.SortFunc(confirms, time.Time.Compare)
	var handover time.Duration
	handovers := 0
	for k := 0; k+maxParallel < len(starts); k++ {
		handover += starts[k+maxParallel].Sub(confirms[k])
		handovers++
	}
	if handovers > 0 {
		handover /= time.Duration(handovers)
	}
	reconnects := 0
	for _, h := range res.Hosts {
		reconnects += h.Reconnects
	}
	preflight := firstArm.Sub(res.Started)
	tail := res.Finished.Sub(lastConfirm)

	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(wall.Seconds()/ideal.Seconds(), "x-ideal")
	b.ReportMetric(preflight.Seconds(), "preflight-s")
	b.ReportMetric(overSum.Seconds()/float64(len(roundOver)), "round-over-s")
	b.ReportMetric(hostSwitch.Seconds(), "host-switch-s")
	b.ReportMetric(slotIdle.Seconds(), "slot-idle-s")
	b.ReportMetric(float64(finish)/float64(time.Millisecond), "finish-ms")
	b.ReportMetric(float64(handover)/float64(time.Millisecond), "handover-ms")
	b.ReportMetric(float64(reconnects), "reconnects")
	for _, m := range []struct {
		name string
		d    time.Duration
	}{{"dial", sum.Dial}, {"handshake", sum.Handshake}, {"probe", sum.Probe}, {"ship", sum.Ship}, {"arm", sum.Arm}, {"health", sum.Health}, {"confirm", sum.Confirm}} {
		b.ReportMetric(ms(m.d), m.name+"-ms")
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "\n  wall %v against an ideal %v: %.2fx\n", wall.Round(time.Millisecond), ideal, wall.Seconds()/ideal.Seconds())
	fmt.Fprintf(&tb, "  until the first host switched %v; rounds over 2 s: %s; after the last confirm %v\n",
		preflight.Round(time.Millisecond), strings.Join(roundOver, " "), tail.Round(time.Millisecond))
	fmt.Fprintf(&tb, "  the stub switch itself, on the host: %v on average; each slot idle %v; switch end to confirmed %v; slot freed to next switch %v\n",
		hostSwitch.Round(time.Millisecond), slotIdle.Round(time.Millisecond), finish.Round(time.Millisecond), handover.Round(time.Millisecond))
	fmt.Fprintf(&tb, "  per host (ms): dial %.1f  handshake %.1f  probe %.1f  ship %.1f  arm %.1f  switch %.1f  health %.1f  confirm %.1f",
		ms(sum.Dial), ms(sum.Handshake), ms(sum.Probe), ms(sum.Ship), ms(sum.Arm), ms(sum.Switch), ms(sum.Health), ms(sum.Confirm))
	b.Log(tb.String())
}
