package reconcile

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// TextOptions tune RenderText.
type TextOptions struct {
	// Color adds ANSI colours to the symbols. Set it only for a terminal
	// that wants them (the caller knows: nestbot's is cli.IO.Color).
	Color bool
}

// NoChangesText is what RenderText prints for a plan without steps.
const NoChangesText = "No changes. The fleet matches nest.yaml."

// RenderText writes the plan for a person at a terminal, the way Terraform
// shows one: a header, each plane's steps with their attribute changes,
// the notes, and the summary line.
func RenderText(w io.Writer, p *Plan, o TextOptions) error {
	if p == nil {
		p = &Plan{}
	}
	var b strings.Builder
	t := textRenderer{b: &b, color: o.Color}
	t.plan(p)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("render text plan: %w", err)
	}
	return nil
}

type textRenderer struct {
	b     *strings.Builder
	color bool
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

func (t textRenderer) plan(p *Plan) {
	if len(p.Steps) == 0 {
		t.b.WriteString(NoChangesText + "\n")
		t.notes(p.Notes)
		return
	}
	t.b.WriteString(textHeader(p) + "\n")
	if len(p.Warnings) > 0 {
		t.b.WriteString("\n")
		for _, w := range p.Warnings {
			t.b.WriteString(t.paintChange("-") + " " + t.bold("Warning: "+printable(w)) + "\n")
		}
	}
	for _, plane := range renderPlanes(p) {
		t.b.WriteString("\n" + t.bold(planeTitle(plane)) + "\n")
		for _, st := range p.StepsOf(plane) {
			t.b.WriteString("\n")
			t.step(st)
		}
	}
	t.notes(p.Notes)
	t.b.WriteString("\n")
	if !p.HasChanges() {
		t.b.WriteString("No changes to apply.\n")
	}
	t.b.WriteString(p.Summary().String() + "\n")
}

// textHeader is the first line: which fleet, which commit, how fresh.
func textHeader(p *Plan) string {
	h := "nestbot plan for " + printable(p.Fleet)
	if p.Revision != "" {
		h += " at " + printable(shortRevision(p.Revision))
	}
	if !p.ObservedAt.IsZero() {
		h += " (live state observed " + renderTime(p.ObservedAt) + ")"
	}
	return h
}

func (t textRenderer) notes(notes []string) {
	if len(notes) == 0 {
		return
	}
	t.b.WriteString("\n")
	for _, n := range notes {
		t.b.WriteString("Note: " + printable(n) + "\n")
	}
}

func (t textRenderer) step(st Step) {
	addr := printable(st.Address.String())
	t.b.WriteString("  # " + stepComment(st) + "\n")
	t.b.WriteString(strings.Repeat(" ", 3-len(actionSymbol(st.Action))) + t.paint(actionSymbol(st.Action), st.Action) + " " + addr + "\n")
	for _, l := range changeLines(st) {
		t.b.WriteString("      " + t.paintChange(l.symbol) + " " + l.text + "\n")
	}
}

func (t textRenderer) bold(s string) string {
	if !t.color {
		return s
	}
	return ansiBold + s + ansiReset
}

// paint colours a step symbol: green to add, yellow to change, red to
// remove, cyan to roll; the rest stay plain.
func (t textRenderer) paint(sym string, a Action) string {
	if !t.color {
		return sym
	}
	switch {
	case a == ActionRoll:
		return ansiCyan + sym + ansiReset
	case sym == "-/+":
		return ansiRed + "-" + ansiReset + "/" + ansiGreen + "+" + ansiReset
	}
	return t.paintChange(sym)
}

func (t textRenderer) paintChange(sym string) string {
	if !t.color {
		return sym
	}
	switch sym {
	case "+":
		return ansiGreen + sym + ansiReset
	case "~":
		return ansiYellow + sym + ansiReset
	case "-":
		return ansiRed + sym + ansiReset
	}
	return sym
}

// The rest of this file is shared with the Markdown renderer.

// renderPlanes lists the planes that have steps: the known ones in apply
// order, then any other plane a step names, so that no step is ever left out.
func renderPlanes(p *Plan) []Plane {
	seen := map[Plane]bool{}
	for _, st := range p.Steps {
		seen[st.Plane] = true
	}
	var out []Plane
	for _, pl := range Planes() {
		if seen[pl] {
			out = append(out, pl)
			delete(seen, pl)
		}
	}
	for _, st := range p.Steps {
		if seen[st.Plane] {
			out = append(out, st.Plane)
			delete(seen, st.Plane)
		}
	}
	return out
}

func planeTitle(p Plane) string {
	switch p {
	case PlaneCloud:
		return "Cloud"
	case PlaneTailnet:
		return "Tailnet"
	case PlanePKI:
		return "Certificates"
	case PlaneHosts:
		return "Hosts"
	}
	if p == "" {
		return "Other"
	}
	return printable(string(p))
}

// actionSymbol is the one- to three-character mark of a step.
func actionSymbol(a Action) string {
	switch a {
	case ActionCreate, ActionIssue:
		return "+"
	case ActionUpdate, ActionRenew, ActionReissue, ActionRekey:
		return "~"
	case ActionReplace:
		return "-/+"
	case ActionDelete:
		return "-"
	case ActionAdopt:
		return "="
	case ActionRoll:
		return ">"
	case ActionWait:
		return "*"
	case ActionDrift:
		return "!"
	}
	return "?"
}

// stepPhrase says what happens to a step's address, as in "will be created".
func stepPhrase(st Step) string {
	switch st.Action {
	case ActionCreate:
		return "will be created"
	case ActionUpdate:
		return "will be updated in place"
	case ActionReplace:
		return "must be replaced"
	case ActionDelete:
		return "will be deleted"
	case ActionAdopt:
		return "will be adopted"
	case ActionIssue:
		return "will be issued"
	case ActionRenew:
		return "will be renewed"
	case ActionReissue:
		return "will be reissued"
	case ActionRekey:
		return "will be re-keyed"
	case ActionRoll:
		if st.Batch > 0 {
			return fmt.Sprintf("will be switched in batch %d", st.Batch)
		}
		return "will be switched"
	case ActionWait:
		return "will be waited for"
	case ActionDrift:
		return "has drifted"
	}
	return "will " + printable(string(st.Action))
}

// stepComment is the line above a step: its address and the live
// resource's id, what happens to it, and why. A wait says only what it waits for, when the reason tells.
func stepComment(st Step) string {
	addr := printable(st.Address.String())
	if st.ID != "" {
		addr += " (" + printable(st.ID) + ")"
	}
	switch {
	case st.Reason == "":
		return addr + " " + stepPhrase(st)
	case st.Action == ActionWait:
		return addr + ": " + printable(st.Reason)
	}
	return addr + " " + stepPhrase(st) + ": " + printable(st.Reason)
}

// actionLabel is the action as a short word, with the batch of a roll.
func actionLabel(st Step) string {
	if st.Action == ActionRoll && st.Batch > 0 {
		return fmt.Sprintf("roll, batch %d", st.Batch)
	}
	return printable(string(st.Action))
}

type changeLine struct {
	symbol string // "+", "-", "~", or " " for an attribute shown for context
	text   string // the aligned attribute, "=", and value(s)
}

// changeLines formats a step's changes with the attribute names aligned.
// A sensitive change shows Sensitive and never a value.
func changeLines(st Step) []changeLine {
	width := 0
	for _, c := range st.Changes {
		width = max(width, utf8.RuneCountInString(printable(c.Attr)))
	}
	out := make([]changeLine, 0, len(st.Changes))
	for _, c := range st.Changes {
		attr := printable(c.Attr)
		attr += strings.Repeat(" ", width-utf8.RuneCountInString(attr))
		sym, value := changeValue(st.Action, c)
		line := attr + " = " + value
		if c.ForcesReplace {
			line += " # forces replacement"
		}
		out = append(out, changeLine{symbol: sym, text: line})
	}
	return out
}

// changeValue is a change's symbol and its value, or its before and after.
func changeValue(a Action, c Change) (symbol, value string) {
	if c.Sensitive {
		return stepChangeSymbol(a), Sensitive
	}
	switch {
	case c.Before == "" && c.After == "":
		return stepChangeSymbol(a), `""`
	case c.Before == "":
		return "+", quoteValue(c.After)
	case c.After == "":
		return "-", quoteValue(c.Before)
	case c.Before == c.After:
		return " ", quoteValue(c.After)
	}
	return "~", quoteValue(c.Before) + " -> " + quoteValue(c.After)
}

// stepChangeSymbol is the symbol of a change whose values do not tell:
// a sensitive one, or one with neither value.
func stepChangeSymbol(a Action) string {
	switch a {
	case ActionCreate, ActionIssue:
		return "+"
	case ActionDelete:
		return "-"
	}
	return "~"
}

// quoteValue quotes a value, escaping anything unprintable; the
// placeholders stay bare.
func quoteValue(v string) string {
	if v == KnownAfterApply || v == Sensitive {
		return v
	}
	return strconv.Quote(v)
}

// printable escapes control characters and invalid UTF-8, so that nothing
// read from the live fleet can move a terminal's cursor or break a line.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == ' ' || unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// shortRevision abbreviates a commit hash to 7 characters, as git does.
func shortRevision(rev string) string {
	if len(rev) <= 7 {
		return rev
	}
	for _, r := range rev {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return rev
		}
	}
	return rev[:7]
}

func renderTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
