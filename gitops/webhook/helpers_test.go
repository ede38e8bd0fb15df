package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/internal/logs/logstest"
	"github.com/ducksnest/nestbot/store"
)

// secret is a canary: no log line and no response may contain it.
const secret = "canary-webhook-secret-7Qx2"

// openDB opens a fresh bbolt state file.
func openDB(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// logger returns a logger that logs to t and fails t when a line holds the secret.
func logger(t testing.TB) *slog.Logger {
	l, _ := logstest.New(t, secret)
	return l
}

var deliveries atomic.Int64

// newDelivery returns a fresh delivery id.
func newDelivery() string {
	return fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012d", deliveries.Add(1))
}

// request builds a delivery of event with body, signed with secret, under id.
func request(t testing.TB, url, event, id string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderEvent, event)
	req.Header.Set(webhook.HeaderDelivery, id)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte(secret), body))
	return req
}

// do sends req and returns the status and body, failing t when the
// response holds the secret.
func do(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) {
		t.Errorf("a response holds the webhook secret: %q", b)
	}
	return resp.StatusCode, string(b)
}

// send signs and posts one delivery, returning the status and body.
func send(t testing.TB, url, event, id string, body []byte) (int, string) {
	t.Helper()
	return do(t, request(t, url, event, id, body))
}

// example is one payload from @octokit/webhooks-examples.
type example struct {
	Event   string
	Payload []byte
	Action  string
}

// examples returns GitHub's example payloads of the given events, as the
// npm package @octokit/webhooks-examples ships them.
func examples(t testing.TB, events ...string) []example {
	t.Helper()
	dir := fixtures.Package(t, "@octokit/webhooks-examples")
	data, err := os.ReadFile(filepath.Join(dir, "api.github.com", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index []struct {
		Name     string            `json:"name"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	var out []example
	for _, e := range index {
		for _, want := range events {
			if e.Name != want {
				continue
			}
			for _, raw := range e.Examples {
				var a struct {
					Action string `json:"action"`
				}
				if err := json.Unmarshal(raw, &a); err != nil {
					t.Fatal(err)
				}
				out = append(out, example{Event: e.Name, Payload: raw, Action: a.Action})
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no examples of %v in %s", events, dir)
	}
	return out
}

// edit returns payload with fields replaced: each path is dot-separated
// ("issue.pull_request"), each value JSON-encodable.
func edit(t testing.TB, payload []byte, set map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	for path, v := range set {
		parts := strings.Split(path, ".")
		obj := m
		for _, p := range parts[:len(parts)-1] {
			next, ok := obj[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				obj[p] = next
			}
			obj = next
		}
		obj[parts[len(parts)-1]] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// drain claims and completes every job in q, returning them in claim order.
func drain(t testing.TB, q store.Queue) []store.Job {
	t.Helper()
	var out []store.Job
	for {
		c, err := q.Claim(context.Background(), "test-drain", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			return out
		}
		out = append(out, c.Job)
		if err := q.Done(context.Background(), c, store.ResultOK); err != nil {
			t.Fatal(err)
		}
	}
}

// serve runs a Server from cfg on a loopback port until the test ends and
// returns its base URL.
func serve(t *testing.T, cfg webhook.Config) (string, *webhook.Server) {
	t.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = [][]byte{[]byte(secret)}
	}
	if cfg.Logger == nil {
		cfg.Logger = logger(t)
	}
	srv, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), srv
}

// depth is the queue's depth, failing t on error.
func depth(t testing.TB, q store.Queue) int {
	t.Helper()
	n, err := q.Depth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// runs records the jobs a Run function saw.
type runs struct {
	mu   sync.Mutex
	jobs []store.Job
}

func (r *runs) add(j store.Job) {
	r.mu.Lock()
	r.jobs = append(r.jobs, j)
	r.mu.Unlock()
}

func (r *runs) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, j := range r.jobs {
		out = append(out, j.ID)
	}
	return out
}
