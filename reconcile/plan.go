// Package reconcile holds the plan model: what nestbot would change to make
// the live fleet match nest.yaml, plane by plane. Diff(desired, live, options)
// is a pure, deterministic function; the renderers turn its result into text,
// the Markdown of a PR comment, or JSON. ExampleDiff builds and renders one.
package reconcile

import (
	"fmt"
	"strings"
	"time"
)

// FormatVersion is the version of the JSON plan and the live snapshot formats.
const FormatVersion = "1"

// Plane is one of the four things nestbot reconciles.
type Plane string

// The planes, in the order a plan applies them.
const (
	PlaneCloud   Plane = "cloud"
	PlaneTailnet Plane = "tailnet"
	PlanePKI     Plane = "pki"
	PlaneHosts   Plane = "hosts"
)

// Planes lists every plane in apply order.
func Planes() []Plane { return []Plane{PlaneCloud, PlaneTailnet, PlanePKI, PlaneHosts} }

// Action is what a step does.
type Action string

// Actions.
const (
	ActionCreate  Action = "create"  // a new cloud resource
	ActionUpdate  Action = "update"  // changed in place
	ActionReplace Action = "replace" // deleted and created again: an immutable field changed
	ActionDelete  Action = "delete"
	ActionAdopt   Action = "adopt"   // an existing untagged resource is tagged and taken over
	ActionIssue   Action = "issue"   // a certificate that does not exist yet
	ActionRenew   Action = "renew"   // same subject, new validity
	ActionReissue Action = "reissue" // subject, SANs or usages changed
	ActionRekey   Action = "rekey"   // the key is re-encrypted to changed recipients
	ActionRoll    Action = "roll"    // nixos-rebuild switch on a host
	ActionWait    Action = "wait"    // a bounded wait, e.g. for a new host to join the tailnet
	ActionDrift   Action = "drift"   // reported, not changed by nestbot
)

// Change is one attribute of a step, before and after. A sensitive change
// carries no values at all: only the fact that it changed.
type Change struct {
	Attr          string `json:"attr"`
	Before        string `json:"before,omitempty"`
	After         string `json:"after,omitempty"`
	Sensitive     bool   `json:"sensitive,omitempty"`
	ForcesReplace bool   `json:"forces_replacement,omitempty"`
}

// Sensitive is how a sensitive value is shown.
const Sensitive = "(sensitive)"

// KnownAfterApply is shown for a value that only the apply can tell.
const KnownAfterApply = "(known after apply)"

// Step is one thing the apply will do (or, for drift, report).
type Step struct {
	Plane   Plane   `json:"plane"`
	Action  Action  `json:"action"`
	Address Address `json:"address"`
	// ID is the live resource a cloud step acts on (update, replace,
	// delete, adopt); empty for a create.
	ID      string   `json:"id,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Changes []Change `json:"changes,omitempty"`
	// Batch is the rollout batch of a roll step, from 1: one per role of
	// rollout.order. A batch starts when the one before it is done; within
	// it at most rollout.max_parallel hosts switch at once, in name order.
	Batch int `json:"batch,omitempty"`
}

// Plan is the ordered list of steps that make live match desired.
type Plan struct {
	Fleet      string    `json:"fleet"`
	Revision   string    `json:"revision,omitempty"`
	ObservedAt time.Time `json:"observed_at"`
	Steps      []Step    `json:"steps"`
	// Notes say what the plan could not judge, e.g. a host that was not reached.
	Notes []string `json:"notes,omitempty"`
	// Warnings say what the plan does that a reader must not miss: it
	// deletes what nestbot did not create.
	Warnings []string `json:"warnings,omitempty"`
}

// Summary counts a plan's steps the way its summary line reads.
type Summary struct {
	Create  int `json:"create"`
	Update  int `json:"update"`
	Delete  int `json:"delete"`
	Adopt   int `json:"adopt"`
	Certs   int `json:"certs"`
	Hosts   int `json:"hosts"`
	Waits   int `json:"waits"`
	Drift   int `json:"drift"`
	Replace int `json:"replace"`
}

// Summary counts the steps by what they are. A replace counts once to
// create and once to delete, as Terraform counts it; a delete counts to
// delete whatever its plane, and a certificate deleted counts among the
// certs as well. Drift and waits count only as themselves.
func (p *Plan) Summary() Summary {
	var s Summary
	for _, st := range p.Steps {
		switch st.Action {
		case ActionDrift:
			s.Drift++
			continue
		case ActionWait:
			s.Waits++
			continue
		case ActionCreate:
			s.Create++
		case ActionUpdate:
			s.Update++
		case ActionDelete:
			s.Delete++
		case ActionReplace:
			s.Replace++
			s.Create++
			s.Delete++
		case ActionAdopt:
			s.Adopt++
		}
		switch st.Plane {
		case PlanePKI:
			s.Certs++
		case PlaneHosts:
			s.Hosts++
		}
	}
	return s
}

// HasChanges reports whether applying the plan would change anything.
// Drift alone is reported, not changed.
func (p *Plan) HasChanges() bool {
	for _, st := range p.Steps {
		if st.Action != ActionDrift {
			return true
		}
	}
	return false
}

// String is the summary line: "Plan: 3 to create, 1 to update, 0 to delete · 5 certs · 2 hosts".
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Plan: %d to create, %d to update, %d to delete", s.Create, s.Update, s.Delete)
	if s.Adopt > 0 {
		fmt.Fprintf(&b, ", %d to adopt", s.Adopt)
	}
	fmt.Fprintf(&b, " · %s · %s", Plural(s.Certs, "cert"), Plural(s.Hosts, "host"))
	if s.Drift > 0 {
		fmt.Fprintf(&b, " · %d drifted", s.Drift)
	}
	return b.String()
}

// Plural says n words: "1 host", "3 hosts".
func Plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// StepsOf returns the steps of one plane, in plan order.
func (p *Plan) StepsOf(plane Plane) []Step {
	var out []Step
	for _, st := range p.Steps {
		if st.Plane == plane {
			out = append(out, st)
		}
	}
	return out
}
