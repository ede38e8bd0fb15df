package reconcile

import (
	"fmt"
	"strings"
	"testing"
)

func TestSavedPlanDelta(t *testing.T) {
	step := func(addr string, a Action) Step { return Step{Address: MustParseAddress(addr), Action: a} }
	saved := &SavedPlan{Plan: &Plan{Steps: []Step{step("aws.vpc.x", ActionCreate), step("pki.cert.h/kubelet", ActionRenew)}}}
	now := &Plan{Steps: []Step{step("pki.cert.h/kubelet", ActionRenew), step("aws.subnet.a", ActionCreate)}}
	want := "the plan now differs: aws.vpc.x (create) is no longer planned; aws.subnet.a (create) is new"
	if got := saved.Delta(now); got != want {
		t.Errorf("Delta = %q, want %q", got, want)
	}
	if got := saved.Delta(saved.Plan); !strings.Contains(got, "the steps are the same") {
		t.Errorf("same steps: %q", got)
	}
	var many Plan
	for i := range 8 {
		many.Steps = append(many.Steps, step(fmt.Sprintf("host.h%d", i), ActionRoll))
	}
	if got := saved.Delta(&many); !strings.HasSuffix(got, "; and 5 more") {
		t.Errorf("ten differences: %q", got)
	}
}
