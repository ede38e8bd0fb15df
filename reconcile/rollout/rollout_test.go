package rollout_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

const testTimeout = 60 * time.Second

var fullRoll = []rollout.State{rollout.StateQueued, rollout.StateShipping, rollout.StateArmed, rollout.StateSwitching, rollout.StateHealth, rollout.StateConfirmed}

func TestProbeLearnsTheHostKey(t *testing.T) {
	t.Skip("needs issue 14: first contact learns the ecdsa key — the real tailscaled offers rsa, ecdsa and ed25519 (/etc/ssh) and Go's client prefers ecdsa — not the ed25519 key the repository pins")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", revision: revA})
	p, err := rollout.Probe(ctx, f.bot, rollout.Target{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	st := f.state("web")
	if p.Revision != revA || p.Generation != 1 || p.System != st.System || !strings.HasPrefix(p.System, "/nix/store/") || p.NixOSVersion != host.DefaultNixOSVersion {
		t.Errorf("probe %+v, want revision %s, generation 1, system %s", p, revA, st.System)
	}
	if p.HostKey == nil || keyString(p.HostKey) != keyString(f.host("web").HostKey()) {
		t.Errorf("learned host key %v, want the host's", p.HostKey)
	}
	if run := p.HostRun(); !run.Reachable || run.Revision != revA || run.Generation != 1 {
		t.Errorf("HostRun %+v", run)
	}
}

// Three hosts from A to B in role order (the control plane in batch 1, the
// workers in batch 2); a worker already on B is not rolled.
func TestRollsInOrderAndSkipsUnchanged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "cp", revision: revA},
		hostSpec{name: "w1", revision: revA},
		hostSpec{name: "w2", revision: revA},
		hostSpec{name: "w3", revision: revB},
	)
	ev := &events{}
	r := f.rollout(ev, []string{"cp"}, []string{"w1", "w2", "w3"})
	r.MaxParallel = 2
	start := time.Now()
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	t.Logf("rolled in %v%s", time.Since(start).Round(time.Millisecond), describe(res))

	for _, name := range []string{"cp", "w1", "w2"} {
		wantStates(t, ev, name, fullRoll...)
		if st := f.state(name); st.Revision != revB || st.Generation != 2 {
			t.Errorf("%s runs %+v, want %s as generation 2", name, st, revB)
		}
		if sw := f.switches(name); len(sw) != 1 || sw[0].Status != 0 || sw[0].Revision != revB {
			t.Errorf("%s switched %+v, want once, to %s", name, sw, revB)
		}
		if timers := f.armedTimers(name); len(timers) != 0 {
			t.Errorf("%s still has a rollback armed: %v", name, timers)
		}
		shipped, err := os.ReadFile(filepath.Join(f.host(name).Root(), "root/.nest/src", revB, "infra/nix/.nest-revision"))
		if err != nil || strings.TrimSpace(string(shipped)) != revB {
			t.Errorf("%s: shipped .nest-revision %q, %v", name, shipped, err)
		}
		if h, _ := res.Host(name); h.State != rollout.StateConfirmed || !h.OnTarget(revB) || h.From != revA || h.HostKey != keyString(f.host(name).HostKey()) {
			t.Errorf("%s result %+v", name, h)
		}
	}
	// The unchanged host: probed, not rolled.
	wantStates(t, ev, "w3", rollout.StateSkipped)
	if sw := f.switches("w3"); len(sw) != 0 {
		t.Errorf("w3 was already on B and switched anyway: %+v", sw)
	}
	if h, _ := res.Host("w3"); h.State != rollout.StateSkipped || !h.OnTarget(revB) || !strings.Contains(h.Detail, "already on") {
		t.Errorf("w3 result %+v", h)
	}
	// Batch 2 started after batch 1 ended, by the hosts' own clocks.
	cpEnd := f.switches("cp")[0].End
	for _, w := range []string{"w1", "w2"} {
		if sw := f.switches(w); len(sw) == 0 {
			t.Errorf("%s did not switch", w)
		} else if s := sw[0].Start; !s.After(cpEnd) {
			t.Errorf("%s started switching at %v, before cp finished at %v", w, s.Format(time.RFC3339Nano), cpEnd.Format(time.RFC3339Nano))
		}
	}
}

