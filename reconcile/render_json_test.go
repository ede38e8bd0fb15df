package reconcile

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func renderJSON(t *testing.T, p *Plan) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := RenderJSON(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRenderJSONGolden(t *testing.T) {
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			checkGolden(t, "render/"+c.name+".json", renderJSON(t, c.plan))
		})
	}
}

func TestRenderJSONEmptyListsAreNotNull(t *testing.T) {
	got := string(renderJSON(t, &Plan{Fleet: "ducksnest"}))
	for _, want := range []string{`"steps": []`, `"notes": []`, `"observed_at": null`, `"revision": ""`, `"has_changes": false`} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in:\n%s", want, got)
		}
	}
	got = string(renderJSON(t, &Plan{Fleet: "ducksnest", Steps: []Step{{Plane: PlaneTailnet, Action: ActionWait, Address: "tailnet.node.a"}}}))
	if !strings.Contains(got, `"changes": []`) {
		t.Errorf("a step without changes has no empty list:\n%s", got)
	}
}

func TestRenderJSONFieldOrder(t *testing.T) {
	got := string(renderJSON(t, renderTestPlan(1)))
	last := -1
	for _, key := range []string{`"format_version": "` + FormatVersion + `"`, `"fleet"`, `"revision"`, `"observed_at"`, `"summary"`, `"has_changes"`, `"steps"`, `"notes"`} {
		i := strings.Index(got, "\n  "+key)
		if i <= last {
			t.Fatalf("%s is missing or out of order in:\n%.400s", key, got)
		}
		last = i
	}
}

// The JSON decodes back into the plan model: same steps, same changes.
func TestRenderJSONDecodes(t *testing.T) {
	p := renderTestPlan(3)
	var back struct {
		FormatVersion string   `json:"format_version"`
		Fleet         string   `json:"fleet"`
		Revision      string   `json:"revision"`
		Summary       Summary  `json:"summary"`
		HasChanges    bool     `json:"has_changes"`
		Steps         []Step   `json:"steps"`
		Notes         []string `json:"notes"`
	}
	if err := json.Unmarshal(renderJSON(t, p), &back); err != nil {
		t.Fatal(err)
	}
	if back.FormatVersion != FormatVersion || back.Fleet != p.Fleet || back.Revision != p.Revision || back.Summary != p.Summary() || !back.HasChanges {
		t.Errorf("header: %+v", back)
	}
	if !slices.Equal(back.Notes, p.Notes) || len(back.Steps) != len(p.Steps) {
		t.Fatalf("%d steps and notes %q, want %d and %q", len(back.Steps), back.Notes, len(p.Steps), p.Notes)
	}
	for i, st := range back.Steps {
		want := p.Steps[i]
		if st.Address != want.Address || st.Action != want.Action || st.Plane != want.Plane || st.Batch != want.Batch ||
			st.ID != want.ID || st.Reason != want.Reason || !slices.Equal(st.Changes, want.Changes) {
			t.Errorf("step %d:\n got %+v\nwant %+v", i, st, want)
		}
	}
}
