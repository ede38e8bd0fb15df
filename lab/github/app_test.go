package github_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v93/github"

	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// TestGhinstallationToken: ghinstallation signs a JWT with the App's key,
// mints an installation token from the server, and uses it; the token is
// minted once and reused.
func TestGhinstallationToken(t *testing.T) {
	e := setup(t)
	app := e.srv.App()
	tr, err := ghinstallation.New(http.DefaultTransport, app.ID, app.InstallationID, app.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tr.BaseURL = e.srv.APIURL()
	gh, err := github.NewClient(github.WithTransport(tr), github.WithEnterpriseURLs(e.srv.URL(), e.srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := gh.Repositories.Get(e.ctx, owner, repo); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.srv.Calls("apps/create-installation-access-token"); n != 1 {
		t.Errorf("tokens minted: %d, want 1", n)
	}
	exp, _, err := tr.Expiry()
	if err != nil || time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Errorf("token expires at %v (%v)", exp, err)
	}
	b, _, err := gh.Issues.Create(e.ctx, owner, repo, github.CreateIssueRequest{Title: "by the bot"})
	if err != nil || b.GetUser().GetLogin() != app.BotLogin {
		t.Errorf("the token acts as %q (%v), want %q", b.GetUser().GetLogin(), err, app.BotLogin)
	}
	noViolations(t, e.srv)
}

// TestJWTRefused: a JWT signed with another key, and an installation
// token where a JWT is needed, are refused with GitHub's 401.
func TestJWTRefused(t *testing.T) {
	e := setup(t)
	app := e.srv.App()
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)})
	atr, err := ghinstallation.NewAppsTransport(http.DefaultTransport, app.ID, otherPEM)
	if err != nil {
		t.Fatal(err)
	}
	atr.BaseURL = e.srv.APIURL()
	gh, _ := github.NewClient(github.WithTransport(atr), github.WithEnterpriseURLs(e.srv.URL(), e.srv.URL()))
	_, resp, err := gh.Apps.CreateInstallationToken(e.ctx, app.InstallationID, nil)
	if err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("JWT signed with another key: want 401, got %v", err)
	}
	_, resp, err = e.gh.Apps.GetRepositoryInstallation(e.ctx, owner, repo)
	if err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("installation token where a JWT is needed: want 401, got %v", err)
	}
	noViolations(t, e.srv)
}

// clock is a settable clock for the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestInstallationTokenExpires after an hour, by the server's clock.
func TestInstallationTokenExpires(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)}
	e := setup(t, func(c *labgithub.Config) { c.Now = clk.now })
	if _, _, err := e.gh.Repositories.Get(e.ctx, owner, repo); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Hour)
	_, resp, err := e.gh.Repositories.Get(e.ctx, owner, repo)
	if err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an hour-old token: want 401, got %v", err)
	}
}

// TestRateLimitHeaders: every response carries GitHub's rate-limit
// headers, counting down per token.
func TestRateLimitHeaders(t *testing.T) {
	e := setup(t)
	_, r1, err := e.gh.Repositories.Get(e.ctx, owner, repo)
	if err != nil {
		t.Fatal(err)
	}
	_, r2, _ := e.gh.Issues.Get(e.ctx, owner, repo, 99) // a 404 carries them too
	for _, h := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "X-Ratelimit-Used", "X-Ratelimit-Resource"} {
		if r1.Header.Get(h) == "" || r2.Header.Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if r1.Rate.Limit != 5000 || r1.Rate.Remaining != 4999 || r2.Rate.Remaining != 4998 || r2.Rate.Used != 2 {
		t.Errorf("rate: %+v then %+v", r1.Rate, r2.Rate)
	}
	actions := client(t, e.srv, e.srv.ActionsToken())
	_, r3, err := actions.Repositories.Get(e.ctx, owner, repo)
	if err != nil || r3.Rate.Limit != 1000 {
		t.Errorf("Actions token: %v limit %d", err, r3.Rate.Limit)
	}
}

// TestSecondaryRateLimit: an injected secondary limit reaches go-github as
// *AbuseRateLimitError with Retry-After, for the requests it was meant for.
func TestSecondaryRateLimit(t *testing.T) {
	e := setup(t)
	if err := e.srv.InjectFault(labgithub.Fault{Kind: labgithub.SecondaryRateLimit, Operation: "repos/get", Count: 1, RetryAfter: 7 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.gh.Issues.ListByRepo(e.ctx, owner, repo, nil); err != nil {
		t.Errorf("another operation is not faulted: %v", err)
	}
	_, _, err := e.gh.Repositories.Get(e.ctx, owner, repo)
	var abuse *github.AbuseRateLimitError
	if !errors.As(err, &abuse) || abuse.GetRetryAfter() != 7*time.Second {
		t.Fatalf("want AbuseRateLimitError with Retry-After 7s, got %v", err)
	}
	if e.srv.PendingFaults() != 0 {
		t.Errorf("pending faults %d", e.srv.PendingFaults())
	}
	// A fresh client (the old one waits out Retry-After) is served again.
	if _, _, err := client(t, e.srv, e.tok).Repositories.Get(e.ctx, owner, repo); err != nil {
		t.Errorf("after the fault: %v", err)
	}
	if err := e.srv.InjectFault(labgithub.Fault{Kind: labgithub.PrimaryRateLimit, Status: http.StatusTooManyRequests}); err != nil {
		t.Fatal(err)
	}
	_, _, err = client(t, e.srv, e.tok).Repositories.Get(e.ctx, owner, repo)
	var primary *github.RateLimitError
	if !errors.As(err, &primary) || primary.Rate.Remaining != 0 {
		t.Errorf("want RateLimitError, got %v", err)
	}
	if err := e.srv.InjectFault(labgithub.Fault{Kind: labgithub.SecondaryRateLimit, Status: 500}); err == nil || !strings.Contains(err.Error(), "403 or 429") {
		t.Errorf("a secondary limit with status 500: %v", err)
	}
	noViolations(t, e.srv)
}

// TestLegacyTokens: with LegacyTokens, tokens look as GitHub's did before
// April 2021 (40 hex digits; an installation token v1. and 40 hex digits)
// and work as the others do.
func TestLegacyTokens(t *testing.T) {
	e := setup(t, func(c *labgithub.Config) { c.LegacyTokens = true })
	hex40 := regexp.MustCompile(`^[0-9a-f]{40}$`)
	pat := e.srv.Token("alice")
	if !hex40.MatchString(pat) {
		t.Errorf("personal access token %q, want 40 hex digits", pat)
	}
	inst := e.srv.InstallationToken()
	if rest, ok := strings.CutPrefix(inst, "v1."); !ok || !hex40.MatchString(rest) {
		t.Errorf("installation token %q, want v1. and 40 hex digits", inst)
	}
	for _, tok := range []string{pat, inst} {
		gh, err := github.NewClient(github.WithAuthToken(tok), github.WithEnterpriseURLs(e.srv.URL(), e.srv.URL()))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := gh.Repositories.Get(e.ctx, owner, repo); err != nil {
			t.Errorf("a legacy token is refused: %v", err)
		}
	}
	noViolations(t, e.srv)
}
