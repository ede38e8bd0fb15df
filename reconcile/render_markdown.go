package reconcile

import (
	"fmt"
	"strings"

	"github.com/ducksnest/nestbot/internal/textcut"
)

// MaxCommentSize is GitHub's limit on the body of a comment, 65,536
// characters. RenderMarkdown counts bytes, which are never fewer.
const MaxCommentSize = 65536

// MarkdownMarker returns the start of the hidden marker that opens every
// part of a fleet's plan comment, e.g. "<!-- nestbot:plan fleet=ducksnest ".
// A comment whose body has this prefix is one that RenderMarkdown wrote for
// that fleet. The prefix ends with a space, so that the marker of fleet
// "duck" is not a prefix of the marker of fleet "ducksnest".
func MarkdownMarker(fleet string) string {
	return "<!-- nestbot:plan fleet=" + markerName(fleet) + " "
}

// StripMarker drops the hidden marker that opens a part of a plan comment
// (or any comment of nestbot's that opens with one), leaving what a reader
// sees: for a step summary, a check run, a terminal.
func StripMarker(part string) string {
	if strings.HasPrefix(part, "<!--") {
		if i := strings.Index(part, "-->"); i >= 0 {
			return strings.TrimPrefix(part[i+3:], "\n")
		}
	}
	return part
}

// Limits that keep any one table row, note or diff line well inside a part.
const (
	mdMaxCell = 1000 // bytes of an address or reason in a table cell
	mdMaxNote = 4000 // bytes of a note
	mdMaxLine = 4000 // bytes of a line in a diff block
)

// RenderMarkdown renders the plan as the body of one or more PR comments,
// each at most MaxCommentSize bytes and each opening with the marker
// MarkdownMarker(p.Fleet) followed by "part=<k>/<n> -->". A plan too long
// for one comment is split between table rows or between steps, never
// inside a table row, a <details> element or a code block: a table that
// continues in the next part repeats its header, a <details> element is
// closed and opened again. The changes of a single step too long for a part
// are cut short inside a closed code block, saying how many lines were left out.
func RenderMarkdown(p *Plan) []string {
	if p == nil {
		p = &Plan{}
	}
	title := mdTitle(p)
	bodies := mdLayout(p, MaxCommentSize-mdReserve(p.Fleet, title))
	n := len(bodies)
	parts := make([]string, n)
	for i, body := range bodies {
		parts[i] = mdPartHeader(p.Fleet, title, i+1, n) + body
	}
	return parts
}

// mdPartHeader is what a part holds before its body: the marker and, for the
// first part, the title; a split plan says which part this is.
func mdPartHeader(fleet, title string, k, n int) string {
	h := fmt.Sprintf("%spart=%d/%d -->\n", MarkdownMarker(fleet), k, n)
	switch {
	case k == 1 && n == 1:
		return h + title
	case k == 1:
		return h + title + fmt.Sprintf("_Part 1 of %d: the plan continues in the next comments._\n\n", n)
	}
	return h + fmt.Sprintf("_Part %d of %d of the plan for %s._\n\n", k, n, mdCode(fleetName(fleet)))
}

// mdReserve is the most a part's header can take, whatever the part numbers.
func mdReserve(fleet, title string) int {
	const many = 1_000_000
	return max(len(mdPartHeader(fleet, title, 1, many)), len(mdPartHeader(fleet, title, many, many)))
}

func mdTitle(p *Plan) string {
	t := "### nestbot plan for " + mdCode(fleetName(p.Fleet))
	if p.Revision != "" {
		t += " at " + mdCode(shortRevision(p.Revision))
	}
	t += "\n\n"
	if !p.ObservedAt.IsZero() {
		t += "Live state observed " + renderTime(p.ObservedAt) + ".\n\n"
	}
	return t
}

// mdLayout renders everything after the title into part bodies of at most
// budget bytes each.
func mdLayout(p *Plan, budget int) []string {
	f := &mdFlow{budget: budget}
	switch {
	case len(p.Steps) == 0:
		f.block("**No changes.** The fleet matches `nest.yaml`.\n\n")
	case !p.HasChanges():
		f.block("**" + mdText(p.Summary().String(), 0) + "**\n\nNo changes to apply.\n\n")
	default:
		f.block("**" + mdText(p.Summary().String(), 0) + "**\n\n")
	}
	for _, w := range p.Warnings {
		f.block("> [!WARNING]\n> " + mdText(w, mdMaxNote) + "\n\n")
	}
	if len(p.Notes) > 0 {
		for _, n := range p.Notes {
			f.block("- **Note:** " + mdText(n, mdMaxNote) + "\n")
		}
		f.block("\n")
	}
	for _, plane := range renderPlanes(p) {
		f.section(plane, p.StepsOf(plane))
	}
	return f.finish()
}

