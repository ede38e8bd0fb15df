package reconcile

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestRenderMarkdownGolden(t *testing.T) {
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			parts := RenderMarkdown(c.plan)
			if len(parts) != 1 {
				t.Fatalf("%d parts, want 1", len(parts))
			}
			checkMarkdownParts(t, c.plan, parts)
			checkGolden(t, "render/"+c.name+".md", []byte(parts[0]))
		})
	}
}

func TestRenderMarkdownNoSteps(t *testing.T) {
	parts := RenderMarkdown(renderEmptyPlan())
	if want := "**No changes.** The fleet matches `nest.yaml`."; !strings.Contains(parts[0], want) {
		t.Errorf("missing %q in:\n%s", want, parts[0])
	}
	if strings.Contains(parts[0], "<details>") || strings.Contains(parts[0], "| Address |") {
		t.Errorf("an empty plan shows a table or details:\n%s", parts[0])
	}
}

func TestRenderMarkdownSplits1000Hosts(t *testing.T) {
	p := renderTestPlan(1000)
	parts := RenderMarkdown(p)
	if len(parts) < 3 {
		t.Fatalf("%d parts: the test plan should need at least 3", len(parts))
	}
	checkMarkdownParts(t, p, parts)
	checkGolden(t, "render/1000-hosts.skeleton.md", []byte(markdownSkeleton(parts)))

	joined := strings.Join(parts, "\n")
	rows, diffs := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(joined, "\n") {
		if cells := strings.Split(line, " | "); strings.HasPrefix(line, "| `") && len(cells) == 4 {
			rows[strings.Split(cells[1], "`")[1]]++
		}
		if addr, _, ok := strings.Cut(strings.TrimPrefix(line, "# "), " "); ok && strings.HasPrefix(line, "# ") {
			diffs[addr]++
		}
	}
	for _, st := range p.Steps {
		addr := st.Address.String()
		if rows[addr] != 1 {
			t.Errorf("%s has %d table rows, want 1", addr, rows[addr])
		}
		if want := min(len(st.Changes), 1); diffs[addr] != want {
			t.Errorf("the changes of %s are shown %d times, want %d", addr, diffs[addr], want)
		}
	}
	if strings.Contains(joined, "lines left out") {
		t.Errorf("a step of the plan was truncated, though none is too long")
	}
	// A table that continues in the next part repeats its header under a heading.
	for _, part := range parts[1:] {
		if strings.HasPrefix(strings.SplitN(part, "\n", 4)[3], "| ") {
			t.Errorf("a part opens with a table row and no heading:\n%.300s", part)
		}
	}
}

// markdownSkeleton shows where a long plan is split: the first and last
// lines of each part, with the size of each. The full text is too large to
// review as a golden file; checkMarkdownParts checks all of it.
func markdownSkeleton(parts []string) string {
	const head, tail = 10, 6
	var b strings.Builder
	for k, part := range parts {
		lines := strings.SplitAfter(part, "\n")
		lines = lines[:len(lines)-1] // the part ends in a newline
		fmt.Fprintf(&b, "======== comment %d of %d: %d bytes, %d lines ========\n", k+1, len(parts), len(part), len(lines))
		if len(lines) <= head+tail {
			b.WriteString(part)
			continue
		}
		b.WriteString(strings.Join(lines[:head], ""))
		fmt.Fprintf(&b, "[... %d lines ...]\n", len(lines)-head-tail)
		b.WriteString(strings.Join(lines[len(lines)-tail:], ""))
	}
	return b.String()
}

// The changes of one step too long for a comment are cut short in a closed block.
func TestRenderMarkdownTruncatesAHugeStep(t *testing.T) {
	huge := Step{Plane: PlaneCloud, Action: ActionUpdate, Address: MustParseAddress("aws.security_group")}
	for i := range 5000 {
		huge.Changes = append(huge.Changes, Change{Attr: fmt.Sprintf("ingress.%d.cidr", i), Before: "10.0.0.0/8", After: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)})
	}
	longValue := Step{Plane: PlaneCloud, Action: ActionUpdate, Address: MustParseAddress("aws.instance.x"),
		Changes: []Change{{Attr: "tags.Description", Before: "a", After: strings.Repeat("x", 200_000)}}}
	p := &Plan{Fleet: "ducksnest", Steps: []Step{
		{Plane: PlaneCloud, Action: ActionCreate, Address: MustParseAddress("aws.vpc"), Changes: []Change{{Attr: "cidr", After: "10.20.0.0/16"}}},
		huge, longValue,
	}}
	parts := RenderMarkdown(p)
	checkMarkdownParts(t, p, parts)
	joined := strings.Join(parts, "\n")
	m := regexp.MustCompile(`\n# \.\.\. (\d+) more lines left out\n`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatalf("no line says how many lines were left out")
	}
	shown := strings.Count(joined, "\n~ ingress.")
	var left int
	if _, err := fmt.Sscan(m[1], &left); err != nil || shown+left != 5000 {
		t.Errorf("%d lines shown and %d left out, want 5000 in all", shown, left)
	}
	if !strings.Contains(joined, "\n# aws.instance.x will be updated in place\n") || !strings.Contains(joined, "... (cut)") {
		t.Errorf("the step with a 200 kB value is missing or was not cut")
	}
}