// A host whose health check fails is rolled back; the host switching
// beside it in its batch finishes; no other host starts.
func TestHealthFailureRollsBackAndHalts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "cp", revision: revA},
		hostSpec{name: "w1", revision: revA, faults: host.Faults{HealthFails: true}},
		hostSpec{name: "w2", revision: revA, faults: host.Faults{SlowSwitch: 2500 * time.Millisecond}},
		hostSpec{name: "w3", revision: revA},
		hostSpec{name: "w4", revision: revA},
	)
	ev := &events{}
	r := f.rollout(ev, []string{"cp"}, []string{"w1", "w2", "w3"}, []string{"w4"})
	r.MaxParallel = 2
	res, err := r.Run(ctx)
	t.Logf("%v%s", err, describe(res))
	var he *rollout.HostError
	if !errors.As(err, &he) || he.Host != "w1" || !he.RolledBack || !strings.Contains(err.Error(), "health check") {
		t.Fatalf("error %v, want w1's failed health check, rolled back", err)
	}
	if !res.Halted {
		t.Error("result not marked halted")
	}

	wantStates(t, ev, "cp", fullRoll...)
	wantStates(t, ev, "w1", rollout.StateQueued, rollout.StateShipping, rollout.StateArmed, rollout.StateSwitching, rollout.StateHealth, rollout.StateFailed, rollout.StateRolledBack)
	if st := f.state("w1"); st.Revision != revA || st.Generation != 1 || !slices.Equal(st.Generations, []int{1, 2}) {
		t.Errorf("w1 runs %+v, want back on %s, generation 1 of [1 2]", st, revA)
	}
	if timers := f.armedTimers("w1"); len(timers) != 0 {
		t.Errorf("w1 still has a rollback armed: %v", timers)
	}
	// In flight beside w1: it finishes.
	wantStates(t, ev, "w2", fullRoll...)
	if st := f.state("w2"); st.Revision != revB {
		t.Errorf("w2 runs %+v, want %s", st, revB)
	}
	// Not started: on A, never switched.
	for _, name := range []string{"w3", "w4"} {
		if sw := f.switches(name); len(sw) != 0 {
			t.Errorf("%s switched after the rollout halted: %+v", name, sw)
		}
		if st := f.state(name); st.Revision != revA || st.Generation != 1 {
			t.Errorf("%s runs %+v, want %s", name, st, revA)
		}
		if h, _ := res.Host(name); h.State != rollout.StateSkipped || !h.OnTarget(revA) {
			t.Errorf("%s result %+v, want skipped, on A", name, h)
		}
	}
	// The result says who runs what, probed at the end.
	for name, rev := range map[string]string{"cp": revB, "w1": revA, "w2": revB, "w3": revA, "w4": revA} {
		if h, _ := res.Host(name); !h.OnTarget(rev) {
			t.Errorf("result: %s on %q (reachable %v), want %s", name, h.Now.Revision, h.Reachable, rev)
		}
	}
}

// A switch that fails outright is rolled back too.
func TestSwitchFailureRollsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "web", revision: revA, faults: host.Faults{SwitchFails: true}},
		hostSpec{name: "db", revision: revA},
	)
	ev := &events{}
	res, err := f.rollout(ev, []string{"web", "db"}).Run(ctx)
	var he *rollout.HostError
	if !errors.As(err, &he) || he.Host != "web" || he.Step != rollout.StateSwitching || !he.RolledBack {
		t.Fatalf("error %v, want web's failed switch, rolled back%s", err, describe(res))
	}
	wantStates(t, ev, "web", rollout.StateQueued, rollout.StateShipping, rollout.StateArmed, rollout.StateSwitching, rollout.StateFailed, rollout.StateRolledBack)
	if st := f.state("web"); st.Revision != revA || st.Generation != 1 {
		t.Errorf("web runs %+v, want back on %s", st, revA)
	}
	// The failed unit was cleared, so the host does not read as degraded.
	if _, err := os.Stat(filepath.Join(f.host("web").Root(), "run/systemd/transient/nest-switch-"+revB[:12]+".service")); err == nil {
		t.Error("the failed switch unit was left behind")
	}
	if sw := f.switches("db"); len(sw) != 0 {
		t.Errorf("db switched after web failed: %+v", sw)
	}
}

// Activation restarts tailscaled: the host drops off the tailnet, the
// bot's connection dies silently, the switch carries on detached, and the
// bot reconnects and confirms.
func TestReconnectsWhenTailscaledRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "web", revision: revA, faults: host.Faults{SlowSwitch: 300 * time.Millisecond, RestartTailscaled: 2 * time.Second}},
	)
	ev := &events{}
	start := time.Now()
	res, err := f.rollout(ev, []string{"web"}).Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	h, _ := res.Host("web")
	t.Logf("confirmed in %v after %d reconnects; timings %+v", time.Since(start).Round(time.Millisecond), h.Reconnects, h.Timings)
	wantStates(t, ev, "web", fullRoll...)
	if !slices.Contains(f.hostEvents("web"), "tailscaled-restart") {
		t.Fatalf("tailscaled did not restart: %v", f.hostEvents("web"))
	}
	if h.Reconnects < 1 {
		t.Errorf("the bot did not reconnect (%d reconnects)", h.Reconnects)
	}
	if st := f.state("web"); st.Revision != revB || !h.OnTarget(revB) {
		t.Errorf("web runs %+v (result %+v), want %s", st, h.Now, revB)
	}
	if timers := f.armedTimers("web"); len(timers) != 0 {
		t.Errorf("web still has a rollback armed: %v", timers)
	}
}

