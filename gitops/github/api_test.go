package github

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestPullRequestFields(t *testing.T) {
	f := newFake(t)
	yes := true
	f.pulls[5] = fakePull{Number: 5, HeadSHA: "h5", HeadRef: "feature", BaseRef: "main", HeadRepo: "ducksnest/infra", BaseRepo: "ducksnest/infra",
		Mergeable: &yes, MergeableState: "clean", Author: "alice", Title: "Add host", HTML: "https://github.test/pr/5"}
	f.pulls[6] = fakePull{Number: 6, HeadSHA: "h6", HeadRepo: "mallory/infra", BaseRepo: "ducksnest/infra", Draft: true}
	f.pulls[7] = fakePull{Number: 7, HeadSHA: "h7", BaseRepo: "ducksnest/infra", Merged: true, MergeCommitSHA: "m7"}
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	pr, err := c.PullRequest(ctx, testRepo, 5)
	if err != nil {
		t.Fatal(err)
	}
	want := PR{Number: 5, HeadSHA: "h5", HeadRef: "feature", BaseRef: "main", HeadRepo: "ducksnest/infra", Mergeable: pr.Mergeable,
		MergeableState: "clean", Author: "alice", Title: "Add host", URL: "https://github.test/pr/5", State: "open"}
	if *pr != want || pr.Mergeable == nil || !*pr.Mergeable {
		t.Errorf("PR 5 = %+v, want %+v", *pr, want)
	}
	if pr, _ := c.PullRequest(ctx, testRepo, 6); !pr.Fork || !pr.Draft || pr.Mergeable != nil {
		t.Errorf("PR 6 from a fork = %+v, want Fork, Draft, mergeable unknown", *pr)
	}
	if pr, _ := c.PullRequest(ctx, testRepo, 7); !pr.Fork || !pr.Merged || pr.MergeCommitSHA != "m7" {
		t.Errorf("PR 7 from a deleted fork = %+v, want Fork and Merged", *pr)
	}
	if _, err := c.PullRequest(ctx, testRepo, 8); err == nil || !strings.Contains(err.Error(), "read pull request ducksnest/infra#8") || !isStatus(err, 404) {
		t.Errorf("missing PR: %v", err)
	}
	f.commitPulls["m7"] = []int{7}
	prs, err := c.PullsForCommit(ctx, testRepo, "m7")
	if err != nil || len(prs) != 1 || prs[0].Number != 7 {
		t.Errorf("PullsForCommit = %+v, %v", prs, err)
	}
}

func TestApproved(t *testing.T) {
	for name, tc := range map[string]struct {
		reviews []fakeReview
		want    bool
	}{
		"none":                 {nil, false},
		"approved":             {[]fakeReview{{"bob", "APPROVED", "head"}}, true},
		"approved earlier":     {[]fakeReview{{"bob", "APPROVED", "old"}}, false},
		"only a comment":       {[]fakeReview{{"bob", "COMMENTED", "head"}}, false},
		"changes requested":    {[]fakeReview{{"bob", "APPROVED", "head"}, {"carol", "CHANGES_REQUESTED", "old"}}, false},
		"changes then approve": {[]fakeReview{{"bob", "CHANGES_REQUESTED", "old"}, {"bob", "APPROVED", "head"}}, true},
		"approve then comment": {[]fakeReview{{"bob", "APPROVED", "head"}, {"bob", "COMMENTED", "head"}}, true},
		"approval dismissed":   {[]fakeReview{{"bob", "APPROVED", "head"}, {"bob", "DISMISSED", "head"}}, false},
		"request dismissed":    {[]fakeReview{{"bob", "APPROVED", "head"}, {"carol", "CHANGES_REQUESTED", "head"}, {"carol", "DISMISSED", "head"}}, true},
	} {
		f := newFake(t)
		f.reviews[3] = tc.reviews
		c, _ := tokenClient(t, f)
		got, err := c.Approved(testContext(t), testRepo, 3, "head")
		if err != nil || got != tc.want {
			t.Errorf("%s: Approved = %v, %v; want %v", name, got, err, tc.want)
		}
	}
}

func TestApprovedReadsEveryPage(t *testing.T) {
	f := newFake(t)
	f.pageSize = 10
	for i := range 25 {
		f.reviews[3] = append(f.reviews[3], fakeReview{fmt.Sprintf("r%d", i), "APPROVED", "head"})
	}
	f.reviews[3] = append(f.reviews[3], fakeReview{"r0", "CHANGES_REQUESTED", "head"})
	c, _ := tokenClient(t, f)
	if got, err := c.Approved(testContext(t), testRepo, 3, "head"); err != nil || got {
		t.Errorf("Approved = %v, %v; want false: the request for changes is on the last page", got, err)
	}
	if n := f.count("GET /repos/{owner}/{repo}/pulls/{number}/reviews"); n != 3 {
		t.Errorf("%d pages read, want 3", n)
	}
}

func TestPermission(t *testing.T) {
	f := newFake(t)
	for _, role := range []string{"admin", "maintain", "write", "triage", "read"} {
		f.perms["u-"+role] = role
	}
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	for user, want := range map[string]string{"u-admin": "admin", "u-maintain": "maintain", "u-write": "write", "u-triage": "triage", "u-read": "read", "stranger": "none"} {
		got, err := c.Permission(ctx, testRepo, user)
		if err != nil || got != want {
			t.Errorf("Permission(%s) = %q, %v; want %q", user, got, err, want)
		}
		if CanWrite(got) != (want == "admin" || want == "maintain" || want == "write") {
			t.Errorf("CanWrite(%q) = %v", got, CanWrite(got))
		}
	}
}

