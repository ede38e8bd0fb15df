// Package logs is nestbot's one logging convention: a *slog.Logger is
// passed in (a field named Logger), a nil one discards, and a command
// builds the root logger from --log-format (JSON lines when its standard
// error is not a terminal, text when a person reads it) and --log-level.
package logs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// Formats are the values --log-format takes.
const (
	FormatAuto = "auto" // json unless standard error is a terminal
	FormatText = "text"
	FormatJSON = "json"
)

// CheckFormat reports whether format is one --log-format takes, and if not
// says which are.
func CheckFormat(format string) error {
	switch format {
	case FormatAuto, FormatText, FormatJSON:
		return nil
	}
	return fmt.Errorf("--log-format %q: use auto (json unless standard error is a terminal), text or json", format)
}

// Levels are the values --log-level takes, lowest first.
var Levels = []string{"debug", "info", "warn", "error"}

// ParseLevel reads a --log-level value (any case); the empty one is info.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if !slices.Contains(Levels, strings.ToLower(s)) || l.UnmarshalText([]byte(s)) != nil {
		return 0, fmt.Errorf("--log-level %q: use %s", s, strings.Join(Levels, ", "))
	}
	return l, nil
}

// New returns a logger writing to w in format, passing on records at level
// and above; terminal says whether w is a terminal, which auto asks.
func New(w io.Writer, format string, level slog.Level, terminal bool) (*slog.Logger, error) {
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	o := &slog.HandlerOptions{Level: level}
	if format == FormatText || (format == FormatAuto && terminal) {
		return slog.New(slog.NewTextHandler(w, o)), nil
	}
	return slog.New(slog.NewJSONHandler(w, o)), nil
}

// Or is l, or a logger that discards when l is nil: the one place a nil
// logger is given its meaning.
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Printf adapts l to the APIs that take a printf-style function (tsnet's
// logger.Logf, reconcile/rollout's Config.Logf): each call is one record
// at info level.
func Printf(l *slog.Logger) func(format string, args ...any) {
	l = Or(l)
	return func(format string, args ...any) {
		l.Info(strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
	}
}

// MapStrings returns a handler that passes every record on to h with its
// message and each string value through f: strings, errors and Stringers
// (formatted), in groups and in attributes added with With. A client that
// knows its secrets redacts with it; the Action makes what it logs inert.
func MapStrings(h slog.Handler, f func(string) string) slog.Handler {
	return &mapHandler{next: h, f: f}
}

type mapHandler struct {
	next slog.Handler
	f    func(string) string
}

func (h *mapHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *mapHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.f(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *mapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	mapped := make([]slog.Attr, len(as))
	for i, a := range as {
		mapped[i] = h.attr(a)
	}
	return &mapHandler{next: h.next.WithAttrs(mapped), f: h.f}
}

func (h *mapHandler) WithGroup(name string) slog.Handler {
	return &mapHandler{next: h.next.WithGroup(name), f: h.f}
}

func (h *mapHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.f(v.String()))
	case slog.KindGroup:
		g := v.Group()
		mapped := make([]any, len(g))
		for i, ga := range g {
			mapped[i] = h.attr(ga)
		}
		return slog.Group(a.Key, mapped...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.f(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, h.f(x.String()))
		case []byte:
			return slog.String(a.Key, h.f(string(x)))
		default:
			return slog.String(a.Key, h.f(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// AtLeast is l passing on only records at level or above: for a part
// whose records at lower levels repeat what a report prints.
func AtLeast(l *slog.Logger, level slog.Level) *slog.Logger {
	return slog.New(&levelHandler{next: Or(l).Handler(), min: level})
}

type levelHandler struct {
	next slog.Handler
	min  slog.Level
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.next.Enabled(ctx, l)
}

func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error { return h.next.Handle(ctx, r) }

func (h *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelHandler{next: h.next.WithAttrs(as), min: h.min}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{next: h.next.WithGroup(name), min: h.min}
}
