// Package github is the lab's GitHub: an in-process HTTP server, on
// loopback only, that answers the REST operations nestbot calls and serves
// the lab's repositories over git's smart HTTP protocol.
//
// Every API request is checked against GitHub's published OpenAPI
// description (npm @octokit/openapi; the operations nestbot calls are cut
// into openapi/api.github.com.subset.json by openapi/cut.mjs and embedded).
// A request the description does not allow is answered as GitHub would
// (422, or 400 for a body that is not JSON) and recorded: Violations lists
// them, and a test that drives nestbot against the server asserts there are
// none. Every response the server writes is checked against the same
// description, so the shapes it answers with are GitHub's.
//
// The server keeps, in memory, repositories (each backed by a bare git
// repository under Config.Dir, served by git-http-backend), users and their
// permissions, pull requests, issues, comments, reactions, check runs,
// deployments and their statuses, and the tokens of a GitHub App and its
// installation. Helpers set the world up (CreateRepo, Commit, OpenPR,
// Merge, AddComment, ...), read it back (Comments, CheckRuns, ...), and
// build the webhook events GitHub would send (PushEvent, ...; see
// webhook.go).
//
// Beside nestbot's client (gitops/github) and go-github, it is imported as
// labgithub:
//
//	import labgithub "github.com/ducksnest/nestbot/lab/github"
//
//	srv, err := labgithub.New(labgithub.Config{Logger: logger})
//	if err := srv.Start(); err != nil { ... }
//	defer srv.Close()
//	client, _ := github.NewClient(github.WithAuthToken(srv.InstallationToken()), github.WithEnterpriseURLs(srv.URL(), srv.URL()))
package github

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// Defaults used when the corresponding Config field is empty.
const (
	DefaultAppID          = 4242
	DefaultAppSlug        = "nestbot"
	DefaultInstallationID = 77001
	DefaultRateLimit      = 5000
)

// Config configures a Server.
type Config struct {
	// Dir holds the bare repositories, as <Dir>/<owner>/<repo>.git. Empty
	// means a new temporary directory, removed by Close.
	Dir string

	// Logger receives a record per request and per violation; nil
	// discards. Tokens, keys and secrets never reach it.
	Logger *slog.Logger

	// Now is the clock for timestamps, token expiry and rate-limit
	// windows. Nil means time.Now. JWT times are checked against the real
	// clock, as ghinstallation signs with it.
	Now func() time.Time

	// The GitHub App nestbot runs as, and its one installation (on every
	// repository). Zero values mean DefaultAppID, DefaultAppSlug,
	// DefaultInstallationID and a new 2048-bit key.
	AppID          int64
	AppSlug        string
	AppKey         *rsa.PrivateKey
	InstallationID int64

	// RateLimit is x-ratelimit-limit per token and hour. Zero means
	// DefaultRateLimit (the Actions token gets 1000, as on GitHub).
	RateLimit int

	// LegacyTokens mints tokens as GitHub did before April 2021 (and an
	// older GitHub Enterprise Server still does): a personal access token
	// is 40 hex digits, an installation token "v1." and 40 hex digits, with
	// none of the ghp_/ghs_ prefixes that tools recognise tokens by.
	LegacyTokens bool

	// WebhookExamples is the directory of the npm package
	// @octokit/webhooks-examples; the *Event methods build events from it.
	WebhookExamples string

	// OnPush, if set, is called after a push over git smart HTTP moved
	// branches, once per branch, as GitHub would then send a push event
	// (make it with PushEvent). It runs on the pushing request's
	// goroutine, after the push is committed; it may call back into the
	// Server. Commit and Merge do not call it: they return the Pushed.
	OnPush func(Pushed)
}

// Server is the lab's GitHub. Make one with New.
type Server struct {
	cfg    Config
	dir    string
	ownDir bool
	doc    *openapi3.T
	router routers.Router
	multi  []*regexp.Regexp // paths whose last parameter spans segments
	app    *app             // the lab's App
	action *app             // github-actions, whose token is the Actions GITHUB_TOKEN

	mu sync.Mutex // guards st
	st *state

	obsMu      sync.Mutex // guards the fields below
	calls      map[string]int64
	writes     int64
	violations []string
	faults     []Fault

	examplesOnce sync.Once
	examples     *Examples
	examplesErr  error

	hs  *http.Server
	ln  net.Listener
	web string // http://127.0.0.1:port

	backend string // git-http-backend, found by Start
}

// New makes a server: it loads the embedded OpenAPI subset, makes the App's
// key if Config has none, and creates Config.Dir. Start it to serve.
func New(cfg Config) (*Server, error) {
	doc, router, multi, err := loadSpec()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, doc: doc, router: router, multi: multi, st: newState(), calls: map[string]int64{}}
	if s.app, err = newApp(cfg); err != nil {
		return nil, err
	}
	s.action = actionsApp()
	s.dir = cfg.Dir
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "nestbot-lab-github-"); err != nil {
			return nil, fmt.Errorf("labgithub.New: %w", err)
		}
		s.ownDir = true
	} else if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("labgithub.New: %w", err)
	}
	if s.dir, err = filepath.Abs(s.dir); err != nil {
		return nil, fmt.Errorf("labgithub.New: %w", err)
	}
	return s, nil
}