func TestDeployment(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	id, err := c.CreateDeployment(ctx, testRepo, "0123abcd", "ducksnest", "apply of 0123abcd: "+strings.Repeat("x", 200))
	if err != nil {
		t.Fatal(err)
	}
	d := f.deployments[id]
	rc, present := d.Request["required_contexts"]
	if !present || len(rc.([]any)) != 0 {
		t.Errorf("required_contexts = %v (sent: %v), want [] sent", rc, present)
	}
	for k, want := range map[string]any{"ref": "0123abcd", "environment": "ducksnest", "auto_merge": false, "transient_environment": false, "production_environment": true, "task": "deploy"} {
		if d.Request[k] != want {
			t.Errorf("%s = %v, want %v", k, d.Request[k], want)
		}
	}
	if n := len([]rune(d.Request["description"].(string))); n > 140 {
		t.Errorf("description of %d characters, want at most 140", n)
	}
	for _, st := range []string{"in_progress", "success"} {
		if err := c.DeploymentStatus(ctx, testRepo, id, st, "applying", "https://ci.test/log/1"); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.Statuses) != 2 || d.Statuses[0]["state"] != "in_progress" || d.Statuses[1]["state"] != "success" || d.Statuses[1]["log_url"] != "https://ci.test/log/1" {
		t.Errorf("statuses %v", d.Statuses)
	}
	if err := c.DeploymentStatus(ctx, testRepo, id, "done", "", ""); err == nil || !strings.Contains(err.Error(), "not a deployment state") {
		t.Errorf("bad state: %v", err)
	}
}

func TestSyncIssueLifecycle(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	marker := "<!-- nestbot:drift fleet=ducksnest -->"
	// An unrelated issue with the label, and a PR-like one, are left alone.
	f.issues[1] = &fakeIssue{Number: 1, Title: "other", Body: "not ours", State: "open", Labels: []string{DriftLabel}}

	step := func(name string, title, body string, open bool, wantNumber, wantWrites int, wantState string) {
		t.Helper()
		before := f.writes()
		n, err := c.SyncIssue(ctx, testRepo, marker, title, body, open)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != wantNumber || f.writes()-before != wantWrites {
			t.Fatalf("%s: issue %d with %d writes, want %d with %d", name, n, f.writes()-before, wantNumber, wantWrites)
		}
		if wantNumber != 0 {
			is := f.issues[n]
			if is.State != wantState || !strings.HasPrefix(is.Body, marker) || !contains(is.Labels, DriftLabel) {
				t.Fatalf("%s: issue %+v, want %s, marked and labelled", name, is, wantState)
			}
		}
	}
	step("clean, no issue", "", "", false, 0, 0, "")
	step("drift found", "Drift in ducksnest", "2 resources drifted", true, 2, 1, "open")
	step("same drift", "Drift in ducksnest", "2 resources drifted", true, 2, 0, "open")
	step("drift changed", "Drift in ducksnest", "3 resources drifted", true, 2, 1, "open")
	if got := f.issues[2].Body; got != marker+"\n3 resources drifted" {
		t.Errorf("body %q", got)
	}
	step("clean again", "", "", false, 2, 1, "closed")
	if f.issues[2].StateReason != "completed" {
		t.Errorf("closed as %q, want completed", f.issues[2].StateReason)
	}
	step("still clean", "", "", false, 2, 0, "closed")
	step("drift again", "Drift in ducksnest", "1 resource drifted", true, 2, 1, "open")
	if f.issues[1].State != "open" || f.issues[1].Body != "not ours" || len(f.issues) != 2 {
		t.Errorf("the unrelated issue was touched or a second one made: %+v", f.issues)
	}
}

func TestObserveGetsRoutes(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	var seen []string
	c, _ := tokenClient(t, f, func(o *Options) {
		o.Observe = func(method, route string, status, remaining int) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%s %s %d %d", method, route, status, remaining))
		}
	})
	ctx := testContext(t)
	if _, err := c.Comment(ctx, testRepo, 4, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Permission(ctx, testRepo, "nobody"); err != nil {
		t.Fatal(err)
	}
	want := "[POST /repos/{owner}/{repo}/issues/{number}/comments 201 4999 GET /repos/{owner}/{repo}/collaborators/{username}/permission 404 4999]"
	if got := fmt.Sprint(seen); got != want {
		t.Errorf("observed %s\nwant     %s", got, want)
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

func TestSyncIssueCutsALongBody(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	marker := "<!-- nestbot:drift fleet=ducksnest -->"
	n, err := c.SyncIssue(testContext(t), testRepo, marker, "Drift", strings.Repeat("d", MaxCommentChars), true)
	if err != nil {
		t.Fatal(err)
	}
	body := f.issues[n].Body
	if len([]rune(body)) > MaxCommentChars || !strings.HasPrefix(body, marker) || !strings.HasSuffix(body, "(cut to fit GitHub's limit)") {
		t.Errorf("body of %d characters, want at most %d, marked, saying it was cut", len([]rune(body)), MaxCommentChars)
	}
}
