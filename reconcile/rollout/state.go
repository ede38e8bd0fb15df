package rollout

import (
	"fmt"
	"time"
)

// State is where a host stands in a rollout.
type State string

// States, in the order a host goes through them.
const (
	StateQueued     State = "queued"      // due, waiting for its turn
	StateShipping   State = "shipping"    // the commit is being sent
	StateBuilding   State = "building"    // the toplevel is being built (nothing changed on the host yet)
	StateArmed      State = "armed"       // the dead-man rollback is armed
	StateActivating State = "activating"  // switch-to-configuration test runs, detached
	StateHealth     State = "health"      // the activation ended; the unit check and health commands run
	StateBooting    State = "booting"     // confirmed healthy; becoming the boot default
	StateConfirmed  State = "confirmed"   // runs and boots the new system, recorded on the host (final)
	StateFailed     State = "failed"      // a step failed (final unless a rollback follows)
	StateRolledBack State = "rolled-back" // back on the system it ran before (final)
	StateSkipped    State = "skipped"     // not rolled: already on the revision, or the rollout halted first (final)
)

// Final reports whether s ends a host's part in a run.
func (s State) Final() bool {
	switch s {
	case StateConfirmed, StateFailed, StateRolledBack, StateSkipped:
		return true
	}
	return false
}

// inFlight reports whether a host recorded in s when the bot stopped may
// have been left with a switch or an armed rollback.
func (s State) inFlight() bool {
	return s == StateArmed || s == StateActivating || s == StateHealth || s == StateBooting
}

// Event is one change of one host's state, for progress output: a line per
// event, a live table on a terminal, JSON with --json.
type Event struct {
	Time     time.Time `json:"time"`
	Revision string    `json:"revision"` // the rollout's target
	Host     string    `json:"host"`
	Batch    int       `json:"batch"`
	State    State     `json:"state"`
	// Generation is the system profile's generation before the rollout,
	// once known (the rollback returns to what ran then).
	Generation int `json:"generation,omitempty"`
	// Detail says why (skipped, failed) or what was found (a resumed host).
	Detail string `json:"detail,omitempty"`
}

func (e Event) String() string {
	s := fmt.Sprintf("%s %-20s %s", e.Time.Format("15:04:05.000"), e.Host, e.State)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Result is what a run did, host by host, and where every host stands at
// the end.
type Result struct {
	Revision string    `json:"revision"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Hosts are in rollout order: batch by batch.
	Hosts []HostResult `json:"hosts"`
	// Halted is set when a failure stopped the rollout.
	Halted bool `json:"halted,omitempty"`
	// Stopped is set when Rollout.Stop wound the rollout down.
	Stopped bool `json:"stopped,omitempty"`
	// Interrupted lists hosts that an earlier run left in flight (from the
	// journal), with what this run found on them.
	Interrupted []Interruption `json:"interrupted,omitempty"`
}

// Host returns the result of the named host.
func (r *Result) Host(name string) (HostResult, bool) {
	for _, h := range r.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return HostResult{}, false
}

// HostResult is one host's part in a run.
type HostResult struct {
	Name  string `json:"name"`
	Batch int    `json:"batch"`
	// State is the host's final state in this run.
	State State `json:"state"`
	// Detail says why it was skipped, or what failed.
	Detail string `json:"detail,omitempty"`
	// From is the revision the host ran when the run found it.
	From string `json:"from,omitempty"`
	// Now is what the host runs, probed after its last step in this run
	// (for a host skipped as already on the revision, when it was found;
	// for one not started, at the end), if it could be reached.
	Now       Probed `json:"now"`
	Reachable bool   `json:"reachable"`
	// HostKey is the host key pinned for it (authorized_keys format):
	// given, or learned on first contact — to pin for good.
	HostKey string `json:"host_key,omitempty"`
	// Reconnects counts connections after the first (a tailscaled or
	// sshd restart during activation kills sessions).
	Reconnects int     `json:"reconnects"`
	Timings    Timings `json:"timings"`
}

// OnTarget reports whether the host is known to run, and boot, the
// rollout's revision.
func (h HostResult) OnTarget(rev string) bool {
	return h.Reachable && h.Now.Revision == rev && h.Now.Boots()
}

// Interruption is a host an earlier run left in flight.
type Interruption struct {
	Host string `json:"host"`
	// Step is the last step the journal recorded for it.
	Step State     `json:"step"`
	At   time.Time `json:"at"`
	// Generation is the generation it was to roll back to.
	Generation int `json:"generation,omitempty"`
	// Found is what the new run found on the host and did about it; empty
	// from Interrupted, which only reads the journal.
	Found string `json:"found,omitempty"`
}

// HostError is the failure that halted a rollout.
type HostError struct {
	Host string
	// Step is the state the host was in when it failed.
	Step State
	// RolledBack says whether the host is back on the system it ran before.
	RolledBack bool
	Err        error
}

func (e *HostError) Error() string {
	s := fmt.Sprintf("rollout: %s failed while %s: %v", e.Host, e.Step, e.Err)
	if e.Step == StateQueued {
		s = fmt.Sprintf("rollout: %s: %v", e.Host, e.Err)
	}
	if e.RolledBack {
		s += " (rolled back)"
	}
	return s
}

func (e *HostError) Unwrap() error { return e.Err }
