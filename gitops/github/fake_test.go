package github

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGitHub is a small in-memory GitHub, served by httptest, for what the
// lab's GitHub (lab_test.go, where most of this package is tested) cannot
// do: answer as a misbehaving server would (intercept), pages of 10, write
// timings. It keeps comments, check runs, deployments, issues and reviews,
// mints installation tokens for a GitHub App (checking the App's RS256
// JSON Web Token), and counts the requests it answers by method and route.
// A request to any other endpoint fails the test.
type fakeGitHub struct {
	t   *testing.T
	srv *httptest.Server

	// Set before the first request.
	token    string         // the token that token-mode clients send
	login    string         // the login of the token's user
	appID    int64          // the App whose JWTs are accepted
	appKey   *rsa.PublicKey // its public key
	appLogin string         // the login of the App's bot user
	pageSize int            // the most per page; default 100
	tokenPre string         // what a minted token begins with; default "ghs_"

	// intercept, when set, may answer a request first (rate limits).
	intercept func(w http.ResponseWriter, r *http.Request) bool

	mu          sync.Mutex
	calls       map[string]int // "METHOD /route"
	tokens      map[string]int64
	minted      int
	nextID      int64
	comments    map[int64]*fakeComment
	reactions   map[int64][]string
	checkRuns   map[int64]*fakeCheckRun
	deployments map[int64]*fakeDeployment
	issues      map[int]*fakeIssue
	reviews     map[int][]fakeReview
	perms       map[string]string // a user's permission; "write" when not here
}

type fakeComment struct {
	ID      int64
	Issue   int
	Body    string
	User    string
	Created time.Time
}

type fakeCheckRun struct {
	ID                        int64
	Name, HeadSHA             string
	Status, Conclusion        string
	Title, Summary, Text      string
	Annotations               []map[string]any
	AnnotationsPerRequest     []int
	ExternalID, DetailsURL    string
	CompletedAtSet, Completed bool
}

type fakeDeployment struct {
	ID       int64
	Request  map[string]any
	Statuses []map[string]any
}

type fakeIssue struct {
	Number             int
	Title, Body, State string
	StateReason        string
	Labels             []string
	User               string
	Created, Updated   time.Time
}

type fakeReview struct {
	User, State, CommitID string
}

func newFake(t *testing.T) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{
		t:           t,
		token:       "fake-token-for-tests-0001",
		login:       "nestbot-test",
		appLogin:    "nestbot[bot]",
		pageSize:    100,
		calls:       map[string]int{},
		tokens:      map[string]int64{},
		comments:    map[int64]*fakeComment{},
		reactions:   map[int64][]string{},
		checkRuns:   map[int64]*fakeCheckRun{},
		deployments: map[int64]*fakeDeployment{},
		issues:      map[int]*fakeIssue{},
		reviews:     map[int][]fakeReview{},
		perms:       map[string]string{},
		nextID:      1000,
	}
	mux := http.NewServeMux()
	f.routes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake GitHub: no endpoint for %s %s", r.Method, r.URL.Path)
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[r.Method+" "+routeOf("", r.URL.Path)]++
		f.mu.Unlock()
		if f.intercept != nil && f.intercept(w, r) {
			return
		}
		w.Header().Set("X-Ratelimit-Limit", "5000")
		w.Header().Set("X-Ratelimit-Remaining", "4999")
		w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// count is how many requests the fake answered for "METHOD /route".
func (f *fakeGitHub) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

// writes is how many POST, PATCH, PUT and DELETE requests the fake got.
func (f *fakeGitHub) writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, v := range f.calls {
		if !strings.HasPrefix(k, "GET ") {
			n += v
		}
	}
	return n
}

