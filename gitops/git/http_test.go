package git

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// httpRemote serves the fixture's bare remote with the git CLI's
// http-backend, behind basic auth that accepts only x-access-token:<token>.
// A refused request gets a 401 whose body echoes the credentials it was
// given — a careless server, so that a leak through go-git's error text
// would show.
type httpRemote struct {
	base string // http://127.0.0.1:port/git/

	mu   sync.Mutex
	seen []string // passwords received
}

func startHTTPRemote(t *testing.T, f *fixture, token string) *httpRemote {
	t.Helper()
	execPath, err := gitTry(t, "", "--exec-path")
	if err != nil {
		t.Skipf("skipping: the git CLI cannot say where git-http-backend is: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(execPath), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("skipping the HTTP test: git-http-backend is not installed (%v)", err)
	}
	gitRun(t, f.remote, "config", "http.receivepack", "true")
	home := t.TempDir()
	cgiHandler := &cgi.Handler{
		Path:   backend,
		Root:   "/git",
		Dir:    filepath.Dir(f.remote),
		Stderr: io.Discard, // hook output
		Env: []string{
			"GIT_PROJECT_ROOT=" + filepath.Dir(f.remote),
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + home,
		},
	}
	hr := &httpRemote{}
	mux := http.NewServeMux()
	mux.Handle("/git/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if ok {
			hr.mu.Lock()
			hr.seen = append(hr.seen, pass)
			hr.mu.Unlock()
		}
		if !ok || user != "x-access-token" || pass != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="nest"`)
			http.Error(w, fmt.Sprintf("bad credentials %s:%s for %s", user, pass, r.Header.Get("Authorization")), http.StatusUnauthorized)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	hr.base = "http://" + ln.Addr().String() + "/git/"
	return hr
}

func (h *httpRemote) received(secret string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.seen {
		if p == secret {
			return true
		}
	}
	return false
}

func canary(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "ghs_canary" + what + hex.EncodeToString(b)
}

// assertAbsent fails when secret is in any of texts.
func assertAbsent(t *testing.T, secret string, what string, text string) {
	t.Helper()
	if strings.Contains(text, secret) {
		t.Errorf("the token appears in %s: %s", what, text)
	}
}

// TestPushOverHTTP: clone, commit and push over HTTP with a token against
// the git CLI's own server; a non-fast-forward and a hook's refusal are
// typed rejections; the token is in no error, log line or file on disk.
func TestPushOverHTTP(t *testing.T) {
	f := newFixture(t)
	token := canary(t, "good")
	hr := startHTTPRemote(t, f, token)
	url := hr.base + filepath.Base(f.remote)
	ctx := testContext(t)
	logs := &syncBuffer{}
	opts := testOptions(logs)
	opts.Token = token

	dir := filepath.Join(t.TempDir(), "clone.git")
	r, err := Clone(ctx, url, dir, opts)
	if err != nil {
		t.Fatalf("Clone over HTTP: %v", err)
	}
	if !hr.received(token) {
		t.Fatal("the server never saw the token")
	}
	head, err := r.Head()
	if err != nil || head != f.commits["c4"] {
		t.Fatalf("Head() = %s, %v", head, err)
	}
	sha, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: renew apiserver", Author: testAuthor, Parent: head,
		Files: map[string][]byte{"infra/nix/secrets/certs/derived/ec2/ca-apiserver.crt": []byte("crt\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(ctx, "main"); err != nil {
		t.Fatalf("Push over HTTP: %v", err)
	}
	if got := f.remoteHead(t, "main"); got != sha {
		t.Fatalf("remote main = %s, want %s", got, sha)
	}
	if got := lines(gitRun(t, f.remote, "show", "--name-only", "--format=", "main")); len(got) != 1 || got[0] != "infra/nix/secrets/certs/derived/ec2/ca-apiserver.crt" {
		t.Errorf("changed files = %v", got)
	}

	// Someone else pushes first: a non-fast-forward.
	other, err := Clone(ctx, url, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: other", Author: testAuthor,
		Files: map[string][]byte{"other.txt": []byte("o\n")}}); err != nil {
		t.Fatal(err)
	}
	if err := other.Push(ctx, "main"); err != nil {
		t.Fatalf("Push other: %v", err)
	}
	if _, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: late", Author: testAuthor, Parent: sha,
		Files: map[string][]byte{"late.txt": []byte("l\n")}}); err != nil {
		t.Fatal(err)
	}
	err = r.Push(ctx, "main")
	var rejected *PushRejectedError
	if !errors.As(err, &rejected) || !rejected.NonFastForward || !errors.Is(err, ErrBranchMoved) {
		t.Fatalf("late Push = %v, want a non-fast-forward rejection", err)
	}
	assertAbsent(t, token, "the rejection", err.Error())

	// The remote's receive-pack refuses through a hook: a rejection, but not
	// "someone else pushed".
	if err := r.Fetch(ctx); err != nil {
		t.Fatalf("Fetch over HTTP: %v", err)
	}
	hook := filepath.Join(f.remote, "hooks", "pre-receive")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tip, _ := r.Resolve("main")
	if _, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: blocked", Author: testAuthor, Parent: tip,
		Files: map[string][]byte{"blocked.txt": []byte("b\n")}}); err != nil {
		t.Fatal(err)
	}
	err = r.Push(ctx, "main")
	if !errors.As(err, &rejected) || rejected.NonFastForward || errors.Is(err, ErrBranchMoved) {
		t.Fatalf("Push past a refusing hook = %v, want a *PushRejectedError that is not a non-fast-forward", err)
	}
	if !strings.Contains(err.Error(), "pre-receive hook declined") {
		t.Errorf("the rejection does not carry the remote's reason: %v", err)
	}
	if got := f.remoteHead(t, "main"); got != tip {
		t.Errorf("remote main moved past the hook")
	}
	assertAbsent(t, token, "the hook rejection", err.Error())

	assertAbsent(t, token, "the logs", logs.String())
	if !strings.Contains(logs.String(), "git: pushed") {
		t.Errorf("no push was logged:\n%s", logs.String())
	}
	assertTokenNotOnDisk(t, dir, token)
}

// TestTokenNeverInErrors provokes failures whose raw go-git text would carry
// the token — a 401 whose body echoes the credentials, credentials in the
// URL, an unreachable host, a missing repository — and checks every error.
func TestTokenNeverInErrors(t *testing.T) {
	f := newFixture(t)
	good := canary(t, "server")
	hr := startHTTPRemote(t, f, good)
	url := hr.base + filepath.Base(f.remote)
	ctx := testContext(t)
	logs := &syncBuffer{}

	bad := canary(t, "client")
	opts := testOptions(logs)
	opts.Token = bad
	var errs []error

	// 1. A wrong token: the server's 401 body echoes it.
	_, err := Clone(ctx, url, filepath.Join(t.TempDir(), "c1"), opts)
	if err == nil {
		t.Fatal("Clone with a wrong token succeeded")
	}
	if !hr.received(bad) {
		t.Fatal("the server never saw the canary: the test proves nothing")
	}
	errs = append(errs, err)

	// 2. The token inside the URL, to a missing repository.
	withCreds := strings.Replace(hr.base, "http://", "http://x-access-token:"+bad+"@", 1) + "missing.git"
	_, err = Clone(ctx, withCreds, filepath.Join(t.TempDir(), "c2"), testOptions(logs))
	if err == nil {
		t.Fatal("Clone of a missing repository succeeded")
	}
	errs = append(errs, err)

	// 2b. The right token inside the URL, to a missing repository.
	rightCreds := strings.Replace(hr.base, "http://", "http://x-access-token:"+good+"@", 1) + "missing.git"
	_, err = Clone(ctx, rightCreds, "", testOptions(logs))
	if err == nil {
		t.Fatal("Clone of a missing repository succeeded")
	}
	errs = append(errs, err)

	// 3. The token as the URL's user name, to a closed port.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	_ = ln.Close()
	_, err = Clone(ctx, "http://"+bad+"@"+closed+"/x.git", "", testOptions(logs))
	if err == nil {
		t.Fatal("Clone from a closed port succeeded")
	}
	errs = append(errs, err)

	// 4. Plain http to a host that is not loopback: refused before sending.
	_, err = Clone(ctx, "http://nestbot.invalid/x.git", "", opts)
	if err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("Clone over plain http to a remote host = %v, want a refusal", err)
	}
	errs = append(errs, err)

	// 5. A repository whose config holds the URL with the token in it; fetch
	// and push fail on the 401 that echoes it.
	work := filepath.Join(t.TempDir(), "work")
	gitRun(t, filepath.Dir(work), "clone", "-q", f.remote, work)
	gitRun(t, work, "remote", "set-url", "origin", strings.Replace(url, "http://", "http://x-access-token:"+bad+"@", 1))
	r, err := Open(work, testOptions(logs))
	if err != nil {
		t.Fatal(err)
	}
	err = r.Fetch(ctx)
	if err == nil {
		t.Fatal("Fetch with a wrong token in the URL succeeded")
	}
	errs = append(errs, err)
	if _, err := r.Commit(ctx, CommitRequest{Branch: "nest/x", Parent: "main", Message: "m", Author: testAuthor,
		Files: map[string][]byte{"x": []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	err = r.Push(ctx, "nest/x")
	if err == nil {
		t.Fatal("Push with a wrong token succeeded")
	}
	errs = append(errs, err)

	for i, err := range errs {
		if err == nil {
			continue
		}
		t.Logf("error %d: %v", i+1, err)
		assertAbsent(t, bad, fmt.Sprintf("error %d", i+1), err.Error())
		assertAbsent(t, bad, fmt.Sprintf("error %d (%%+v)", i+1), fmt.Sprintf("%+v", err))
		assertAbsent(t, good, fmt.Sprintf("error %d", i+1), err.Error())
	}
	assertAbsent(t, bad, "the logs", logs.String())
	assertAbsent(t, good, "the logs", logs.String())
}

func assertTokenNotOnDisk(t *testing.T, dir, token string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), token) {
			t.Errorf("the token is stored in %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
