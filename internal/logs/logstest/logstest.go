// Package logstest gives tests a logger that keeps what was logged, shows
// it in the test's output, and fails the test when a line holds one of
// the secrets it was told of. Only tests import it.
package logstest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Log is what a logger made by New has written, one record a line.
type Log struct {
	t       testing.TB
	secrets []string
	mu      sync.Mutex
	lines   []string
}

// New returns a text logger at debug level and what it writes; a line
// holding any of secrets fails t.
func New(t testing.TB, secrets ...string) (*slog.Logger, *Log) {
	l := &Log{t: t, secrets: secrets}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// Write takes one record (slog's handlers write each in one call).
func (l *Log) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	for _, s := range l.secrets {
		if s != "" && strings.Contains(line, s) {
			l.t.Errorf("a log line holds a secret: %q", line)
		}
	}
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.t.Log(line)
	return len(p), nil
}

// String is every line logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