// The bot stops mid-switch: the host rolls itself back after
// confirm_within; a new run reports the interrupted step from the journal
// and resumes.
func TestCancelledMidSwitchRollsBackThenResumes(t *testing.T) {
	t.Skip("needs issue 14: the dead-man timer's rollback never runs on real systemd: systemd-run --on-active puts the service in a transient unit file, where the ';' of its /bin/sh -c script split ExecStart (\"Syntax error: end of file unexpected (expecting \\\"then\\\")\"), so the unit fails and the host stays on the new generation")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "web", revision: revA, faults: host.Faults{SlowSwitch: time.Second}},
		hostSpec{name: "db", revision: revA},
	)
	journal := openJournal(t)
	const confirmWithin = 2 * time.Second

	// Run 1: cancelled once web's switch is running on the host.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var once sync.Once
	r := f.rollout(nil, []string{"web"}, []string{"db"})
	r.Journal, r.ConfirmWithin = journal, confirmWithin
	logEvent := r.Events
	r.Events = func(e rollout.Event) {
		logEvent(e)
		if e.Host == "web" && e.State == rollout.StateSwitching {
			once.Do(func() {
				go func() {
					waitFor(t, ctx, "web's switch to start", func() bool { return len(f.switches("web")) > 0 })
					stop()
				}()
			})
		}
	}
	res, err := r.Run(runCtx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run 1: %v, want it cancelled%s", err, describe(res))
	}

	// The journal shows where it stopped.
	in, err := rollout.Interrupted(journal, revB)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].Host != "web" || in[0].Step != rollout.StateSwitching || in[0].Generation != 1 {
		t.Fatalf("interrupted %+v, want web while switching, to roll back to generation 1", in)
	}

	// Nobody confirms: the host's dead-man timer rolls it back to A.
	defer f.dumpOnFailure("web")
	waitFor(t, ctx, "web to roll itself back", func() bool {
		sw := f.switches("web")
		return len(sw) == 1 && !sw[0].End.IsZero() && len(f.units("web", "nest-rollback-"+revB[:12]+".service", "")) > 0 && f.state("web").Revision == revA
	})
	if sw := f.switches("web")[0]; sw.Status != 0 || sw.Revision != revB {
		t.Errorf("web's switch %+v, want it to have reached %s before the rollback", sw, revB)
	}
	if st := f.state("web"); st.Generation != 1 {
		t.Errorf("after the dead-man rollback web runs %+v, want generation 1", st)
	}
	if sw := f.switches("db"); len(sw) != 0 {
		t.Errorf("db switched during the cancelled run: %+v", sw)
	}

	// Run 2: reports what run 1 left, and finishes the rollout.
	if err := f.host("web").SetFaults(host.Faults{}); err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	r2 := f.rollout(ev, []string{"web"}, []string{"db"})
	r2.Journal = journal
	res, err = r2.Run(ctx)
	if err != nil {
		t.Fatalf("run 2: %v%s", err, describe(res))
	}
	if len(res.Interrupted) != 1 || res.Interrupted[0].Host != "web" || res.Interrupted[0].Step != rollout.StateSwitching ||
		!strings.Contains(res.Interrupted[0].Found, "rolled back by its dead-man timer") {
		t.Errorf("run 2 found %+v, want web interrupted while switching and rolled back by its dead-man timer", res.Interrupted)
	}
	wantStates(t, ev, "web", fullRoll...)
	wantStates(t, ev, "db", fullRoll...)
	for _, name := range []string{"web", "db"} {
		if st := f.state(name); st.Revision != revB {
			t.Errorf("%s runs %+v, want %s", name, st, revB)
		}
	}
	if in, err := rollout.Interrupted(journal, revB); err != nil || len(in) != 0 {
		t.Errorf("after run 2 the journal still shows %+v (%v)", in, err)
	}

	// Run 3: nothing left to do.
	ev = &events{}
	r3 := f.rollout(ev, []string{"web"}, []string{"db"})
	r3.Journal = journal
	if res, err := r3.Run(ctx); err != nil || len(res.Interrupted) != 0 {
		t.Fatalf("run 3: %v, %+v", err, res.Interrupted)
	}
	wantStates(t, ev, "web", rollout.StateSkipped)
	wantStates(t, ev, "db", rollout.StateSkipped)
}