// commentsOn is the comments of issue n, oldest first.
func (f *fakeGitHub) commentsOn(n int) []fakeComment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeComment
	for _, c := range f.comments {
		if c.Issue == n {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeGitHub) addComment(issue int, user, body string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.comments[f.nextID] = &fakeComment{ID: f.nextID, Issue: issue, Body: body, User: user, Created: time.Now()}
	return f.nextID
}

// user is who the request authenticates as, or "" after writing a 401.
func (f *fakeGitHub) user(w http.ResponseWriter, r *http.Request) string {
	h := r.Header.Get("Authorization")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != "" && h == "Bearer "+f.token {
		return f.login
	}
	if tok, ok := strings.CutPrefix(h, "token "); ok {
		if _, ok := f.tokens[tok]; ok {
			return f.appLogin
		}
	}
	writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeGitHub) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		f.t.Errorf("fake GitHub: %s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Problems parsing JSON"})
		return false
	}
	return true
}

func pathInt(r *http.Request, name string) int64 {
	v, _ := strconv.ParseInt(r.PathValue(name), 10, 64)
	return v
}

// page answers a list with GitHub's pagination: per_page, page and a Link
// header to the next page.
func (f *fakeGitHub) page(w http.ResponseWriter, r *http.Request, items []any) {
	per := 30
	if v, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && v > 0 {
		per = min(v, 100)
	}
	per = min(per, f.pageSize)
	pg := 1
	if v, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && v > 0 {
		pg = v
	}
	start := min((pg-1)*per, len(items))
	end := min(start+per, len(items))
	if end < len(items) {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(pg+1))
		w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, f.srv.URL, r.URL.Path, q.Encode()))
	}
	writeJSON(w, http.StatusOK, items[start:end])
}

func (f *fakeGitHub) commentJSON(c *fakeComment) map[string]any {
	return map[string]any{
		"id": c.ID, "body": c.Body, "user": map[string]any{"login": c.User},
		"created_at": c.Created.UTC().Format(time.RFC3339Nano), "html_url": fmt.Sprintf("%s/c/%d", f.srv.URL, c.ID),
	}
}

