package github

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// appFake is a fake GitHub that knows App 42 with a fresh RS256 key, and
// that key in PEM.
func appFake(t *testing.T) (*fakeGitHub, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(t)
	f.appID, f.appKey = 42, &key.PublicKey
	return f, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func appClient(t *testing.T, f *fakeGitHub, key []byte) (*Client, *logLines) {
	t.Helper()
	logs := &logLines{}
	c, err := New(Options{BaseURL: f.srv.URL, AppID: f.appID, PrivateKey: key, WriteSpacing: time.Millisecond, Logf: logs.logf})
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

func TestAppInstallationTokensMintedAndCached(t *testing.T) {
	f, key := appFake(t)
	app, _ := appClient(t, f, key)
	ctx := testContext(t)
	ic := app.Installation(7)
	if app.Installation(7) != ic || ic.Installation(7) != ic {
		t.Fatal("Installation(7) made a second client")
	}
	if other := ic.Installation(8); other == ic || other.InstallationID() != 8 || app.Installation(8) != other {
		t.Fatal("Installation(8) from an installation's client is not the App's client for 8")
	}
	for i := range 3 {
		if _, err := ic.Comment(ctx, testRepo, 1, "hello"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if f.minted != 1 {
		t.Errorf("%d tokens minted for 3 calls, want 1 (cached)", f.minted)
	}
	if got := f.commentsOn(1); len(got) != 3 || got[0].User != f.appLogin {
		t.Errorf("comments %+v, want 3 by %s", got, f.appLogin)
	}
	tok, err := ic.GitToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.tokens[tok] != 7 {
		t.Errorf("GitToken gave a token the fake did not mint for installation 7")
	}
	if n := f.count("POST /app/installations/{id}/access_tokens"); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
}

func TestAppInstallationTokenRefreshed(t *testing.T) {
	f, key := appFake(t)
	// ghinstallation refreshes a token a minute before it expires: one that
	// lives 30 seconds is refreshed for every request.
	f.tokenTTL = 30 * time.Second
	app, _ := appClient(t, f, key)
	ic := app.Installation(7)
	ctx := testContext(t)
	for range 3 {
		if _, err := ic.Comment(ctx, testRepo, 1, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	if f.minted != 3 {
		t.Errorf("%d tokens minted for 3 calls with expiring tokens, want 3", f.minted)
	}
}

func TestAppClientActsOnlyAsAnInstallation(t *testing.T) {
	f, key := appFake(t)
	app, _ := appClient(t, f, key)
	ctx := testContext(t)
	_, err := app.PullRequest(ctx, testRepo, 1)
	if err == nil || !strings.Contains(err.Error(), "call Installation(id)") {
		t.Errorf("the App's own client read a pull request: %v", err)
	}
	if _, err := app.GitToken(ctx); err == nil || !strings.Contains(err.Error(), "Installation(id)") {
		t.Errorf("the App's own client gave a git token: %v", err)
	}
	if _, err := app.Installation(0).PullRequest(ctx, testRepo, 1); err == nil || !strings.Contains(err.Error(), "installation id 0") {
		t.Errorf("installation 0: %v", err)
	}
	if f.writes()+f.count("GET /repos/{owner}/{repo}/pulls/{number}") != 0 {
		t.Error("requests were sent")
	}
}

func TestRepoInstallation(t *testing.T) {
	f, key := appFake(t)
	f.installs["ducksnest/infra"] = 77
	app, _ := appClient(t, f, key)
	ctx := testContext(t)
	for _, c := range []*Client{app, app.Installation(5)} {
		id, err := c.RepoInstallation(ctx, testRepo)
		if err != nil || id != 77 {
			t.Fatalf("RepoInstallation = %d, %v; want 77", id, err)
		}
	}
	if _, err := app.RepoInstallation(ctx, Repo{"ducksnest", "other"}); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("unknown repo: %v", err)
	}
	tc, _ := tokenClient(t, f)
	if _, err := tc.RepoInstallation(ctx, testRepo); err == nil {
		t.Error("a token client found an installation")
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	_, key := appFake(t)
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"nothing":        {Options{}, "no credentials"},
		"both":           {Options{Token: "t", AppID: 1, PrivateKey: key}, "both a token and a GitHub App"},
		"key, no id":     {Options{PrivateKey: key}, "its id is not"},
		"id, no key":     {Options{AppID: 3}, "App 3 has no private key"},
		"bad key":        {Options{AppID: 3, PrivateKey: []byte("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")}, "not an RSA key in PEM"},
		"bad URL":        {Options{Token: "t", BaseURL: "api.github.com"}, "not an http(s) URL"},
		"URL with creds": {Options{Token: "t", BaseURL: "https://u:secretpass@ghe.example/api/v3"}, "must not carry credentials"},
	} {
		_, err := New(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "not a key") || strings.Contains(err.Error(), "secretpass")) {
			t.Errorf("%s: the error shows a secret: %v", name, err)
		}
	}
}

func TestParseRepo(t *testing.T) {
	r, err := ParseRepo("ducksnest/infra")
	if err != nil || r != testRepo || r.FullName() != "ducksnest/infra" {
		t.Fatalf("ParseRepo = %v, %v", r, err)
	}
	for _, bad := range []string{"", "ducksnest", "/infra", "ducksnest/", "a/b/c", "a b/c"} {
		if _, err := ParseRepo(bad); err == nil {
			t.Errorf("ParseRepo(%q) took it", bad)
		}
	}
}
