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
	got = string(renderJSON(t, &Plan{Fleet: "ducksnest", Steps: []Step{{Plane: PlaneTailnet, Action: ActionWait, Address: MustParseAddress("tailnet.node.a")}}}))
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

// TestRenderJSONWritesAsEncodingJSON: the renderer writes byte for byte
// what encoding/json's Encoder (indented by two spaces, HTML left as it
// is) writes, whatever the plan's strings hold: host output, names and
// reasons with markup, line and paragraph separators, control characters
// and bytes that are not UTF-8.
func TestRenderJSONWritesAsEncodingJSON(t *testing.T) {
	odd := "<b>&amp;</b> \u2028\u2029 \x00\x1f\t\n\"\\ \ufffd ok é 😀"
	bad := *planWith(odd + "\xff\xfe")
	p := planWith(odd)
	for _, plan := range append([]*Plan{p, &bad, nil}, func() []*Plan {
		var out []*Plan
		for _, c := range renderCases() {
			out = append(out, c.plan)
		}
		return out
	}()...) {
		got := renderJSON(t, plan)
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(jsonPlanOf(plan)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("RenderJSON wrote\n%s\nencoding/json writes\n%s", got, want.Bytes())
		}
	}
	if got := string(renderJSON(t, &bad)); !strings.Contains(got, `\u2028\u2029`) || !strings.Contains(got, `\ufffd\ufffd`) || !strings.Contains(got, "<b>&amp;</b>") {
		t.Errorf("separators, bad bytes or markup not written as encoding/json writes them:\n%s", got)
	}
}

// planWith is a plan with odd in each of its strings.
func planWith(odd string) *Plan {
	return &Plan{Fleet: "ducks" + odd, Revision: odd, ObservedAt: observedAt, Notes: []string{odd, ""},
		Steps: []Step{{Plane: PlaneHosts, Action: ActionRoll, Address: MustParseAddress("host." + odd), ID: odd, Reason: odd, Batch: 3,
			Changes: []Change{{Attr: odd, Before: odd, After: odd}, {Attr: "secret", Before: "x", After: "y", Sensitive: true, ForcesReplace: true}}}}}
}
