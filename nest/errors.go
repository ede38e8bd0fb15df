package nest

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ducksnest/nestbot/internal/textcut"
)

// Pos is a position in a file, 1-based.
type Pos struct {
	Line, Col int
}

// Error is one mistake in a nest.yaml, at a position.
type Error struct {
	File string // as the user named it
	Pos  Pos    // zero when the mistake has no single place
	Path string // the key path, e.g. aws.subnets.public-a.cidr
	Msg  string
	Hint string // what to do about it, or empty
}

// Error formats as file:line:col: path: message, with the hint on the next line.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Pos.Line, e.Pos.Col)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("\n    hint: ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Errors is every mistake found in one file, in file order.
type Errors []*Error

// Error lists every error, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// Bounds on what Errors hold, whatever the file: a mistake's message and
// hint are cut at maxMessage bytes, and past maxErrors mistakes the rest are
// counted, not listed.
const (
	maxMessage = 512
	maxErrors  = 100
	cutMark    = "…(cut)" // ends a message or hint cut at maxMessage
)

// bounded cuts every message to maxMessage bytes and the list to maxErrors
// mistakes, saying how many more there were.
func (es Errors) bounded(file string) Errors {
	for _, e := range es {
		e.Msg, e.Hint = textcut.Limit(e.Msg, maxMessage, cutMark), textcut.Limit(e.Hint, maxMessage, cutMark)
	}
	if len(es) <= maxErrors {
		return es
	}
	more := len(es) - maxErrors
	return append(es[:maxErrors:maxErrors], &Error{File: file, Msg: fmt.Sprintf("%d more mistakes not listed", more), Hint: "fix these first, then validate again"})
}
