package rollout

import (
	"fmt"

	"github.com/ducksnest/nestbot/store"
)

// Journal is where a run records each host's steps, so that a later run
// with the same revision can resume. *store.Journal satisfies it.
type Journal interface {
	Record(store.Entry) error
	History(rollout, host string) ([]store.Entry, error)
	Hosts(rollout string) ([]store.Entry, error)
}

// Interrupted lists the hosts that a run towards revision left in flight
// (armed, switching or checking health) when it stopped, from the journal
// alone. Run looks at each on the host itself; see Result.Interrupted.
func Interrupted(j Journal, revision string) ([]Interruption, error) {
	last, err := j.Hosts(revision)
	if err != nil {
		return nil, fmt.Errorf("rollout: read the journal: %w", err)
	}
	var out []Interruption
	for _, e := range last {
		if !State(e.Step).inFlight() {
			continue
		}
		in := Interruption{Host: e.Host, Step: State(e.Step), At: e.Time, Generation: e.Generation}
		if in.Generation == 0 {
			hist, err := j.History(revision, e.Host)
			if err != nil {
				return nil, fmt.Errorf("rollout: read the journal: %w", err)
			}
			in.Generation = lastGeneration(hist)
		}
		out = append(out, in)
	}
	return out, nil
}

// lastGeneration is the newest rollback generation a host's history names.
func lastGeneration(hist []store.Entry) int {
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Generation > 0 {
			return hist[i].Generation
		}
	}
	return 0
}

// action is what a run does with a host, decided from its probe, what an
// earlier run left on it, and the journal.
type action int

const (
	actRoll   action = iota // roll it from the start
	actSkip                 // it already runs the revision
	actWait                 // its switch to the revision is running or ended: wait, check health, confirm
	actHealth               // it switched and the dead-man is armed: check health, confirm
	actFail                 // it cannot be rolled now
)

// decision is what to do with a host and why.
type decision struct {
	act action
	// detail explains a skip or a failure.
	detail string
	// found describes, for a host an earlier run left in flight, what
	// this run found (Interruption.Found).
	found string
	// rolledBack marks a failure found already rolled back.
	rolledBack bool
}

// decide says what to do with a host found running p, with ins left by an
// earlier attempt at rev, given whether the journal shows it in flight.
//
// A host that an interrupted run left in flight is resumed where it
// stands: a switch still running is waited for; a finished switch whose
// dead-man is still armed goes on to the health checks. A host its
// dead-man timer already rolled back is rolled again — the bot, not the
// host, failed to confirm — unless its switch had itself failed, which
// halts the rollout as any failure does (a later run tries it again).
func decide(rev string, p Probed, ins inspection, inFlight bool) decision {
	switch {
	case ins.rollbackUnit.running():
		return decision{act: actFail, detail: "its rollback is running right now; run again once it has finished", found: "rolling back"}
	case ins.switchUnit.running():
		return decision{act: actWait, found: "its switch was still running: waiting for it"}
	case p.Revision == rev && ins.timer.loaded() && ins.switchUnit.loaded():
		return decision{act: actWait, found: "switched but not confirmed: checking health"}
	case p.Revision == rev && ins.timer.loaded():
		return decision{act: actHealth, found: "switched but not confirmed: checking health"}
	case p.Revision == rev:
		d := decision{act: actSkip, detail: "already on " + shortRev(rev)}
		if inFlight {
			d.found = "on the revision with nothing armed: done"
		}
		return d
	case inFlight && ins.rollbackUnit.loaded() && ins.switchUnit.loaded() && !ins.switchUnit.succeeded():
		return decision{act: actFail, rolledBack: true,
			detail: fmt.Sprintf("its switch had failed (%s) and its dead-man timer rolled it back; run again to retry", ins.switchUnit),
			found:  "switch failed; rolled back by its dead-man timer"}
	case inFlight && ins.rollbackUnit.loaded():
		return decision{act: actRoll, found: "rolled back by its dead-man timer: rolling it again"}
	case inFlight:
		return decision{act: actRoll, found: "nothing left running: rolling it again"}
	}
	return decision{act: actRoll}
}