func TestRenderMarkdownEscapes(t *testing.T) {
	p := &Plan{Fleet: "ducksnest", Steps: []Step{
		{Plane: PlaneCloud, Action: ActionUpdate, Address: MustParseAddress("aws.instance.a|b"), Reason: "x | y `code` <img src=x onerror=alert(1)> **bold**\nnext",
			Changes: []Change{{Attr: "tags.Name", Before: "```", After: "</details>"}}},
		{Plane: PlaneCloud, Action: ActionUpdate, Address: MustParseAddress("aws.instance.`tick`"), Reason: "<!-- -->"},
	}, Notes: []string{"<script>alert(1)</script> | note"}}
	parts := RenderMarkdown(p)
	checkMarkdownParts(t, p, parts)
	md := parts[0]
	for _, bad := range []string{"<img", "<script", "<!-- -->", "**bold**", "\nnext"} {
		if strings.Contains(md, bad) {
			t.Errorf("%q is not escaped:\n%s", bad, md)
		}
	}
	for _, want := range []string{"| `aws.instance.a\\|b` |", "x \\| y \\`code\\` &lt;img", "aws.instance.\\`tick\\`", "\n~ tags.Name = \"```\" -> \"</details>\"\n"} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
}

func TestMarkdownMarker(t *testing.T) {
	parts := RenderMarkdown(renderTestPlan(1))
	if !strings.HasPrefix(parts[0], MarkdownMarker("ducksnest")) {
		t.Errorf("the part does not start with the marker %q", MarkdownMarker("ducksnest"))
	}
	if strings.HasPrefix(parts[0], MarkdownMarker("ducks")) {
		t.Errorf("the marker of fleet ducks matches the comment of fleet ducksnest")
	}
	if m := MarkdownMarker("a --> b"); strings.Contains(m, ">") || strings.Contains(m, " b") {
		t.Errorf("a fleet name can end the marker: %q", m)
	}
}

var (
	mdPartLine   = regexp.MustCompile(`^<!-- nestbot:plan fleet=(\S+) part=(\d+)/(\d+) -->\n`)
	mdFence      = regexp.MustCompile("^ {0,3}(`{3,})")
	mdCellBorder = regexp.MustCompile(`(^|[^\\])\|`)
)

// checkMarkdownParts checks what GitHub needs of the comments: each part
// under the size limit, numbered, opening with the marker, and with every
// code block, <details> element and table whole within it.
func checkMarkdownParts(t *testing.T, p *Plan, parts []string) {
	t.Helper()
	for i, part := range parts {
		k := i + 1
		if len(part) > MaxCommentSize {
			t.Errorf("part %d: %d bytes, over the limit of %d", k, len(part), MaxCommentSize)
		}
		if !strings.HasPrefix(part, MarkdownMarker(p.Fleet)) {
			t.Errorf("part %d does not start with the marker", k)
		}
		if m := mdPartLine.FindStringSubmatch(part); m == nil || m[2] != fmt.Sprint(k) || m[3] != fmt.Sprint(len(parts)) {
			t.Errorf("part %d: marker line %q, want part=%d/%d", k, strings.SplitN(part, "\n", 2)[0], k, len(parts))
		}
		if len(parts) > 1 && !strings.Contains(part, fmt.Sprintf("_Part %d of %d", k, len(parts))) {
			t.Errorf("part %d does not say it is part %d of %d", k, k, len(parts))
		}
		checkMarkdownStructure(t, k, part)
	}
}

func checkMarkdownStructure(t *testing.T, k int, part string) {
	t.Helper()
	fence := "" // the open code fence, if any
	details := 0
	lines := strings.Split(part, "\n")
	for i, line := range lines {
		if m := mdFence.FindStringSubmatch(line); m != nil {
			switch {
			case fence == "":
				fence = m[1]
			case len(m[1]) >= len(fence) && strings.TrimSpace(line) == m[1]:
				fence = ""
			}
			continue
		}
		if fence != "" {
			continue
		}
		details += strings.Count(line, "<details>") - strings.Count(line, "</details>")
		if details < 0 || details > 1 {
			t.Errorf("part %d, line %d: <details> nested or closed twice", k, i+1)
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		if cells := len(mdCellBorder.FindAllString(line, -1)); cells != 5 || !strings.HasSuffix(line, " |") {
			t.Errorf("part %d, line %d: a cut or malformed table row (%d cell borders): %q", k, i+1, cells, line)
		}
		// The first row of a table is its header, then the delimiter row.
		if i == 0 || !strings.HasPrefix(lines[i-1], "|") {
			if line != "| | Address | Action | Reason |" || i+1 >= len(lines) || lines[i+1] != "| --- | --- | --- | --- |" {
				t.Errorf("part %d, line %d: a table without its header: %q", k, i+1, line)
			}
			if i == 0 || lines[i-1] != "" {
				t.Errorf("part %d, line %d: a table not preceded by a blank line", k, i+1)
			}
		}
	}
	if fence != "" {
		t.Errorf("part %d ends inside a code block", k)
	}
	if details != 0 {
		t.Errorf("part %d ends inside <details>", k)
	}
}

func TestStripMarker(t *testing.T) {
	p := &Plan{Fleet: "ducksnest", Steps: []Step{{Plane: PlaneCloud, Action: ActionCreate, Address: MustParseAddress("aws.vpc")}}}
	part := RenderMarkdown(p)[0]
	got := StripMarker(part)
	if strings.Contains(got, "<!--") || !strings.HasPrefix(part, MarkdownMarker("ducksnest")) || !strings.HasSuffix(part, got) {
		t.Errorf("StripMarker left the marker, or took more than it:\n%q\n%q", part, got)
	}
	if s := "no marker here"; StripMarker(s) != s {
		t.Errorf("StripMarker changed a text without a marker: %q", StripMarker(s))
	}
}
