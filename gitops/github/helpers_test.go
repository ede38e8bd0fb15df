package github

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/logs/logstest"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

var testRepo = Repo{Owner: "ducksnest", Name: "infra"}

// world is the lab's GitHub, which checks every request against GitHub's
// OpenAPI description, holding ducksnest/infra (nest.yaml on main) and
// pull request #1 from branch "change". As go-github's tests mount one
// httptest mux, every test here talks to it through one front server
// (url), which a test may have answer a request first, as a misbehaving
// server or proxy would (intercept). Each test ends by asserting that no
// request broke the description.
type world struct {
	srv   *labgithub.Server
	pr    labgithub.PullRequest
	url   string // the API's base URL, through the front
	login string // the user token holds a write token of
	token string

	mu        sync.Mutex
	intercept func(http.ResponseWriter, *http.Request) bool
}

func setup(t *testing.T) *world {
	t.Helper()
	return setupWith(t, labgithub.Config{})
}

func setupWith(t *testing.T, cfg labgithub.Config) *world {
	t.Helper()
	srv, pr := LabWithPR(t, cfg)
	w := &world{srv: srv, pr: pr, login: "nestbot-test"}
	w.token = srv.Token(w.login)
	if err := srv.SetPermission(testRepo.Owner, testRepo.Name, w.login, "write"); err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		intercept := w.intercept
		w.mu.Unlock()
		if intercept != nil && intercept(rw, r) {
			return
		}
		srv.ServeHTTP(rw, r)
	}))
	t.Cleanup(front.Close)
	w.url = front.URL + strings.TrimPrefix(srv.APIURL(), srv.ServerURL()) // …/api/v3
	return w
}

// LabWithPR starts the lab GitHub with ducksnest/infra and pull request #1
// (branch change, growing nest.yaml), and fails t on any request GitHub's
// OpenAPI description does not allow. The package's external tests use it
// too.
func LabWithPR(t *testing.T, cfg labgithub.Config) (*labgithub.Server, labgithub.PullRequest) {
	t.Helper()
	srv, err := labgithub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx := context.Background()
	if err := srv.CreateRepo(ctx, testRepo.Owner, testRepo.Name, labgithub.RepoOptions{Files: map[string][]byte{"nest.yaml": []byte("version: 1\nname: ducksnest\n")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Commit(ctx, testRepo.Owner, testRepo.Name, labgithub.Commit{Branch: "change", Message: "grow",
		Files: map[string][]byte{"nest.yaml": []byte("version: 1\nname: ducksnest\nhosts: {}\n")}}); err != nil {
		t.Fatal(err)
	}
	pr, err := srv.OpenPR(testRepo.Owner, testRepo.Name, "change", labgithub.PROptions{Title: "Grow the fleet"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if v := srv.Violations(); len(v) > 0 {
			t.Errorf("requests GitHub's OpenAPI description does not allow:\n%s", strings.Join(v, "\n"))
		}
	})
	return srv, pr
}

// interceptWith has f answer the requests it wants before the lab does.
func (w *world) interceptWith(f func(http.ResponseWriter, *http.Request) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.intercept = f
}

// writeJSON answers as GitHub's API does, with v as JSON.
func writeJSON(rw http.ResponseWriter, code int, v any) {
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	rw.WriteHeader(code)
	_ = json.NewEncoder(rw).Encode(v)
}

// commit pushes a commit to branch and returns its SHA.
func (w *world) commit(t *testing.T, branch string) string {
	t.Helper()
	p, err := w.srv.Commit(context.Background(), testRepo.Owner, testRepo.Name, labgithub.Commit{Branch: branch, Message: "push to " + branch,
		Files: map[string][]byte{"notes/" + branch: fmt.Appendf(nil, "%d\n", time.Now().UnixNano())}})
	if err != nil {
		t.Fatal(err)
	}
	return p.After
}

// tokenClient is a token-mode Client of w (a write token) with writes 1ms
// apart; opts may change its options.
func tokenClient(t *testing.T, w *world, opts ...func(*Options)) (*Client, *logstest.Log) {
	t.Helper()
	logger, logs := logstest.New(t)
	o := Options{BaseURL: w.url, Token: w.token, WriteSpacing: time.Millisecond, Logger: logger}
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