func (f *fakeGitHub) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /repos/{owner}/{repo}/issues/{number}/comments", func(w http.ResponseWriter, r *http.Request) {
		if f.user(w, r) == "" {
			return
		}
		var items []any
		for _, c := range f.commentsOn(int(pathInt(r, "number"))) {
			items = append(items, f.commentJSON(&c))
		}
		f.page(w, r, items)
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/issues/{number}/comments", func(w http.ResponseWriter, r *http.Request) {
		user := f.user(w, r)
		var body struct{ Body string }
		if user == "" || !f.decode(w, r, &body) {
			return
		}
		id := f.addComment(int(pathInt(r, "number")), user, body.Body)
		f.mu.Lock()
		c := f.comments[id]
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, f.commentJSON(c))
	})
	mux.HandleFunc("PATCH /repos/{owner}/{repo}/issues/comments/{id}", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Body string }
		if f.user(w, r) == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		c := f.comments[pathInt(r, "id")]
		if c != nil {
			c.Body = body.Body
		}
		f.mu.Unlock()
		if c == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		writeJSON(w, http.StatusOK, f.commentJSON(c))
	})
	mux.HandleFunc("DELETE /repos/{owner}/{repo}/issues/comments/{id}", func(w http.ResponseWriter, r *http.Request) {
		if f.user(w, r) == "" {
			return
		}
		f.mu.Lock()
		_, ok := f.comments[pathInt(r, "id")]
		delete(f.comments, pathInt(r, "id"))
		f.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/issues/comments/{id}/reactions", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Content string }
		if f.user(w, r) == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		f.reactions[pathInt(r, "id")] = append(f.reactions[pathInt(r, "id")], body.Content)
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"id": 1, "content": body.Content})
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/check-runs", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if f.user(w, r) == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		f.nextID++
		cr := &fakeCheckRun{ID: f.nextID, Status: "queued"}
		f.checkRuns[cr.ID] = cr
		f.applyCheckRun(cr, body)
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"id": cr.ID, "name": cr.Name, "head_sha": cr.HeadSHA, "status": cr.Status})
	})
	mux.HandleFunc("PATCH /repos/{owner}/{repo}/check-runs/{id}", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if f.user(w, r) == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		cr := f.checkRuns[pathInt(r, "id")]
		if cr != nil {
			f.applyCheckRun(cr, body)
		}
		f.mu.Unlock()
		if cr == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": cr.ID, "name": cr.Name, "status": cr.Status})
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/deployments", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if f.user(w, r) == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		f.nextID++
		d := &fakeDeployment{ID: f.nextID, Request: body}
		f.deployments[d.ID] = d
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"id": d.ID, "ref": body["ref"], "environment": body["environment"]})
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/deployments/{id}/statuses", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if f.user(w, r) == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		d := f.deployments[pathInt(r, "id")]
		if d != nil {
			d.Statuses = append(d.Statuses, body)
		}
		f.mu.Unlock()
		if d == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"id": len(d.Statuses), "state": body["state"]})
	})
	mux.HandleFunc("GET /repos/{owner}/{repo}/issues", func(w http.ResponseWriter, r *http.Request) {
		if f.user(w, r) == "" {
			return
		}
		q := r.URL.Query()
		f.mu.Lock()
		var list []*fakeIssue
		for _, is := range f.issues {
			if st := q.Get("state"); st != "all" && is.State != cmp.Or(st, "open") {
				continue
			}
			if l := q.Get("labels"); l != "" && !slices.Contains(is.Labels, l) {
				continue
			}
			list = append(list, is)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Updated.After(list[j].Updated) })
		var items []any
		for _, is := range list {
			items = append(items, issueJSON(is))
		}
		f.mu.Unlock()
		f.page(w, r, items)
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/issues", func(w http.ResponseWriter, r *http.Request) {
		user := f.user(w, r)
		var body struct {
			Title, Body string
			Labels      []string
		}
		if user == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		n := len(f.issues) + 1
		is := &fakeIssue{Number: n, Title: body.Title, Body: body.Body, State: "open", Labels: body.Labels, User: user, Created: time.Now(), Updated: time.Now()}
		f.issues[n] = is
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, issueJSON(is))
	})
	mux.HandleFunc("PATCH /repos/{owner}/{repo}/issues/{number}", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]*string
		if f.user(w, r) == "" || !f.decode(w, r, &body) {
			return
		}
		f.mu.Lock()
		is := f.issues[int(pathInt(r, "number"))]
		if is != nil {
			for k, dst := range map[string]*string{"title": &is.Title, "body": &is.Body, "state": &is.State, "state_reason": &is.StateReason} {
				if v := body[k]; v != nil {
					*dst = *v
				}
			}
			is.Updated = time.Now()
		}
		f.mu.Unlock()
		if is == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		writeJSON(w, http.StatusOK, issueJSON(is))
	})
	mux.HandleFunc("GET /repos/{owner}/{repo}/pulls/{number}/reviews", func(w http.ResponseWriter, r *http.Request) {
		if f.user(w, r) == "" {
			return
		}
		f.mu.Lock()
		var items []any
		for i, rv := range f.reviews[int(pathInt(r, "number"))] {
			items = append(items, map[string]any{"id": i + 1, "user": map[string]any{"login": rv.User}, "state": rv.State, "commit_id": rv.CommitID})
		}
		f.mu.Unlock()
		f.page(w, r, items)
	})
	mux.HandleFunc("GET /repos/{owner}/{repo}/collaborators/{username}/permission", func(w http.ResponseWriter, r *http.Request) {
		if f.user(w, r) == "" {
			return
		}
		f.mu.Lock()
		perm := cmp.Or(f.perms[r.PathValue("username")], "write")
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"permission": perm, "role_name": perm, "user": map[string]any{"login": r.PathValue("username")}})
	})
	mux.HandleFunc("GET /app", func(w http.ResponseWriter, r *http.Request) {
		if err := f.checkJWT(r.Header.Get("Authorization")); err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"message": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": f.appID, "slug": strings.TrimSuffix(f.appLogin, "[bot]")})
	})
	mux.HandleFunc("GET /user", func(w http.ResponseWriter, r *http.Request) {
		if user := f.user(w, r); user != "" {
			writeJSON(w, http.StatusOK, map[string]any{"login": user})
		}
	})
	mux.HandleFunc("POST /app/installations/{id}/access_tokens", func(w http.ResponseWriter, r *http.Request) {
		if err := f.checkJWT(r.Header.Get("Authorization")); err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"message": err.Error()})
			return
		}
		buf := make([]byte, 18)
		_, _ = rand.Read(buf)
		tok := cmp.Or(f.tokenPre, "ghs_") + hex.EncodeToString(buf)

		f.mu.Lock()
		f.tokens[tok] = pathInt(r, "id")
		f.minted++
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	})
}

