package github

import (
	"fmt"
	"strings"
	"testing"
)

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
		// Only writers other than the author count (issue 12 (3)).
		"approved by a reader":      {[]fakeReview{{"rita", "APPROVED", "head"}}, false},
		"approved by the author":    {[]fakeReview{{"alice", "APPROVED", "head"}}, false},
		"a reader requests changes": {[]fakeReview{{"bob", "APPROVED", "head"}, {"rita", "CHANGES_REQUESTED", "head"}}, true},
	} {
		f := newFake(t)
		f.reviews[3] = tc.reviews
		f.perms["rita"] = "read"
		c, _ := tokenClient(t, f)
		got, err := c.Approved(testContext(t), testRepo, 3, "head", "alice")
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
	if got, err := c.Approved(testContext(t), testRepo, 3, "head", "alice"); err != nil || got {
		t.Errorf("Approved = %v, %v; want false: the request for changes is on the last page", got, err)
	}
	if n := f.count("GET /repos/{owner}/{repo}/pulls/{number}/reviews"); n != 3 {
		t.Errorf("%d pages read, want 3", n)
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
