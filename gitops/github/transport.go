package github

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ducksnest/nestbot/internal/logs"
)

// meter is the transport under authentication: it learns every credential
// that goes out (to keep it out of errors and logs), and reports each
// request to Options.Observe and Options.Logger.
type meter struct {
	next http.RoundTripper
	c    *Client
}

func (m *meter) RoundTrip(req *http.Request) (*http.Response, error) {
	m.c.secrets.addAuthorization(req.Header.Get("Authorization"))
	start := time.Now()
	resp, err := m.next.RoundTrip(req)
	status, remaining := 0, -1
	if resp != nil {
		status = resp.StatusCode
		if v, perr := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining")); perr == nil {
			remaining = v
		}
	}
	route := routeOf(m.c.basePath, req.URL.Path)
	if m.c.opts.Observe != nil {
		m.c.opts.Observe(req.Method, route, status, remaining)
	}
	took := time.Since(start).Round(time.Millisecond)
	log := m.c.log().With("method", req.Method, "path", req.URL.Path, "took", took.String())
	switch {
	case err != nil:
		log.Debug("github: request failed", "err", err)
	case remaining >= 0:
		log.Debug("github: request", "status", status, "rate_limit_left", remaining)
	default:
		log.Debug("github: request", "status", status)
	}
	return resp, err
}

// log is Options.Logger with every credential the Client has sent
// redacted from what it logs.
func (c *Client) log() *slog.Logger {
	return slog.New(logs.MapStrings(logs.Or(c.opts.Logger).Handler(), c.secrets.redact))
}

// routeOf is the path as a template, for metrics: the owner, repository,
// numbers, commit hashes and user names replaced by their names.
func routeOf(basePath, path string) string {
	path = strings.TrimPrefix(path, basePath)
	segs := strings.Split(strings.Trim(path, "/"), "/")
	repos := len(segs) > 0 && segs[0] == "repos"
	for i, s := range segs {
		prev := ""
		if i > 0 {
			prev = segs[i-1]
		}
		switch {
		case repos && i == 1:
			segs[i] = "{owner}"
		case repos && i == 2:
			segs[i] = "{repo}"
		case prev == "issues" && allDigits(s), prev == "pulls" && allDigits(s):
			segs[i] = "{number}"
		case allDigits(s):
			segs[i] = "{id}"
		case isHex(s) && len(s) >= 7 && (prev == "commits" || prev == "statuses" || prev == "status"):
			segs[i] = "{sha}"
		case prev == "collaborators", prev == "users":
			segs[i] = "{username}"
		}
	}
	return "/" + strings.Join(segs, "/")
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// writeGate lets one write of an installation through at a time, at least
// spacing after the previous one ended.
type writeGate struct {
	sem     chan struct{}
	spacing time.Duration
	last    time.Time // guarded by sem
}

func newWriteGate(spacing time.Duration) *writeGate {
	return &writeGate{sem: make(chan struct{}, 1), spacing: max(spacing, 0)}
}

// enter waits for the gate, bounded by ctx; leave must follow a nil error.
func (g *writeGate) enter(ctx context.Context) error {
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if wait := time.Until(g.last.Add(g.spacing)); wait > 0 && !g.last.IsZero() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			<-g.sem
			return ctx.Err()
		}
	}
	return nil
}

func (g *writeGate) leave() {
	g.last = time.Now()
	<-g.sem
}

// keyedMutex is a mutex per key, each waited for within a context.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{}
	refs int
}

// lock takes key's lock; the function it returns gives it back.
func (k *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