// A run resumes a host whose switch is still running when it starts: it
// waits for the switch, checks health and confirms within the armed timer.
func TestResumesARunningSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx, hostSpec{name: "web", revision: revA, faults: host.Faults{SlowSwitch: 2 * time.Second}})
	journal := openJournal(t)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	r := f.rollout(nil, []string{"web"})
	r.Journal = journal
	r.Events = func(e rollout.Event) {
		if e.Host == "web" && e.State == rollout.StateSwitching {
			go func() {
				waitFor(t, ctx, "web's switch to start", func() bool { return len(f.switches("web")) > 0 })
				stop()
			}()
		}
	}
	if _, err := r.Run(runCtx); !errors.Is(err, context.Canceled) {
		t.Fatalf("run 1: %v, want it cancelled", err)
	}
	if sw := f.switches("web"); len(sw) != 1 || !sw[0].End.IsZero() {
		t.Fatalf("web's switch %+v, want it still running", sw)
	}

	ev := &events{}
	r2 := f.rollout(ev, []string{"web"})
	r2.Journal = journal
	res, err := r2.Run(ctx)
	if err != nil {
		t.Fatalf("run 2: %v%s", err, describe(res))
	}
	if len(res.Interrupted) != 1 || !strings.Contains(res.Interrupted[0].Found, "still running") {
		t.Errorf("run 2 found %+v, want web's switch still running", res.Interrupted)
	}
	wantStates(t, ev, "web", rollout.StateQueued, rollout.StateSwitching, rollout.StateHealth, rollout.StateConfirmed)
	if sw := f.switches("web"); len(sw) != 1 || sw[0].Revision != revB {
		t.Errorf("web switched %+v, want exactly the one switch to %s", sw, revB)
	}
	if st := f.state("web"); st.Revision != revB || len(f.armedTimers("web")) != 0 {
		t.Errorf("web runs %+v with timers %v, want %s and none armed", st, f.armedTimers("web"), revB)
	}
}

// Never more than max_parallel hosts switch at once, by the hosts' own
// clocks — and as many as that do.
func TestNeverMoreThanMaxParallel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var specs []hostSpec
	var names []string
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		specs = append(specs, hostSpec{name: n, revision: revA, faults: host.Faults{SlowSwitch: 600 * time.Millisecond}})
		names = append(names, n)
	}
	f := newFleet(t, ctx, specs...)
	r := f.rollout(nil, names)
	r.MaxParallel = 2
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("%v%s", err, describe(res))
	}
	var all []host.Switch
	for _, n := range names {
		sw := f.switches(n)
		if len(sw) != 1 || sw[0].End.IsZero() || sw[0].Revision != revB {
			t.Fatalf("%s switched %+v, want once to %s", n, sw, revB)
		}
		all = append(all, sw...)
	}
	if got := maxOverlap(all); got != 2 {
		t.Errorf("at most %d hosts were switching at once, want exactly max_parallel = 2", got)
	}
}

// A host offering another key than the pinned one is refused before any
// session opens on it, and the rollout does not start.
func TestChangedHostKeyIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "web", revision: revA},
		hostSpec{name: "db", revision: revA},
	)
	sessions := func() int { return strings.Count(f.journal("db", "tailscaled"), "ssh-session") }
	before := sessions()
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(other.Public())
	ev := &events{}
	r := f.rollout(ev, []string{"db", "web"})
	for i := range r.Hosts {
		if r.Hosts[i].Name == "db" {
			r.Hosts[i].HostKey = otherPub
		}
	}
	res, err := r.Run(ctx)
	var hk *rollout.HostKeyError
	if !errors.As(err, &hk) || hk.Host != "db" || keyString(hk.Got) != keyString(f.host("db").HostKey()) {
		t.Fatalf("error %v, want db's host key refused%s", err, describe(res))
	}
	t.Logf("refused: %v", err)
	if n := sessions(); n != before {
		t.Errorf("%d Tailscale SSH sessions ran on db", n-before)
	}
	if !strings.Contains(f.journal("web", "tailscaled"), "ssh-session") {
		t.Error("web's tailscaled logged no session either: the check above cannot see one")
	}
	if sw := f.switches("db"); len(sw) != 0 {
		t.Errorf("db switched: %+v", sw)
	}
	if _, err := os.Stat(filepath.Join(f.host("db").Root(), "root/.nest")); err == nil {
		t.Error("the source was shipped to db")
	}
	wantStates(t, ev, "db", rollout.StateFailed)
	// Nothing switched anywhere: web was at most prepared (probed, its
	// source shipped ahead of its turn), never armed.
	got := ev.of("web")
	if len(got) == 0 || got[len(got)-1] != rollout.StateSkipped || slices.Contains(got, rollout.StateArmed) || slices.Contains(got, rollout.StateSwitching) {
		t.Errorf("web went %s, want skipped without being armed", statesString(got))
	}
	if sw := f.switches("web"); len(sw) != 0 {
		t.Errorf("web switched: %+v", sw)
	}
}
