// Package logs is nestbot's one logging convention: a *slog.Logger is
// passed in (a field named Logger), a nil one discards, and a command
// builds the root logger from --log-format: JSON lines when its standard
// error is not a terminal, text when a person reads it.
package logs

import (
	"fmt"
	"io"
	"log/slog"
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

// New returns a logger writing to w in format; terminal says whether w is
// a terminal, which auto asks.
func New(w io.Writer, format string, terminal bool) (*slog.Logger, error) {
	if err := CheckFormat(format); err != nil {
		return nil, err
	}
	if format == FormatText || (format == FormatAuto && terminal) {
		return slog.New(slog.NewTextHandler(w, nil)), nil
	}
	return slog.New(slog.NewJSONHandler(w, nil)), nil
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
