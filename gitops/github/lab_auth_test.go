package github_test

// Tests of authentication, rate limits, secrets and metrics against the
// lab's GitHub; lab_test.go sets it up.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	gogithub "github.com/google/go-github/v93/github"

	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/internal/logs/logstest"
	labgithub "github.com/ducksnest/nestbot/lab/github"
	"github.com/ducksnest/nestbot/reconcile"
)

func TestLabRateLimits(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	if err := srv.InjectFault(labgithub.Fault{Kind: labgithub.SecondaryRateLimit, Operation: "issues/create-comment", Status: 429, RetryAfter: time.Second}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Comment(ctx, repo, pr.Number, "after a wait"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second || took > 15*time.Second {
		t.Errorf("took %s, want about the Retry-After of 1s", took)
	}
	if n := srv.Calls("issues/create-comment"); n != 2 {
		t.Errorf("%d requests, want the refused one and its retry", n)
	}

	if err := srv.InjectFault(labgithub.Fault{Kind: labgithub.PrimaryRateLimit, Operation: "pulls/get", RetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err := c.PullRequest(ctx, repo, pr.Number)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s: waited for a reset an hour away", took)
	}
	var rl *gogithub.RateLimitError
	if !errors.Is(err, nestgh.ErrRateLimited) || !errors.As(err, &rl) || !strings.Contains(err.Error(), "try again after") {
		t.Errorf("error %v, want a rate limit error saying when to try again", err)
	}
}

func TestLabTokenModeAndCanary(t *testing.T) {
	srv, pr := lab(t)
	token := srv.Token("nestbot-pat-user")
	if err := srv.SetPermission(repo.Owner, repo.Name, "nestbot-pat-user", "write"); err != nil {
		t.Fatal(err)
	}
	logger, logs := logstest.New(t)
	c, err := nestgh.New(nestgh.Options{BaseURL: srv.APIURL(), Token: token, WriteSpacing: time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	if _, err := c.UpsertSticky(ctx, repo, pr.Number, reconcile.MarkdownMarker("ducksnest"), reconcile.RenderMarkdown(plan("a", 2))); err != nil {
		t.Fatal(err)
	}
	if tok, err := c.GitToken(ctx); err != nil || tok != token {
		t.Errorf("GitToken in token mode did not give the token")
	}
	_, refused := c.PullRequest(ctx, repo, 999) // no such pull request
	if refused == nil {
		t.Fatal("pull request 999 was found")
	}
	app, appLogs := appClient(t, srv)
	if _, err := app.Comment(ctx, repo, pr.Number, "from the App"); err != nil {
		t.Fatal(err)
	}
	itok, err := app.GitToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	comments, _ := srv.Comments(repo.Owner, repo.Name, pr.Number)
	key := strings.Split(string(srv.App().PrivateKeyPEM), "\n")[2] // a line inside the key
	for _, s := range []string{token, itok, key} {
		for where, got := range map[string]string{"log": logs.String() + appLogs.String(), "error": refused.Error(), "comments": fmt.Sprint(comments)} {
			if strings.Contains(got, s) {
				t.Errorf("a secret is in the %s", where)
			}
		}
	}
}

func TestLabRateLimitPastTheDeadlineFailsFast(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	if _, err := c.GitToken(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if err := srv.InjectFault(labgithub.Fault{Kind: labgithub.SecondaryRateLimit, Operation: "issues/create-comment", RetryAfter: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Comment(ctx, repo, pr.Number, "hello")
	var abuse *gogithub.AbuseRateLimitError
	if !errors.Is(err, nestgh.ErrRateLimited) || !errors.As(err, &abuse) || !strings.Contains(err.Error(), "past the deadline") {
		t.Fatalf("error %v, want a secondary rate limit past the deadline", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s: the client waited although the deadline comes first", took)
	}
}

func TestLabAppInstallationTokenCachedAndAppClientScoped(t *testing.T) {
	srv, pr := lab(t)
	app := srv.App()
	root, err := nestgh.New(nestgh.Options{BaseURL: srv.APIURL(), AppID: app.ID, PrivateKey: app.PrivateKeyPEM, WriteSpacing: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	ic := root.Installation(app.InstallationID)
	if root.Installation(app.InstallationID) != ic || ic.Installation(app.InstallationID) != ic || ic.InstallationID() != app.InstallationID {
		t.Fatal("Installation made a second client for the same installation")
	}
	// The App's own client finds the installation, and acts on nothing else.
	if id, err := root.RepoInstallation(ctx, repo); err != nil || id != app.InstallationID {
		t.Fatalf("RepoInstallation = %d, %v; want %d", id, err, app.InstallationID)
	}
	if _, err := root.PullRequest(ctx, repo, pr.Number); err == nil || !strings.Contains(err.Error(), "call Installation(id)") {
		t.Errorf("the App's own client read a pull request: %v", err)
	}
	if _, err := root.GitToken(ctx); err == nil {
		t.Error("the App's own client gave a git token")
	}
	srv.ResetCalls()
	for range 3 {
		if _, err := ic.Comment(ctx, repo, pr.Number, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Calls("apps/create-installation-access-token"); n != 1 {
		t.Errorf("%d tokens minted for 3 calls, want 1", n)
	}
	comments, _ := srv.Comments(repo.Owner, repo.Name, pr.Number)
	if len(comments) != 3 || comments[0].User != app.BotLogin {
		t.Errorf("comments by %v, want 3 by %s", comments, app.BotLogin)
	}
}

func TestLabAppInstallationTokenRefreshed(t *testing.T) {
	// The lab's clock runs 59m30s behind: the tokens it mints expire 30s
	// from now, inside the minute before expiry in which ghinstallation
	// refreshes, so every request needs a new token.
	srv, pr := labWith(t, labgithub.Config{Now: func() time.Time { return time.Now().Add(-59*time.Minute - 30*time.Second) }})
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	srv.ResetCalls()
	for range 3 {
		if _, err := c.Comment(ctx, repo, pr.Number, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Calls("apps/create-installation-access-token"); n != 3 {
		t.Errorf("%d tokens minted for 3 calls with expiring tokens, want 3", n)
	}
}

func TestLabObserveGetsRoutes(t *testing.T) {
	srv, pr := lab(t)
	var mu sync.Mutex
	var seen []string
	c, err := nestgh.New(nestgh.Options{BaseURL: srv.APIURL(), Token: srv.Token("nestbot-user"), WriteSpacing: -1,
		Observe: func(method, route string, status, remaining int) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%s %s %d %v", method, route, status, remaining > 0))
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetPermission(repo.Owner, repo.Name, "nestbot-user", "write"); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	if _, err := c.Comment(ctx, repo, pr.Number, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PullRequest(ctx, repo, 404); err == nil {
		t.Fatal("pull request 404 was found")
	}
	want := "[POST /repos/{owner}/{repo}/issues/{number}/comments 201 true GET /repos/{owner}/{repo}/pulls/{number} 404 true]"
	if got := fmt.Sprint(seen); got != want {
		t.Errorf("observed %s\nwant     %s", got, want)
	}
}