// mdFlow fills parts in order, breaking to a new part only between blocks
// that stand on their own.
type mdFlow struct {
	budget int
	parts  []string
	b      strings.Builder
}

func (f *mdFlow) room() int { return f.budget - f.b.Len() }

func (f *mdFlow) fits(n int) bool { return n <= f.room() }

func (f *mdFlow) newPart() {
	f.parts = append(f.parts, f.b.String())
	f.b.Reset()
}

// block writes s, in a new part if it does not fit in this one.
func (f *mdFlow) block(s string) {
	if !f.fits(len(s)) && f.b.Len() > 0 {
		f.newPart()
	}
	f.b.WriteString(s)
}

// finish ends the last part and each part with exactly one newline.
func (f *mdFlow) finish() []string {
	f.newPart()
	for i, p := range f.parts {
		f.parts[i] = strings.TrimRight(p, "\n") + "\n"
	}
	return f.parts
}

const mdTableHeader = "| | Address | Action | Reason |\n| --- | --- | --- | --- |\n"

// section writes one plane: a heading, a table of its steps, and their
// attribute changes. A table cut by a new part goes on there under the
// heading cont and its header row.
func (f *mdFlow) section(plane Plane, steps []Step) {
	heading := "#### " + mdText(planeTitle(plane), 0) + "\n\n"
	cont := "#### " + mdText(planeTitle(plane), 0) + " (continued)\n\n"

	rows := make([]string, len(steps))
	for i, st := range steps {
		rows[i] = mdRow(st)
	}
	// The heading, the table header and the first row stay together.
	if !f.fits(len(heading)+len(mdTableHeader)+len(rows[0])+1) && f.b.Len() > 0 {
		f.newPart()
	}
	f.b.WriteString(heading + mdTableHeader)
	for _, row := range rows {
		if !f.fits(len(row) + 1) {
			f.b.WriteString("\n")
			f.newPart()
			f.b.WriteString(cont + mdTableHeader)
		}
		f.b.WriteString(row)
	}
	f.b.WriteString("\n")
	f.details(steps, cont)
}

// details writes the attribute changes of steps in a diff block folded in
// <details>: closed and opened again under the heading cont in a new part
// when they do not fit in this one.
func (f *mdFlow) details(steps []Step, cont string) {
	var entries []mdEntry
	total := 0
	for _, st := range steps {
		if len(st.Changes) == 0 {
			continue
		}
		e := mdDiffEntry(st)
		entries = append(entries, e)
		total += e.changes
	}
	if len(entries) == 0 {
		return
	}
	fence := "```"
	for _, e := range entries {
		if run := longestRun(e.text, '`'); run >= len(fence) {
			fence = strings.Repeat("`", run+1)
		}
	}
	// The largest a <details> wrapper can be: its count never exceeds total.
	wrap := len(mdDetailsOpen(total, true, fence)) + len(mdDetailsClose(fence))

	var chunk []mdEntry
	flush := func(continued bool) {
		n := 0
		for _, e := range chunk {
			n += e.changes
		}
		texts := make([]string, len(chunk))
		for i, e := range chunk {
			texts[i] = e.text
		}
		f.b.WriteString(mdDetailsOpen(n, continued, fence) + strings.Join(texts, "\n") + mdDetailsClose(fence))
		chunk = chunk[:0]
	}
	size, continued := 0, false
	for _, e := range entries {
		need := len(e.text)
		if len(chunk) > 0 {
			need++ // the blank line between entries
		}
		if f.fits(wrap + size + need) {
			chunk = append(chunk, e)
			size += need
			continue
		}
		if len(chunk) > 0 {
			flush(continued)
			continued = true
		}
		if f.b.Len() > 0 {
			f.newPart()
			f.b.WriteString(cont)
		}
		size = len(e.text)
		if !f.fits(wrap + size) {
			e.text = truncateLines(e.text, f.room()-wrap)
			size = len(e.text)
		}
		chunk = append(chunk, e)
	}
	flush(continued)
}

func mdDetailsOpen(n int, continued bool, fence string) string {
	label := Plural(n, "change")
	if continued {
		label += " (continued)"
	}
	return "<details><summary>" + label + "</summary>\n\n" + fence + "diff\n"
}

