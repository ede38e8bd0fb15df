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
	actRoll   action = iota // roll it from the start (an earlier build is reused)
	actSkip                 // it already runs and boots the revision
	actWait                 // its trial activation is running or ended: wait, check health, confirm
	actHealth               // it activated and the dead-man is armed: check health, confirm
	actBoot                 // it was confirmed: make it the boot default, record it
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

// inspection is what the probe found of an earlier attempt at the
// revision: each unit's state (asked one unit at a time), the results
// their ExecStopPost recorded, the built toplevel and whether the commit
// is shipped.
type inspection struct {
	build, activate, timer, rollback, boot unitState
	results                                map[string]string // step → "SERVICE_RESULT EXIT_CODE EXIT_STATUS"
	toplevel                               string            // the build's out-link, if any
	shipped                                bool
}

// resultOK is the result line of a unit that ran to the end with status 0.
const resultOK = "success exited 0"

func (ins inspection) ended(step string) bool     { _, ok := ins.results[step]; return ok }
func (ins inspection) succeeded(step string) bool { return ins.results[step] == resultOK }

// decide says what to do with a host found running p, with ins left by an
// earlier attempt at rev, given the journal's last step for it (last, ""
// for none) and whether that left it in flight.
//
// A host that an interrupted run left in flight is resumed where it
// stands: an activation still running is waited for; an activated system
// whose dead-man is still armed goes on to the health checks; a confirmed
// one to becoming the boot default. A host its dead-man timer already
// rolled back is rolled again — the bot, not the host, failed to confirm
// — unless its activation had itself failed, which halts the rollout as
// any failure does (a later run tries it again). The results come from
// the files the units wrote, not from systemd, which forgets a unit once
// it is collected or reset.
func decide(rev string, p Probed, ins inspection, last State) decision {
	inFlight := last.inFlight()
	activated := ins.toplevel != "" && p.System == ins.toplevel
	switch {
	case ins.rollback.active():
		return decision{act: actFail, detail: "its rollback is running right now; run again once it has finished", found: "rolling back"}
	case ins.activate.active():
		return decision{act: actWait, found: "its activation was still running: waiting for it"}
	case ins.boot.active():
		return decision{act: actBoot, found: "confirmed; becoming its boot default: waiting for it"}
	case activated && ins.timer.active():
		return decision{act: actHealth, found: "activated but not confirmed: checking health"}
	case activated && inFlight && last == StateBooting && !ins.ended(stepRollback):
		return decision{act: actBoot, found: "confirmed but not yet its boot default: making it so"}
	case p.Revision == rev && p.Boots():
		d := decision{act: actSkip, detail: "already on " + shortRev(rev)}
		if inFlight {
			d.found = "on the revision with nothing armed: done"
		}
		return d
	case activated && inFlight && !ins.ended(stepRollback):
		return decision{act: actHealth, found: "activated, its dead-man disarmed, not confirmed: checking health"}
	case inFlight && ins.ended(stepRollback) && ins.ended(stepActivate) && !ins.succeeded(stepActivate):
		return decision{act: actFail, rolledBack: true,
			detail: fmt.Sprintf("its activation had failed (%s) and its dead-man timer rolled it back; run again to retry", ins.results[stepActivate]),
			found:  "activation failed; rolled back by its dead-man timer"}
	case inFlight && ins.ended(stepRollback):
		return decision{act: actRoll, found: "rolled back by its dead-man timer: rolling it again"}
	case inFlight:
		return decision{act: actRoll, found: "nothing left running: rolling it again"}
	}
	return decision{act: actRoll}
}