func (s *Server) logf(format string, args ...any) {
	logs.Or(s.cfg.Logger).Info(fmt.Sprintf(format, args...))
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

// Start listens on 127.0.0.1 on a free port and serves in the background.
func (s *Server) Start() error {
	if s.hs != nil {
		return errors.New("labgithub.Start: already started")
	}
	backend, err := gitHTTPBackend()
	if err != nil {
		return fmt.Errorf("labgithub.Start: %w", err)
	}
	s.backend = backend
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("labgithub.Start: %w", err)
	}
	s.ln = ln
	s.web = "http://" + ln.Addr().String()
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.hs.Serve(ln)
	s.logf("github: listening on %s", s.web)
	return nil
}

// URL is the REST API's base URL with a trailing slash, laid out as
// GitHub Enterprise Server lays it out: "http://127.0.0.1:PORT/api/v3/".
// It suits go-github as it is, either as BaseURL or through
// WithEnterpriseURLs (which leaves a URL ending in /api/v3/ alone).
// GITHUB_API_URL and ghinstallation's BaseURL take it without the trailing
// slash (APIURL). The API also answers at the root, as api.github.com does.
// It is empty before Start.
func (s *Server) URL() string {
	if s.web == "" {
		return ""
	}
	return s.web + "/api/v3/"
}

// APIURL is URL without its trailing slash, as GITHUB_API_URL holds it.
func (s *Server) APIURL() string { return strings.TrimSuffix(s.URL(), "/") }

// ServerURL is the web and git root, as GITHUB_SERVER_URL holds it:
// "http://127.0.0.1:PORT". Repositories are cloned from
// <ServerURL>/<owner>/<repo>.git.
func (s *Server) ServerURL() string { return s.web }

// CloneURL is the git smart-HTTP URL of owner/repo. git needs a token as
// the password (user x-access-token), as with GitHub.
func (s *Server) CloneURL(owner, repoName string) string {
	return s.web + "/" + owner + "/" + repoName + ".git"
}

// Env is GITHUB_API_URL and GITHUB_SERVER_URL pointing at the server, as
// KEY=VALUE lines.
func (s *Server) Env() []string {
	return []string{"GITHUB_API_URL=" + s.APIURL(), "GITHUB_SERVER_URL=" + s.ServerURL()}
}

// Dir is the directory holding the bare repositories.
func (s *Server) Dir() string { return s.dir }

// Close stops the listener, waits (at most 5s) for requests in flight, and
// removes Dir if New made it.
func (s *Server) Close() error {
	var err error
	if s.hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.hs.Shutdown(ctx)
		s.hs = nil
	}
	if s.ownDir {
		os.RemoveAll(s.dir)
		s.ownDir = false
	}
	if err != nil {
		return fmt.Errorf("labgithub.Close: %w", err)
	}
	return nil
}

// Violations lists every request the OpenAPI description does not allow
// (and every response of the server's own that it does not describe), in
// the order they happened. A test driving nestbot asserts it is empty.
func (s *Server) Violations() []string {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	return append([]string(nil), s.violations...)
}

// ResetViolations forgets the violations recorded so far.
func (s *Server) ResetViolations() {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	s.violations = nil
}

func (s *Server) violation(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	s.logf("github: VIOLATION %s", v)
	s.obsMu.Lock()
	s.violations = append(s.violations, v)
	s.obsMu.Unlock()
}

// Calls is how many API requests for operation (its operationId in
// GitHub's description, such as "issues/create-comment") reached the
// server, including those refused as invalid, unauthenticated or faulted.
// Requests matching no operation count as "unknown"; git traffic is not
// counted.
func (s *Server) Calls(operation string) int64 {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	return s.calls[operation]
}

// CallCounts returns a copy of every per-operation count.
func (s *Server) CallCounts() map[string]int64 {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	m := make(map[string]int64, len(s.calls))
	for k, v := range s.calls {
		m[k] = v
	}
	return m
}

// Writes is how many API requests with method POST, PATCH, PUT or DELETE
// reached the server (counted as Calls counts).
func (s *Server) Writes() int64 {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	return s.writes
}

// ResetCalls zeroes Calls and Writes.
func (s *Server) ResetCalls() {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	clear(s.calls)
	s.writes = 0
}

func (s *Server) count(operation, method string) {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	s.calls[operation]++
	switch method {
	case http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete:
		s.writes++
	}
}

// ServeHTTP answers git smart-HTTP requests under /<owner>/<repo>.git/,
// raw file downloads under /raw/, and the REST API at /api/v3/ and at /.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if owner, name, ok := gitRepoPath(r.URL.Path); ok {
		s.serveGit(w, r, owner, name)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/raw/") {
		s.serveRaw(w, r)
		return
	}
	s.serveAPI(w, r)
}

