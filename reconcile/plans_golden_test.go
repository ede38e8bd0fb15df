package reconcile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestExamplePlanGolden renders the example's real plans — from nothing,
// converged, drifted — in all three formats, and a 1,000-host plan that
// splits into parts, against reviewed golden files.
func TestExamplePlanGolden(t *testing.T) {
	d := loadExample(t)
	for name, l := range exampleSnapshots(t) {
		p := mustDiff(t, d, l)
		t.Run(name, func(t *testing.T) {
			var text, js bytes.Buffer
			if err := RenderText(&text, p, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := RenderJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "plans/"+name+".txt", text.Bytes())
			checkGolden(t, "plans/"+name+".json", js.Bytes())
			checkGolden(t, "plans/"+name+".md", []byte(strings.Join(RenderMarkdown(p), "\n<!-- next comment -->\n")))
		})
	}
	t.Run("1000 hosts", func(t *testing.T) {
		d := genFleet(t, 1000)
		p := mustDiff(t, d, behindLive(t, d))
		parts := RenderMarkdown(p)
		if len(parts) < 2 {
			t.Fatalf("a 1,000-host plan fits one comment (%d bytes)?", len(parts[0]))
		}
		var sum strings.Builder
		fmt.Fprintf(&sum, "%s\n%d steps in %d parts\n", p.Summary(), len(p.Steps), len(parts))
		for i, part := range parts {
			if len(part) > MaxCommentSize {
				t.Fatalf("part %d is %d bytes", i+1, len(part))
			}
			fmt.Fprintf(&sum, "part %d: %d bytes, first line %s\n", i+1, len(part), strings.SplitN(part, "\n", 2)[0])
		}
		for _, st := range p.Steps {
			if !strings.Contains(strings.Join(parts, ""), st.Address.String()) {
				t.Fatalf("%s is in no part", st.Address)
			}
		}
		checkGolden(t, "plans/1000-hosts.summary.txt", []byte(sum.String()))
	})
}

func TestRenderingIsByteIdentical(t *testing.T) {
	d := loadExample(t)
	l := exampleSnapshots(t)["empty"]
	render := func() string {
		p := mustDiff(t, d, l)
		var text, js bytes.Buffer
		_ = RenderText(&text, p, TextOptions{Color: true})
		_ = RenderJSON(&js, p)
		return text.String() + js.String() + strings.Join(RenderMarkdown(p), "")
	}
	first := render()
	for range 3 {
		if render() != first {
			t.Fatal("the same input rendered differently")
		}
	}
}
