package github

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var testRepo = Repo{Owner: "ducksnest", Name: "infra"}

// logLines collects what a Client logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// tokenClient is a token-mode Client of f with writes 1ms apart; opts may
// change its options.
func tokenClient(t *testing.T, f *fakeGitHub, opts ...func(*Options)) (*Client, *logLines) {
	t.Helper()
	logs := &logLines{}
	o := Options{BaseURL: f.srv.URL, Token: f.token, WriteSpacing: time.Millisecond, Logf: logs.logf}
	for _, fn := range opts {
		fn(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
