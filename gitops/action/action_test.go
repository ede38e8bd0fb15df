package action

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// Hosts switching side by side still get one group each, printed whole
// when the host is done, in the order they finished.
func TestHostGroupsOnePerHost(t *testing.T) {
	var out strings.Builder
	g := &hostGroups{out: &out}
	for _, e := range []rollout.Event{
		{Host: "a", State: rollout.StateShipping},
		{Host: "b", State: rollout.StateShipping},
		{Host: "a", State: rollout.StateActivating},
		{Host: "b", State: rollout.StateActivating},
		{Host: "b", State: rollout.StateConfirmed},
		{Host: "a", State: rollout.StateFailed, Detail: "health"},
	} {
		g.event(e)
	}
	g.close()
	text := out.String()
	if n := strings.Count(text, "::group::"); n != 2 || strings.Count(text, "::endgroup::") != 2 {
		t.Fatalf("want 2 groups, got %d:\n%s", n, text)
	}
	b, a := strings.Index(text, "::group::host b: confirmed"), strings.Index(text, "::group::host a: stopped")
	if b < 0 || a < 0 || b > a {
		t.Errorf("groups not one per host in the order they finished:\n%s", text)
	}
	groupA := text[a:]
	if strings.Contains(groupA[:strings.Index(groupA, "::endgroup::")], " b ") {
		t.Errorf("host b's lines are in host a's group:\n%s", text)
	}
}

func TestOutputsAndSummary(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"GITHUB_OUTPUT": filepath.Join(dir, "out"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "summary")}
	r := &run{env: func(k string) string { return env[k] }, out: &Outcome{}, cfg: Config{Out: &strings.Builder{}}, log: &workflowLog{out: &strings.Builder{}}}
	plan := &reconcile.Plan{Fleet: "ducksnest", Steps: []reconcile.Step{{Plane: reconcile.PlaneCloud, Action: reconcile.ActionCreate, Address: reconcile.MustParseAddress("aws.vpc")}}}
	r.reportPlan(plan, reconcile.RenderMarkdown(plan), nil, "")
	if err := r.writeOutputs(); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(env["GITHUB_OUTPUT"])
	for _, want := range []string{"changes=true\n", "result=changes\n", "plan-json<<NESTBOT_", `"address": "aws.vpc"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", want, out)
		}
	}
	summary, _ := os.ReadFile(env["GITHUB_STEP_SUMMARY"])
	if strings.Contains(string(summary), "<!--") || !strings.Contains(string(summary), "aws.vpc") {
		t.Errorf("the step summary should be the plan without its hidden marker:\n%s", summary)
	}
}

func TestWorkflowCommandEscapes(t *testing.T) {
	if got := escapeData("50% done\nnext"); got != "50%25 done%0Anext" {
		t.Errorf("escapeData: %q", got)
	}
	if got := escapeProperty("a:b,c"); got != "a%3Ab%2Cc" {
		t.Errorf("escapeProperty: %q", got)
	}
}