// applyCheckRun takes a create or update request into cr, as GitHub does:
// annotations are added to those the run has.
func (f *fakeGitHub) applyCheckRun(cr *fakeCheckRun, body map[string]any) {
	str := func(k string) string { s, _ := body[k].(string); return s }
	if v := str("name"); v != "" {
		cr.Name = v
	}
	if v := str("head_sha"); v != "" {
		cr.HeadSHA = v
	}
	if v := str("status"); v != "" {
		cr.Status = v
	}
	if v := str("conclusion"); v != "" {
		cr.Conclusion, cr.Status = v, "completed"
	}
	if str("completed_at") != "" {
		cr.CompletedAtSet = true
	}
	cr.ExternalID = cmp.Or(str("external_id"), cr.ExternalID)
	cr.DetailsURL = cmp.Or(str("details_url"), cr.DetailsURL)
	if out, ok := body["output"].(map[string]any); ok {
		if out["title"] == nil || out["summary"] == nil {
			f.t.Errorf("fake GitHub: check run output without title or summary: %v", out)
		}
		cr.Title, _ = out["title"].(string)
		cr.Summary, _ = out["summary"].(string)
		if t, ok := out["text"].(string); ok {
			cr.Text = t
		}
		anns, _ := out["annotations"].([]any)
		if len(anns) > 50 {
			f.t.Errorf("fake GitHub: %d annotations in one request; GitHub takes at most 50", len(anns))
		}
		if len(anns) > 0 {
			cr.AnnotationsPerRequest = append(cr.AnnotationsPerRequest, len(anns))
		}
		for _, a := range anns {
			cr.Annotations = append(cr.Annotations, a.(map[string]any))
		}
	}
}

// checkJWT verifies an App's "Bearer <JWT>": RS256 with the App's key,
// issued by the App, not expired.
func (f *fakeGitHub) checkJWT(h string) error {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return fmt.Errorf("no bearer JWT")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(f.appKey, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("JWT signature does not verify: %v", err)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var head struct{ Alg string }
	_ = json.Unmarshal(hdr, &head)
	if head.Alg != "RS256" {
		return fmt.Errorf("JWT alg %q, not RS256", head.Alg)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Iss any
		Exp int64
	}
	_ = json.Unmarshal(payload, &claims)
	if fmt.Sprint(claims.Iss) != strconv.FormatInt(f.appID, 10) {
		return fmt.Errorf("JWT issued by %v, not App %d", claims.Iss, f.appID)
	}
	if time.Unix(claims.Exp, 0).Before(time.Now()) {
		return fmt.Errorf("JWT expired")
	}
	return nil
}

func issueJSON(is *fakeIssue) map[string]any {
	var labels []any
	for _, l := range is.Labels {
		labels = append(labels, map[string]any{"name": l})
	}
	return map[string]any{
		"number": is.Number, "title": is.Title, "body": is.Body, "state": is.State,
		"labels": labels, "user": map[string]any{"login": is.User},
	}
}
