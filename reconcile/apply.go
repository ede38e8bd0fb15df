package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// StepStatus is what became of one step in an apply.
type StepStatus string

// Step statuses.
const (
	StatusApplied StepStatus = "applied"
	StatusFailed  StepStatus = "failed"
	StatusSkipped StepStatus = "skipped" // not attempted: an earlier step failed, or the plane cannot be applied here
	StatusDrift   StepStatus = "reported"
)

// StepResult is the outcome of one step.
type StepResult struct {
	Step   Step       `json:"step"`
	Status StepStatus `json:"status"`
	Detail string     `json:"detail,omitempty"` // the resource id created, or why it was skipped
}

// Report is the outcome of an apply, step by step, in plan order.
type Report struct {
	Results []StepResult `json:"results"`
}

// Count returns how many steps ended with status s.
func (r *Report) Count(s StepStatus) int {
	n := 0
	for _, x := range r.Results {
		if x.Status == s {
			n++
		}
	}
	return n
}

// PlaneApplier applies the steps of one plane, in order, and returns the
// result of every step it was given (applied, or failed and then skipped).
type PlaneApplier func(ctx context.Context, steps []Step) ([]StepResult, error)

// Executor applies a plan plane by plane — cloud, tailnet, pki, hosts — and
// stops at the first failure: nothing after it starts.
type Executor struct {
	Appliers map[Plane]PlaneApplier
	// More, if set, is called with each plane's steps just before they are
	// applied and returns them with any steps that earlier planes' results
	// call for (the hosts whose certificates the pki plane just changed
	// roll with the others).
	More func(plane Plane, steps []Step) []Step
}

// Apply runs the plan. A plane with steps and no applier is skipped, and the
// report says so; it is not an error. The error is the first failure.
func (e *Executor) Apply(ctx context.Context, p *Plan) (*Report, error) {
	rep := &Report{}
	var failed error
	for _, plane := range Planes() {
		var steps []Step
		for _, st := range p.StepsOf(plane) {
			if st.Action == ActionDrift {
				rep.Results = append(rep.Results, StepResult{Step: st, Status: StatusDrift})
				continue
			}
			steps = append(steps, st)
		}
		if e.More != nil && failed == nil {
			steps = e.More(plane, steps)
		}
		if len(steps) == 0 {
			continue
		}
		apply := e.Appliers[plane]
		switch {
		case failed != nil:
			rep.Results = append(rep.Results, skipped(steps, "an earlier step failed")...)
			continue
		case apply == nil:
			rep.Results = append(rep.Results, skipped(steps, fmt.Sprintf("this nestbot cannot apply the %s plane yet", plane))...)
			continue
		}
		results, err := apply(ctx, steps)
		rep.Results = append(rep.Results, results...)
		if err != nil {
			failed = err
		}
	}
	return rep, failed
}

func skipped(steps []Step, why string) []StepResult {
	out := make([]StepResult, len(steps))
	for i, st := range steps {
		out[i] = StepResult{Step: st, Status: StatusSkipped, Detail: why}
	}
	return out
}

// dependencies lists, for each cloud kind, the kinds its creation needs.
func dependencies(kind string) []string {
	switch kind {
	case KindSubnet, KindInternetGateway, KindSecurityGroup:
		return []string{KindVPC}
	case KindRouteTable:
		return []string{KindVPC, KindInternetGateway, KindSubnet}
	case KindInstance:
		return []string{KindVPC, KindSubnet, KindSecurityGroup}
	}
	return nil
}

// Target narrows a plan to the given addresses and the steps they need:
// for a cloud resource, the steps of the resources it depends on. An
// address the plan does not hold is an error that lists what it holds.
func Target(p *Plan, addrs []string) (*Plan, error) {
	keep := map[Address]bool{}
	var unknown []string
	for _, a := range addrs {
		found := false
		for _, st := range p.Steps {
			if st.Address.Within(a) {
				keep[st.Address], found = true, true
			}
		}
		if !found {
			unknown = append(unknown, a)
		}
	}
	if len(unknown) > 0 {
		var have []string
		for _, st := range p.Steps {
			have = append(have, st.Address.String())
		}
		sort.Strings(have)
		return nil, fmt.Errorf("--target %s: not in the plan; the plan holds: %s", strings.Join(unknown, ", "), strings.Join(have, ", "))
	}
	// Pull in what the kept cloud steps need, until nothing changes.
	for changed := true; changed; {
		changed = false
		for _, st := range p.Steps {
			if !keep[st.Address] || st.Plane != PlaneCloud {
				continue
			}
			for _, dep := range dependencies(st.Address.Kind) {
				for _, other := range p.Steps {
					if other.Plane == PlaneCloud && other.Address.Kind == dep && !keep[other.Address] && other.Action != ActionDelete {
						keep[other.Address], changed = true, true
					}
				}
			}
		}
	}
	out := *p
	out.Steps = nil
	for _, st := range p.Steps {
		if keep[st.Address] {
			out.Steps = append(out.Steps, st)
		}
	}
	return &out, nil
}