func mdDetailsClose(fence string) string { return fence + "\n\n</details>\n\n" }

// mdRow is a step's table row, the live resource's id beside its address;
// its cells are escaped and bounded.
func mdRow(st Step) string {
	addr := mdCodeCell(st.Address.String())
	if st.ID != "" {
		addr += " (" + mdText(st.ID, mdMaxCell) + ")"
	}
	return "| `" + actionSymbol(st.Action) + "` | " + addr + " | " +
		mdText(actionLabel(st), mdMaxCell) + " | " + mdText(st.Reason, mdMaxCell) + " |\n"
}

type mdEntry struct {
	text    string // lines for a diff block, each ending in "\n"
	changes int    // attributes that change, not those shown for context
}

// mdDiffEntry is a step's changes as lines of a diff block: "+", "-" and "~"
// at the start of a line, under a comment naming the step.
func mdDiffEntry(st Step) mdEntry {
	var b strings.Builder
	b.WriteString(cutLine("# "+printable(st.Address.String())+" "+stepPhrase(st), mdMaxLine) + "\n")
	n := 0
	for _, l := range changeLines(st) {
		if l.symbol != " " {
			n++
		}
		b.WriteString(cutLine(l.symbol+" "+l.text, mdMaxLine) + "\n")
	}
	return mdEntry{text: b.String(), changes: n}
}

// truncateLines keeps the first lines of text that fit in limit bytes with
// a last line saying how many were left out.
func truncateLines(text string, limit int) string {
	lines := strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n")
	note := func(left int) string { return fmt.Sprintf("# ... %d more lines left out\n", left) }
	var b strings.Builder
	for i, l := range lines {
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		if b.Len()+len(l)+len(note(len(lines))) > limit {
			b.WriteString(note(len(lines) - i))
			return b.String()
		}
		b.WriteString(l)
	}
	return b.String()
}

// cutLine bounds a line to limit bytes, at a rune boundary.
func cutLine(s string, limit int) string { return textcut.Limit(s, limit, " ... (cut)") }

func longestRun(s string, c byte) int {
	best, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}

// MarkdownText is s escaped for the text of a Markdown paragraph or table
// cell, on one line: nothing in it starts markup, HTML, a new cell or a new
// line. limit above zero bounds s, in bytes, before it is escaped. For text
// nestbot did not write (a host's output, an error quoting it).
func MarkdownText(s string, limit int) string { return mdText(oneLineOf(s), limit) }

// MarkdownFenced is s as a fenced code block that nothing in s can close:
// its fence is a run of backticks longer than any in s.
func MarkdownFenced(s string) string {
	fence := strings.Repeat("`", max(3, longestRun(s, '`')+1))
	return fence + "\n" + strings.TrimRight(s, "\n") + "\n" + fence + "\n"
}

// oneLineOf is s with its line breaks as spaces.
func oneLineOf(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), " ")
}

// mdText escapes s for the text of a Markdown paragraph or table cell:
// nothing in it can start markup, HTML, or a new cell or line. A limit
// above zero bounds s, in bytes, before it is escaped.
func mdText(s string, limit int) string {
	s = printable(s)
	if limit > 0 {
		s = cutLine(s, limit)
	}
	var b strings.Builder
	for i, r := range s {
		switch r {
		case '_':
			// An underscore between letters or digits starts no emphasis.
			if i > 0 && i+1 < len(s) && isWordByte(s[i-1]) && isWordByte(s[i+1]) {
				b.WriteByte('_')
			} else {
				b.WriteString(`\_`)
			}
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '\\', '`', '*', '[', ']', '|', '~':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// mdCode shows s as code outside a table, or as escaped text when it holds
// what a code span cannot.
func mdCode(s string) string {
	s = printable(s)
	if s == "" || strings.ContainsAny(s, "`") || strings.TrimSpace(s) != s {
		return mdText(s, mdMaxCell)
	}
	return "`" + cutLine(s, mdMaxCell) + "`"
}

// mdCodeCell is mdCode for a table cell, where a pipe must be escaped even
// inside a code span.
func mdCodeCell(s string) string {
	c := mdCode(s)
	if strings.HasPrefix(c, "`") {
		return strings.ReplaceAll(c, "|", `\|`)
	}
	return c
}

// markerName is the fleet as the marker carries it: only characters that
// cannot end an HTML comment or a marker field.
func markerName(fleet string) string {
	var b strings.Builder
	for _, r := range fleet {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func fleetName(fleet string) string {
	if fleet == "" {
		return "(unnamed fleet)"
	}
	return fleet
}