// maxBody bounds a request body; GitHub's own limit is larger, nothing
// nestbot sends comes near it.
const maxBody = 32 << 20

// call is one API request being handled; handlers run with s.mu held.
type call struct {
	op     string
	method string
	params map[string]string
	query  url.Values
	body   []byte
	who    *token
	now    time.Time
	link   func(page, last int) string // a Link header for a page
	// invalid, when set by a handler, records the request as a violation:
	// GitHub refuses it although the description does not say so.
	invalid string
}

// reply is what a handler answers.
type reply struct {
	status int
	body   any // JSON-encoded; nil means no body
	header http.Header
}

type handler func(s *Server, c *call) reply

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	escaped := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(escaped, "/api/v3"); ok && (rest == "" || rest[0] == '/') {
		escaped = rest
		if escaped == "" {
			escaped = "/"
		}
	}
	escaped = s.escapeMultiSegment(escaped)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "could not read the request body: "+err.Error()))
		return
	}
	if len(body) > maxBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(http.StatusRequestEntityTooLarge, "request body is too large"))
		return
	}
	req := r.Clone(r.Context())
	req.URL.RawPath = escaped
	req.URL.Path, _ = url.PathUnescape(escaped)
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	what := r.Method + " " + r.URL.RequestURI()

	route, params, err := s.router.FindRoute(req)
	if err != nil {
		s.count("unknown", r.Method)
		s.violation("%s: no operation of the lab's OpenAPI subset matches (%v); if GitHub has it, add it to lab/github/openapi/cut.mjs and give the lab's server a handler", what, err)
		s.writeAPI(w, r, nil, http.StatusNotFound, errorBody(http.StatusNotFound, "Not Found"), nil)
		return
	}
	op := route.Operation.OperationID
	s.count(op, r.Method)
	for k, v := range params {
		if u, err := url.PathUnescape(v); err == nil {
			params[k] = u
		}
	}

	who, status, msg := s.authenticate(r, op)
	if status != 0 {
		s.logf("github: %s (%s): %d %s", r.Method, r.URL.Path, status, msg)
		s.writeAPI(w, r, who, status, errorBody(status, msg), nil)
		return
	}
	if f, ok := s.takeFault(op); ok {
		s.logf("github: %s: injected %s", op, f.Kind)
		s.writeFault(w, r, who, f)
		return
	}
	if who != nil && op != "rate-limit/get" {
		if exceeded := s.spend(who); exceeded {
			s.writeAPI(w, r, who, http.StatusForbidden, map[string]any{
				"message":           "API rate limit exceeded for " + who.user.login + ".",
				"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits",
				"status":            "403",
			}, nil)
			return
		}
	}

	// A literal null where the body is optional is no body: GitHub takes
	// it, and ghinstallation and go-github send it for nil options.
	if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil && !rb.Value.Required && string(bytes.TrimSpace(body)) == "null" {
		req.Body, req.ContentLength = http.NoBody, 0
		req.Header.Del("Content-Type")
		body = nil
	}
	input := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options:    validationOptions(),
	}
	if err := openapi3filter.ValidateRequest(r.Context(), input); err != nil {
		status, msg := http.StatusUnprocessableEntity, "Invalid request.\n\n"+validationMessage(err)
		if isJSONSyntax(err) {
			status, msg = http.StatusBadRequest, "Problems parsing JSON"
		}
		s.violation("%s (%s): %s", what, op, validationMessage(err))
		s.writeAPI(w, r, who, status, errorBody(status, msg), nil)
		return
	}

	h := handlerFor(op)
	if h == nil {
		s.violation("%s (%s): the lab's server has no handler for this operation of its subset; add one", what, op)
		s.writeAPI(w, r, who, http.StatusNotImplemented, errorBody(http.StatusNotImplemented, "not implemented by the lab"), nil)
		return
	}
	c := &call{op: op, method: r.Method, params: params, query: r.URL.Query(), body: body, who: who, link: pageLinks(r)}
	s.mu.Lock()
	c.now = s.now()
	out := h(s, c)
	s.mu.Unlock()
	if c.invalid != "" {
		s.violation("%s (%s): %s", what, op, c.invalid)
	}
	s.logf("github: %s %s (%s) %d", r.Method, r.URL.Path, op, out.status)
	b := s.writeAPI(w, r, who, out.status, out.body, out.header)
	s.checkResponse(r.Context(), input, what, op, out, b)
}

// writeAPI writes a JSON response with GitHub's headers, rate-limit
// headers included, and returns the body it wrote.
func (s *Server) writeAPI(w http.ResponseWriter, r *http.Request, who *token, status int, body any, header http.Header) []byte {
	for k, v := range header {
		w.Header()[k] = v
	}
	s.rateHeaders(w.Header(), who)
	w.Header().Set("X-GitHub-Media-Type", "github.v3; format=json")
	w.Header().Set("X-GitHub-Api-Version-Selected", "2022-11-28")
	return writeJSON(w, status, body)
}
