package github_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/internal/fixtures"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// received is one delivery a test receiver got.
type received struct {
	header http.Header
	body   []byte
}

func receiver(t *testing.T) (*httptest.Server, func() []received) {
	var mu sync.Mutex
	var got []received
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(ts.Close)
	return ts, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestWebhookSenderSigns: a delivery carries GitHub's headers and an
// X-Hub-Signature-256 that recomputing the HMAC confirms; the secret is in
// no header or body.
func TestWebhookSenderSigns(t *testing.T) {
	examples := fixtures.Package(t, "@octokit/webhooks-examples")
	e := setup(t, func(c *labgithub.Config) { c.WebhookExamples = examples })
	pushed := e.pushBranch(t, "feature", map[string][]byte{"f": []byte("1\n")})
	pr, err := e.srv.OpenPR(owner, repo, "feature", labgithub.PROptions{Title: "f", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := e.srv.PullRequestEvent(owner, repo, pr.Number, "opened")
	if err != nil {
		t.Fatal(err)
	}
	ts, got := receiver(t)
	secret := []byte("canary-webhook-secret-7f3a")
	sender := &labgithub.Sender{URL: ts.URL, Secret: secret}
	d, err := sender.Send(e.ctx, ev)
	if err != nil || d.Status != http.StatusAccepted || !uuidRE.MatchString(d.ID) {
		t.Fatalf("delivery: %+v %v", d, err)
	}
	rs := got()
	if len(rs) != 1 {
		t.Fatalf("%d deliveries", len(rs))
	}
	h, body := rs[0].header, rs[0].body
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); h.Get("X-Hub-Signature-256") != want {
		t.Errorf("signature %q, want %q", h.Get("X-Hub-Signature-256"), want)
	}
	if err := github.ValidateSignature(h.Get("X-Hub-Signature-256"), body, secret); err != nil {
		t.Errorf("go-github refuses the signature: %v", err)
	}
	if h.Get("X-GitHub-Event") != "pull_request" || h.Get("X-GitHub-Delivery") != d.ID || h.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(h.Get("User-Agent"), "GitHub-Hookshot/") {
		t.Errorf("headers: %v", h)
	}
	for k, vs := range h {
		if strings.Contains(strings.Join(vs, ","), string(secret)) {
			t.Errorf("header %s holds the secret", k)
		}
	}
	if strings.Contains(string(body), string(secret)) {
		t.Error("the body holds the secret")
	}
	parsed, err := github.ParseWebHook("pull_request", body)
	if err != nil {
		t.Fatal(err)
	}
	pe := parsed.(*github.PullRequestEvent)
	if pe.GetAction() != "opened" || pe.GetNumber() != pr.Number || pe.GetPullRequest().GetHead().GetSHA() != pushed.After ||
		pe.GetRepo().GetFullName() != "ducksnest/infra" || pe.GetRepo().GetCloneURL() != e.srv.CloneURL(owner, repo) ||
		pe.GetInstallation().GetID() != e.srv.App().InstallationID || pe.GetSender().GetLogin() != "alice" ||
		pe.GetRepo().GetDefaultBranch() != "main" {
		t.Errorf("event: action %s number %d head %s repo %s clone %s installation %d sender %s",
			pe.GetAction(), pe.GetNumber(), pe.GetPullRequest().GetHead().GetSHA(), pe.GetRepo().GetFullName(), pe.GetRepo().GetCloneURL(),
			pe.GetInstallation().GetID(), pe.GetSender().GetLogin())
	}
	if strings.Contains(string(body), "Codertocat/Hello-World") || strings.Contains(string(body), "https://api.github.com") {
		t.Error("the event still points at the example's repository")
	}
	// A redelivery keeps the delivery ID.
	ev.DeliveryID = d.ID
	if again, err := sender.Send(e.ctx, ev); err != nil || again.ID != d.ID {
		t.Errorf("redelivery: %+v %v", again, err)
	}
}

// TestEventsFromTheLabsState: push, issue_comment, synchronize and ping
// events say what the lab holds.
func TestEventsFromTheLabsState(t *testing.T) {
	examples := fixtures.Package(t, "@octokit/webhooks-examples")
	e := setup(t, func(c *labgithub.Config) { c.WebhookExamples = examples })
	first := e.pushBranch(t, "feature", map[string][]byte{"f": []byte("1\n")})
	pr, _ := e.srv.OpenPR(owner, repo, "feature", labgithub.PROptions{})
	second, err := e.srv.Commit(e.ctx, owner, repo, labgithub.Commit{Branch: "feature", Message: "second\n\nbody", Files: map[string][]byte{"g": []byte("2\n")}, Author: "bob"})
	if err != nil {
		t.Fatal(err)
	}

	ev, err := e.srv.PushEvent(second)
	if err != nil {
		t.Fatal(err)
	}
	p, err := github.ParseWebHook("push", ev.Payload)
	if err != nil {
		t.Fatal(err)
	}
	push := p.(*github.PushEvent)
	if push.GetRef() != "refs/heads/feature" || push.GetBefore() != first.After || push.GetAfter() != second.After || push.GetCreated() ||
		len(push.Commits) != 1 || push.Commits[0].GetMessage() != "second\n\nbody" || push.GetHeadCommit().GetID() != second.After ||
		len(push.Commits[0].Added) != 1 || push.GetRepo().GetFullName() != "ducksnest/infra" || push.GetPusher().GetName() != "bob" || push.GetSender().GetLogin() != "bob" {
		t.Errorf("push: %s %s..%s created %v commits %d", push.GetRef(), push.GetBefore(), push.GetAfter(), push.GetCreated(), len(push.Commits))
	}
	created, _ := e.srv.PushEvent(first)
	if p, _ := github.ParseWebHook("push", created.Payload); !p.(*github.PushEvent).GetCreated() {
		t.Error("the push of a new branch is not created")
	}

	ev, err = e.srv.PullRequestEvent(owner, repo, pr.Number, "synchronize")
	if err != nil {
		t.Fatal(err)
	}
	p, _ = github.ParseWebHook("pull_request", ev.Payload)
	if s := p.(*github.PullRequestEvent); s.GetBefore() != first.After || s.GetAfter() != second.After || s.GetPullRequest().GetHead().GetSHA() != second.After {
		t.Errorf("synchronize: %s..%s", s.GetBefore(), s.GetAfter())
	}

	c, _ := e.srv.AddComment(owner, repo, pr.Number, "alice", "/nest plan")
	ev, err = e.srv.IssueCommentEvent(owner, repo, c.ID, "created")
	if err != nil {
		t.Fatal(err)
	}
	p, _ = github.ParseWebHook("issue_comment", ev.Payload)
	ic := p.(*github.IssueCommentEvent)
	if ic.GetComment().GetBody() != "/nest plan" || ic.GetComment().GetID() != c.ID || ic.GetComment().GetUser().GetLogin() != "alice" ||
		ic.GetIssue().GetNumber() != pr.Number || !ic.GetIssue().IsPullRequest() || ic.GetSender().GetLogin() != "alice" {
		t.Errorf("issue_comment: %q by %s on #%d (pr %v)", ic.GetComment().GetBody(), ic.GetComment().GetUser().GetLogin(), ic.GetIssue().GetNumber(), ic.GetIssue().IsPullRequest())
	}

	if _, err := e.gh.Issues.DeleteComment(e.ctx, owner, repo, c.ID); err != nil {
		t.Fatal(err)
	}
	ev, err = e.srv.IssueCommentEvent(owner, repo, c.ID, "deleted")
	if p, _ := github.ParseWebHook("issue_comment", ev.Payload); err != nil || p.(*github.IssueCommentEvent).GetComment().GetBody() != "/nest plan" {
		t.Errorf("deleted comment event: %v", err)
	}

	ev, err = e.srv.PingEvent(owner, repo)
	if err != nil {
		t.Fatal(err)
	}
	p, _ = github.ParseWebHook("ping", ev.Payload)
	if ping := p.(*github.PingEvent); ping.GetZen() == "" || ping.GetHook().GetID() == 0 {
		t.Errorf("ping: %+v", ping)
	}
}

// TestExamplesForIntake: the raw examples intake tests post are there for
// every event nestbot handles.
func TestExamplesForIntake(t *testing.T) {
	ex, err := labgithub.LoadExamples(fixtures.Package(t, "@octokit/webhooks-examples"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pull_request", "issue_comment", "push", "ping"} {
		list := ex.Event(name)
		if len(list) == 0 {
			t.Errorf("no %s examples", name)
		}
		for _, x := range list {
			if _, err := github.ParseWebHook(name, x.Payload); err != nil {
				t.Errorf("%s example (%s): %v", name, x.Action, err)
			}
		}
	}
	if _, err := labgithub.LoadExamples(t.TempDir()); err == nil || !strings.Contains(err.Error(), ".ci/fixtures") {
		t.Errorf("an empty directory: %v", err)
	}
}
