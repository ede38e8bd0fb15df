package github

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// review is one review of a test's pull request: by user, in state, of
// its head or of the push before it ("old").
type review struct{ user, state, of string }

// prWithReviews opens a pull request on a branch of its own with reviews:
// those of the push before its head first (the lab records a review of
// the head it has when it is added), then those of its head. It returns
// the pull request's number and head.
func prWithReviews(t *testing.T, w *world, branch string, reviews []review) (int, string) {
	t.Helper()
	w.commit(t, branch)
	pr, err := w.srv.OpenPR(testRepo.Owner, testRepo.Name, branch, labgithub.PROptions{Title: branch})
	if err != nil {
		t.Fatal(err)
	}
	add := func(of string) {
		for _, rv := range reviews {
			if rv.of == of {
				if _, err := w.srv.AddReview(testRepo.Owner, testRepo.Name, pr.Number, rv.user, rv.state, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	add("old")
	head := w.commit(t, branch)
	add("head")
	return pr.Number, head
}

func TestApproved(t *testing.T) {
	w := setup(t)
	for login, perm := range map[string]string{"alice": "write", "bob": "write", "carol": "write", "rita": "read"} {
		if err := w.srv.SetPermission(testRepo.Owner, testRepo.Name, login, perm); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := tokenClient(t, w)
	i := 0
	for name, tc := range map[string]struct {
		reviews []review
		want    bool
	}{
		"none":                 {nil, false},
		"approved":             {[]review{{"bob", "APPROVED", "head"}}, true},
		"approved earlier":     {[]review{{"bob", "APPROVED", "old"}}, false},
		"only a comment":       {[]review{{"bob", "COMMENTED", "head"}}, false},
		"changes requested":    {[]review{{"carol", "CHANGES_REQUESTED", "old"}, {"bob", "APPROVED", "head"}}, false},
		"changes then approve": {[]review{{"bob", "CHANGES_REQUESTED", "old"}, {"bob", "APPROVED", "head"}}, true},
		"approve then comment": {[]review{{"bob", "APPROVED", "head"}, {"bob", "COMMENTED", "head"}}, true},
		"approval dismissed":   {[]review{{"bob", "APPROVED", "head"}, {"bob", "DISMISSED", "head"}}, false},
		"request dismissed":    {[]review{{"bob", "APPROVED", "head"}, {"carol", "CHANGES_REQUESTED", "head"}, {"carol", "DISMISSED", "head"}}, true},
		// Only writers other than the author count (issue 12 (3)).
		"approved by a reader":      {[]review{{"rita", "APPROVED", "head"}}, false},
		"approved by the author":    {[]review{{"alice", "APPROVED", "head"}}, false},
		"a reader requests changes": {[]review{{"bob", "APPROVED", "head"}, {"rita", "CHANGES_REQUESTED", "head"}}, true},
	} {
		i++
		number, head := prWithReviews(t, w, fmt.Sprintf("case-%d", i), tc.reviews)
		got, err := c.Approved(testContext(t), testRepo, number, head, "alice")
		if err != nil || got != tc.want {
			t.Errorf("%s: Approved = %v, %v; want %v", name, got, err, tc.want)
		}
	}
}

func TestApprovedReadsEveryPage(t *testing.T) {
	w := setup(t)
	// 251 reviews: three pages of at most 100, GitHub's most per page.
	var reviews []review
	for i := range 250 {
		reviews = append(reviews, review{fmt.Sprintf("r%d", i), "APPROVED", "head"})
		if err := w.srv.SetPermission(testRepo.Owner, testRepo.Name, fmt.Sprintf("r%d", i), "write"); err != nil {
			t.Fatal(err)
		}
	}
	reviews = append(reviews, review{"r0", "CHANGES_REQUESTED", "head"})
	number, head := prWithReviews(t, w, "many-reviews", reviews)
	c, _ := tokenClient(t, w)
	w.srv.ResetCalls()
	if got, err := c.Approved(testContext(t), testRepo, number, head, "alice"); err != nil || got {
		t.Errorf("Approved = %v, %v; want false: the request for changes is on the last page", got, err)
	}
	if n := w.srv.Calls("pulls/list-reviews"); n != 3 {
		t.Errorf("%d pages read, want 3", n)
	}
}

// TestDeployment: a deployment is of a commit the default branch has moved
// on from and that a check failed on, which GitHub refuses unless the
// request says auto_merge: false and required_contexts: [].
func TestDeployment(t *testing.T) {
	w := setup(t)
	c, _ := tokenClient(t, w)
	ctx := testContext(t)
	sha := w.pr.HeadSHA
	w.commit(t, "main")
	// Check runs are the App's to create (a personal token is refused).
	app, _ := tokenClient(t, w, func(o *Options) { o.Token = w.srv.InstallationToken() })
	if _, err := app.CreateCheckRun(ctx, testRepo, CheckRun{HeadSHA: sha, Conclusion: "failure", Title: "failed", Summary: "a failed check"}); err != nil {
		t.Fatal(err)
	}
	// What the request said, field by field, beside what the lab made of it.
	var mu sync.Mutex
	var sent map[string]any
	w.interceptWith(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v3/repos/ducksnest/infra/deployments" {
			return false
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		defer mu.Unlock()
		if err := json.Unmarshal(body, &sent); err != nil {
			t.Errorf("deployment request %q: %v", body, err)
		}
		return false
	})
	id, err := c.CreateDeployment(ctx, testRepo, sha, "ducksnest", "apply of "+short(sha)+": "+strings.Repeat("x", 200))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	rc, present := sent["required_contexts"].([]any)
	if !present || len(rc) != 0 {
		t.Errorf("required_contexts = %v (sent: %v), want [] sent", sent["required_contexts"], present)
	}
	for k, want := range map[string]any{"ref": sha, "environment": "ducksnest", "auto_merge": false, "transient_environment": false, "production_environment": true, "task": "deploy"} {
		if sent[k] != want {
			t.Errorf("%s = %v, want %v", k, sent[k], want)
		}
	}
	mu.Unlock()
	deployment := func() labgithub.Deployment {
		t.Helper()
		deps, err := w.srv.Deployments(testRepo.Owner, testRepo.Name)
		if err != nil || len(deps) != 1 || deps[0].ID != id {
			t.Fatalf("deployments %+v, %v; want deployment %d", deps, err, id)
		}
		return deps[0]
	}
	d := deployment()
	if d.SHA != sha || d.Environment != "ducksnest" || d.Task != "deploy" || !d.Production || d.Transient {
		t.Errorf("deployment of %s to %s, task %s, production %v, transient %v; want %s to ducksnest, deploy, production, not transient",
			d.SHA, d.Environment, d.Task, d.Production, d.Transient, sha)
	}
	if n := len([]rune(d.Description)); n > 140 {
		t.Errorf("description of %d characters, want at most 140", n)
	}
	for _, st := range []string{"in_progress", "success"} {
		if err := c.DeploymentStatus(ctx, testRepo, id, st, "applying", "https://ci.test/log/1"); err != nil {
			t.Fatal(err)
		}
	}
	if d := deployment(); len(d.Statuses) != 2 || d.Statuses[0].State != "in_progress" || d.Statuses[1].State != "success" || d.Statuses[1].LogURL != "https://ci.test/log/1" {
		t.Errorf("statuses %+v", d.Statuses)
	}
	if err := c.DeploymentStatus(ctx, testRepo, id, "done", "", ""); err == nil || !strings.Contains(err.Error(), "not a deployment state") {
		t.Errorf("bad state: %v", err)
	}
}

func TestRouteOf(t *testing.T) {
	for path, want := range map[string]string{
		"/repos/o/r/issues/12/comments":                 "/repos/{owner}/{repo}/issues/{number}/comments",
		"/repos/o/r/issues/comments/99":                 "/repos/{owner}/{repo}/issues/comments/{id}",
		"/repos/o/r/check-runs/5":                       "/repos/{owner}/{repo}/check-runs/{id}",
		"/repos/o/r/commits/0123456789abcdef0123/pulls": "/repos/{owner}/{repo}/commits/{sha}/pulls",
		"/api/v3/app/installations/7/access_tokens":     "/app/installations/{id}/access_tokens",
		"/repos/o/r/collaborators/alice/permission":     "/repos/{owner}/{repo}/collaborators/{username}/permission",
	} {
		if got := routeOf("/api/v3", path); got != want {
			t.Errorf("routeOf(%s) = %s, want %s", path, got, want)
		}
	}
}
