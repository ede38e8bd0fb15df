package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// inFlightAt replays the events in the order they were emitted and returns
// the hosts that were in flight (armed, switching or in their health
// checks: their system already touched) when the first failure was
// reported, other than the failing host, and that host. Shipping is not in
// flight: the next hosts' sources are shipped ahead of their turn.
func inFlightAt(ev *events) (inFlight []string, failed string) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	now := map[string]rollout.State{}
	for _, e := range ev.all {
		if e.State == rollout.StateFailed {
			for h, s := range now {
				switch s {
				case rollout.StateArmed, rollout.StateSwitching, rollout.StateHealth:
					if h != e.Host {
						inFlight = append(inFlight, h)
					}
				}
			}
			slices.Sort(inFlight)
			return inFlight, e.Host
		}
		now[e.Host] = e.State
	}
	return nil, ""
}

// TestFaultHostFaults rolls twelve lab hosts in three batches, four at a
// time, while hosts misbehave. Batch 1 has a host whose activation restarts
// tailscaled (the bot's connection dies; it must reconnect and confirm) and
// a slow one: all confirm. Batch 2 has a host whose switch fails and one
// whose health check fails, beside two slow hosts: the failing ones are
// rolled back, the slow ones in flight finish, the two hosts queued behind
// them and all of batch 3 never start. Never more than four hosts switch at
// once, by the hosts' own clocks.
func TestFaultHostFaults(t *testing.T) {
	const maxParallel = 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	slow := host.Faults{SlowSwitch: 2500 * time.Millisecond}
	faults := map[string]host.Faults{
		"n02": {SlowSwitch: 300 * time.Millisecond, RestartTailscaled: 2 * time.Second},
		"n03": {SlowSwitch: 1500 * time.Millisecond},
		"n05": {SwitchFails: true},
		"n06": {HealthFails: true},
		"n07": slow,
		"n08": slow,
	}
	var specs []hostSpec
	var names []string
	for i := 1; i <= 12; i++ {
		name := fmt.Sprintf("n%02d", i)
		names = append(names, name)
		specs = append(specs, hostSpec{name: name, revision: revA, faults: faults[name]})
	}
	batches := [][]string{names[0:4], names[4:10], names[10:12]}
	f := newFleet(t, ctx, specs...)

	ev := &events{}
	r := f.rollout(ev, batches...)
	r.MaxParallel = maxParallel
	start := time.Now()
	res, err := r.Run(ctx)
	elapsed := time.Since(start)
	t.Logf("rollout in %v: %v%s", elapsed.Round(time.Millisecond), err, describe(res))
	var he *rollout.HostError
	if !errors.As(err, &he) || (he.Host != "n05" && he.Host != "n06") || !he.RolledBack {
		t.Fatalf("error %v, want n05's failed switch or n06's failed health check, rolled back", err)
	}
	if !res.Halted {
		t.Error("result not marked halted")
	}

	// Batch 1 went through, tailscaled's restart included.
	for _, name := range batches[0] {
		wantStates(t, ev, name, fullRoll...)
		if st := f.state(name); st.Revision != revB || st.Generation != 2 {
			t.Errorf("%s runs %+v, want %s as generation 2", name, st, revB)
		}
	}
	if h, _ := res.Host("n02"); h.Reconnects < 1 || !slices.Contains(f.hostEvents("n02"), "tailscaled-restart") {
		t.Errorf("n02: %d reconnects, events %v; want tailscaled restarted and the bot reconnected", h.Reconnects, f.hostEvents("n02"))
	}

	// The failing hosts are back on A, by their own roots, nothing armed.
	for _, name := range []string{"n05", "n06"} {
		if h, _ := res.Host(name); h.State != rollout.StateRolledBack {
			t.Errorf("%s ended %s (%s), want rolled back", name, h.State, h.Detail)
		}
		if st := f.state(name); st.Revision != revA || st.Generation != 1 {
			t.Errorf("%s runs %+v, want back on %s, generation 1", name, st, revA)
		}
	}

	// Whoever was in flight when the first failure came finished: confirmed
	// on B or rolled back to A, its switch ended, no rollback left armed.
	inFlight, first := inFlightAt(ev)
	t.Logf("first failure: %s; in flight then: %v", first, inFlight)
	for _, want := range []string{"n07", "n08"} {
		if !slices.Contains(inFlight, want) {
			t.Errorf("%s was not in flight at the first failure (%v): the scenario did not happen as planned", want, inFlight)
		}
	}
	confirmed, rolledBack, notStarted := 0, 0, 0
	for _, name := range names {
		h, _ := res.Host(name)
		st := f.state(name)
		switch h.State {
		case rollout.StateConfirmed:
			confirmed++
			if st.Revision != revB {
				t.Errorf("%s confirmed but runs %+v", name, st)
			}
		case rollout.StateRolledBack:
			rolledBack++
			if st.Revision != revA || st.Generation != 1 {
				t.Errorf("%s rolled back but runs %+v", name, st)
			}
		case rollout.StateSkipped:
			notStarted++
		default:
			t.Errorf("%s left %s (%s): neither confirmed, rolled back nor skipped", name, h.State, h.Detail)
		}
		for _, sw := range f.switches(name) {
			if sw.End.IsZero() {
				t.Errorf("%s: a switch started %v never ended", name, sw.Start.Format(time.RFC3339Nano))
			}
		}
		if timers := f.armedTimers(name); len(timers) != 0 {
			t.Errorf("%s still has a rollback armed: %v", name, timers)
		}
	}
	for _, name := range []string{"n07", "n08"} {
		if h, _ := res.Host(name); h.State != rollout.StateConfirmed {
			t.Errorf("%s, in flight at the halt, ended %s (%s), want confirmed", name, h.State, h.Detail)
		}
	}

	// The rest never started: still on A, never switched.
	for _, name := range append(slices.Clone(batches[1][4:]), batches[2]...) {
		if sw := f.switches(name); len(sw) != 0 {
			t.Errorf("%s switched after the rollout halted: %+v", name, sw)
		}
		if st := f.state(name); st.Revision != revA || st.Generation != 1 {
			t.Errorf("%s runs %+v, want %s", name, st, revA)
		}
		if h, _ := res.Host(name); h.State != rollout.StateSkipped {
			t.Errorf("%s ended %s, want skipped", name, h.State)
		}
	}

	var all []host.Switch
	for _, name := range names {
		all = append(all, f.switches(name)...)
	}
	most := maxOverlap(all)
	if most > maxParallel {
		t.Errorf("%d hosts were switching at once, more than max_parallel = %d", most, maxParallel)
	}

	t.Logf("FIGURE: rollout hosts: %d, max_parallel: %d (%v)", len(names), maxParallel, elapsed.Round(time.Millisecond))
	t.Logf("FIGURE: rollout batches: %d", len(batches))
	t.Logf("FIGURE: rollout in flight at the halt: %d (besides %s, the first to fail)", len(inFlight), first)
	t.Logf("FIGURE: rollout confirmed: %d", confirmed)
	t.Logf("FIGURE: rollout rolled back: %d", rolledBack)
	t.Logf("FIGURE: rollout not started: %d", notStarted)
	t.Logf("FIGURE: rollout max concurrent switches observed: %d", most)
}
