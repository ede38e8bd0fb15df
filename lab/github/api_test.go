package github_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v93/github"

	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// operationIDs maps the subset's "METHOD /path" to the operationId Calls
// counts by.
var operationIDs = map[string]string{
	"GET /rate_limit": "rate-limit/get",
	"GET /app":        "apps/get-authenticated",
	"GET /user":       "users/get-authenticated",
	"POST /app/installations/{installation_id}/access_tokens":           "apps/create-installation-access-token",
	"GET /repos/{owner}/{repo}":                                         "repos/get",
	"GET /repos/{owner}/{repo}/installation":                            "apps/get-repo-installation",
	"GET /repos/{owner}/{repo}/collaborators/{username}/permission":     "repos/get-collaborator-permission-level",
	"GET /repos/{owner}/{repo}/contents/{path}":                         "repos/get-content",
	"GET /repos/{owner}/{repo}/pulls/{pull_number}":                     "pulls/get",
	"GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews":             "pulls/list-reviews",
	"GET /repos/{owner}/{repo}/pulls/{pull_number}/files":               "pulls/list-files",
	"GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls":              "repos/list-pull-requests-associated-with-commit",
	"GET /repos/{owner}/{repo}/issues":                                  "issues/list-for-repo",
	"POST /repos/{owner}/{repo}/issues":                                 "issues/create",
	"GET /repos/{owner}/{repo}/issues/{issue_number}":                   "issues/get",
	"PATCH /repos/{owner}/{repo}/issues/{issue_number}":                 "issues/update",
	"GET /repos/{owner}/{repo}/issues/{issue_number}/comments":          "issues/list-comments",
	"POST /repos/{owner}/{repo}/issues/{issue_number}/comments":         "issues/create-comment",
	"PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}":          "issues/update-comment",
	"DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}":         "issues/delete-comment",
	"POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": "reactions/create-for-issue-comment",
	"POST /repos/{owner}/{repo}/check-runs":                             "checks/create",
	"PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}":             "checks/update",
	"GET /repos/{owner}/{repo}/commits/{ref}/check-runs":                "checks/list-for-ref",
	"GET /repos/{owner}/{repo}/deployments":                             "repos/list-deployments",
	"POST /repos/{owner}/{repo}/deployments":                            "repos/create-deployment",
	"GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses":    "repos/list-deployment-statuses",
	"POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses":   "repos/create-deployment-status",
}

// TestGoGitHubEveryOperation drives every operation of the subset with
// go-github v93 the way nestbot does, checks what comes back, and finds
// every request valid.
func TestGoGitHubEveryOperation(t *testing.T) {
	e := setup(t)
	ctx, gh, srv := e.ctx, e.gh, e.srv
	if err := srv.SetPermission(owner, repo, "alice", "write"); err != nil {
		t.Fatal(err)
	}
	srv.AddUser("eve")
	pushed := e.pushBranch(t, "feature/vpc", map[string][]byte{"nest.yaml": []byte("version: 1\nname: ducksnest\naws: {}\n"), "new.txt": []byte("x\n")})
	pr, err := srv.OpenPR(owner, repo, "feature/vpc", labgithub.PROptions{Title: "Grow the VPC", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.AddReview(owner, repo, pr.Number, "alice", "APPROVED", "lgtm"); err != nil {
		t.Fatal(err)
	}
	human, err := srv.AddComment(owner, repo, pr.Number, "alice", "/nest plan")
	if err != nil {
		t.Fatal(err)
	}

	rl, _, err := gh.RateLimit.Get(ctx)
	if err != nil || rl.GetCore().Limit != labgithub.DefaultRateLimit {
		t.Fatalf("rate limit: %+v, %v", rl, err)
	}
	r, _, err := gh.Repositories.Get(ctx, owner, repo)
	if err != nil || r.GetDefaultBranch() != "main" || r.GetFullName() != "ducksnest/infra" || r.GetCloneURL() != srv.CloneURL(owner, repo) {
		t.Fatalf("repository: %v %q %q %q", err, r.GetDefaultBranch(), r.GetFullName(), r.GetCloneURL())
	}

	got, _, err := gh.PullRequests.Get(ctx, owner, repo, pr.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetHead().GetSHA() != pushed.After || got.GetHead().GetRef() != "feature/vpc" || got.GetBase().GetRef() != "main" ||
		!got.GetMergeable() || got.GetUser().GetLogin() != "alice" || got.GetHead().GetRepo().GetFork() || got.GetMerged() {
		t.Errorf("pull request: head %s@%s base %s mergeable %v user %s", got.GetHead().GetRef(), got.GetHead().GetSHA(), got.GetBase().GetRef(), got.GetMergeable(), got.GetUser().GetLogin())
	}
	reviews, _, err := gh.PullRequests.ListReviews(ctx, owner, repo, pr.Number, nil)
	if err != nil || len(reviews) != 1 || reviews[0].GetState() != "APPROVED" || reviews[0].GetCommitID() != pushed.After {
		t.Errorf("reviews: %v %+v", err, reviews)
	}
	files, _, err := gh.PullRequests.ListFiles(ctx, owner, repo, pr.Number, nil)
	var names []string
	for _, f := range files {
		names = append(names, f.GetFilename()+":"+f.GetStatus())
	}
	if err != nil || !slices.Equal(names, []string{"nest.yaml:modified", "new.txt:added"}) {
		t.Errorf("files: %v %v", err, names)
	}
	prs, _, err := gh.PullRequests.ListPullRequestsWithCommit(ctx, owner, repo, pushed.After, nil)
	if err != nil || len(prs) != 1 || prs[0].GetNumber() != pr.Number {
		t.Errorf("pull requests with commit: %v %d", err, len(prs))
	}

	comments, _, err := gh.Issues.ListComments(ctx, owner, repo, pr.Number, &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}})
	if err != nil || len(comments) != 1 || comments[0].GetBody() != "/nest plan" || comments[0].GetUser().GetLogin() != "alice" {
		t.Fatalf("comments: %v %+v", err, comments)
	}
	mine, _, err := gh.Issues.CreateComment(ctx, owner, repo, pr.Number, github.IssueCommentRequest{Body: "<!-- nestbot:plan -->\nplan: 1 to add"})
	if err != nil || mine.GetUser().GetLogin() != "nestbot[bot]" || mine.GetUser().GetType() != "Bot" {
		t.Fatalf("create comment: %v %+v", err, mine.GetUser())
	}
	edited, _, err := gh.Issues.UpdateComment(ctx, owner, repo, mine.GetID(), github.IssueCommentRequest{Body: "<!-- nestbot:plan -->\nplan: 2 to add"})
	if err != nil || edited.GetBody() != "<!-- nestbot:plan -->\nplan: 2 to add" {
		t.Errorf("edit comment: %v %q", err, edited.GetBody())
	}
	reaction, _, err := gh.Reactions.CreateIssueCommentReaction(ctx, owner, repo, human.ID, "eyes")
	if err != nil || reaction.GetContent() != "eyes" {
		t.Errorf("reaction: %v %+v", err, reaction)
	}
	if _, err := gh.Issues.DeleteComment(ctx, owner, repo, mine.GetID()); err != nil {
		t.Errorf("delete comment: %v", err)
	}
	held, _ := srv.Comments(owner, repo, pr.Number)
	if len(held) != 1 || len(held[0].Reactions) != 1 || held[0].Reactions[0].User != "nestbot[bot]" {
		t.Errorf("comments held: %+v", held)
	}

	issue, _, err := gh.Issues.Create(ctx, owner, repo, github.CreateIssueRequest{Title: "Drift: ducksnest", Body: new("1 change"), Labels: []string{"nestbot", "drift"}})
	if err != nil || issue.GetNumber() != pr.Number+1 {
		t.Fatalf("create issue: %v %d", err, issue.GetNumber())
	}
	open, _, err := gh.Issues.ListByRepo(ctx, owner, repo, &github.IssueListByRepoOptions{State: "open", Labels: []string{"drift"}, Creator: "nestbot[bot]"})
	if err != nil || len(open) != 1 || open[0].GetNumber() != issue.GetNumber() || open[0].IsPullRequest() {
		t.Errorf("list issues: %v %d", err, len(open))
	}
	if _, _, err := gh.Issues.Update(ctx, owner, repo, issue.GetNumber(), github.UpdateIssueRequest{State: new("closed")}); err != nil {
		t.Errorf("close issue: %v", err)
	}
	again, _, err := gh.Issues.Get(ctx, owner, repo, issue.GetNumber())
	if err != nil || again.GetState() != "closed" || again.GetClosedBy().GetLogin() != "nestbot[bot]" {
		t.Errorf("get issue: %v %q", err, again.GetState())
	}

	run, _, err := gh.Checks.CreateCheckRun(ctx, owner, repo, github.CreateCheckRunOptions{Name: "nestbot/plan", HeadSHA: pushed.After, Status: new("in_progress")})
	if err != nil || run.GetStatus() != "in_progress" || run.GetApp().GetSlug() != "nestbot" {
		t.Fatalf("create check run: %v %+v", err, run)
	}
	ann := []*github.CheckRunAnnotation{
		{Path: new("nest.yaml"), StartLine: new(3), EndLine: new(3), AnnotationLevel: new("warning"), Message: new("aws: empty")},
	}
	_, _, err = gh.Checks.UpdateCheckRun(ctx, owner, repo, run.GetID(), github.UpdateCheckRunOptions{Name: "nestbot/plan", Conclusion: new("success"),
		Output: &github.CheckRunOutput{Title: new("1 to add"), Summary: new("plan"), Annotations: ann}})
	if err != nil {
		t.Fatalf("update check run: %v", err)
	}
	for _, ref := range []string{pushed.After, "feature/vpc"} {
		list, _, err := gh.Checks.ListCheckRunsForRef(ctx, owner, repo, ref, nil)
		if err != nil || list.GetTotal() != 1 || list.CheckRuns[0].GetConclusion() != "success" || list.CheckRuns[0].GetOutput().GetAnnotationsCount() != 1 ||
			len(list.CheckRuns[0].PullRequests) != 1 {
			t.Errorf("check runs for %s: %v %+v", ref, err, list)
		}
	}

	dep, _, err := gh.Repositories.CreateDeployment(ctx, owner, repo, github.DeploymentRequest{Ref: "main", AutoMerge: new(false), RequiredContexts: []string{},
		Environment: new("ducksnest"), Description: new("apply"), Payload: map[string]any{"plan": "abc"}})
	if err != nil || dep.GetSHA() == "" || dep.GetEnvironment() != "ducksnest" {
		t.Fatalf("create deployment: %v %+v", err, dep)
	}
	for _, state := range []string{"in_progress", "success"} {
		if _, _, err := gh.Repositories.CreateDeploymentStatus(ctx, owner, repo, dep.GetID(), github.DeploymentStatusRequest{State: state, Description: new(state)}); err != nil {
			t.Fatalf("deployment status %s: %v", state, err)
		}
	}
	deps, _, err := gh.Repositories.ListDeployments(ctx, owner, repo, &github.DeploymentsListOptions{Environment: "ducksnest"})
	if err != nil || len(deps) != 1 {
		t.Errorf("deployments: %v %d", err, len(deps))
	}
	statuses, _, err := gh.Repositories.ListDeploymentStatuses(ctx, owner, repo, dep.GetID(), nil)
	if err != nil || len(statuses) != 2 || statuses[0].GetState() != "success" {
		t.Errorf("deployment statuses (newest first): %v %+v", err, statuses)
	}

	for login, want := range map[string]string{"alice": "write", "ducksnest": "admin", "eve": "read"} {
		perm, _, err := gh.Repositories.GetPermissionLevel(ctx, owner, repo, login)
		if err != nil || perm.GetPermission() != want || perm.GetUser().GetLogin() != login {
			t.Errorf("permission of %s: %v %q, want %q", login, err, perm.GetPermission(), want)
		}
	}

	for path, want := range initialFiles {
		fc, _, _, err := gh.Repositories.GetContents(ctx, owner, repo, path, &github.RepositoryContentGetOptions{Ref: "main"})
		if err != nil {
			t.Fatalf("contents %s: %v", path, err)
		}
		content, err := fc.GetContent()
		if err != nil || content != string(want) || fc.GetPath() != path {
			t.Errorf("contents %s: %v %q", path, err, content)
		}
	}
	fc, _, _, err := gh.Repositories.GetContents(ctx, owner, repo, "new.txt", &github.RepositoryContentGetOptions{Ref: "feature/vpc"})
	if content, _ := fc.GetContent(); err != nil || content != "x\n" {
		t.Errorf("contents at a branch with a slash: %v %q", err, content)
	}
	_, dir, _, err := gh.Repositories.GetContents(ctx, owner, repo, "infra", nil)
	if err != nil || len(dir) != 1 || dir[0].GetType() != "dir" || dir[0].GetPath() != "infra/nix" {
		t.Errorf("directory: %v %+v", err, dir)
	}

	// GET /user: a personal access token's user; an installation token is refused.
	if u, _, err := client(t, srv, srv.Token("alice")).Users.Get(ctx, ""); err != nil || u.GetLogin() != "alice" {
		t.Errorf("GET /user with alice's token: %v %q", err, u.GetLogin())
	}
	if _, resp, err := client(t, srv, srv.InstallationToken()).Users.Get(ctx, ""); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /user with an installation token: %v, want 403", err)
	}

	// The operations that take the App's JWT.
	atr, err := ghinstallation.NewAppsTransport(http.DefaultTransport, srv.App().ID, srv.App().PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	atr.BaseURL = srv.APIURL()
	asApp, err := github.NewClient(github.WithTransport(atr), github.WithEnterpriseURLs(srv.URL(), srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	inst, _, err := asApp.Apps.GetRepositoryInstallation(ctx, owner, repo)
	if err != nil || inst.GetID() != srv.App().InstallationID || inst.GetAppID() != srv.App().ID {
		t.Errorf("installation: %v %+v", err, inst)
	}
	if a, _, err := asApp.Apps.Get(ctx, ""); err != nil || a.GetSlug() != srv.App().Slug {
		t.Errorf("GET /app: %v %+v", err, a)
	}
	minted, _, err := asApp.Apps.CreateInstallationToken(ctx, srv.App().InstallationID, nil)
	if err != nil || !strings.HasPrefix(minted.GetToken(), "ghs_") {
		t.Fatalf("installation token: %v", err)
	}
	if _, _, err := client(t, srv, minted.GetToken()).Repositories.Get(ctx, owner, repo); err != nil {
		t.Errorf("the minted token is refused: %v", err)
	}

	noViolations(t, srv)
	for _, op := range labgithub.Operations() {
		id, ok := operationIDs[op]
		if !ok {
			t.Errorf("operation %s of the subset is not in this test's table", op)
			continue
		}
		if srv.Calls(id) == 0 {
			t.Errorf("operation %s (%s) was never called by this test", op, id)
		}
	}
	if len(operationIDs) != len(labgithub.Operations()) {
		t.Errorf("the test names %d operations, the subset has %d", len(operationIDs), len(labgithub.Operations()))
	}
}

// TestInvalidRequestIsAViolation sends a check run with a conclusion the
// description does not allow: GitHub's 422, and a recorded violation.
func TestInvalidRequestIsAViolation(t *testing.T) {
	e := setup(t)
	sha, _ := e.srv.Branch(owner, repo, "main")
	_, resp, err := e.gh.Checks.CreateCheckRun(e.ctx, owner, repo, github.CreateCheckRunOptions{Name: "nestbot/plan", HeadSHA: sha, Conclusion: new("bogus")})
	var ge *github.ErrorResponse
	if !errors.As(err, &ge) || resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("want a 422 ErrorResponse, got %v", err)
	}
	v := e.srv.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "checks/create") || !strings.Contains(v[0], "/conclusion") || !strings.Contains(v[0], "bogus") && !strings.Contains(v[0], "allowed values") {
		t.Errorf("violations: %q", v)
	}
	if runs, _ := e.srv.CheckRuns(owner, repo, ""); len(runs) != 0 {
		t.Errorf("the invalid request made a check run: %+v", runs)
	}
}

// TestRefusalsBeyondTheDescription: GitHub refuses some requests the
// description allows; the server does too and records them.
func TestRefusalsBeyondTheDescription(t *testing.T) {
	e := setup(t)
	sha, _ := e.srv.Branch(owner, repo, "main")
	cases := []struct {
		name string
		do   func() (*github.Response, error)
		want int
		says string
	}{
		{"comment too long", func() (*github.Response, error) {
			_, r, err := e.gh.Issues.CreateComment(e.ctx, owner, repo, 1, github.IssueCommentRequest{Body: strings.Repeat("é", 65537)})
			return r, err
		}, 422, "65536"},
		{"51 annotations", func() (*github.Response, error) {
			var ann []*github.CheckRunAnnotation
			for range 51 {
				ann = append(ann, &github.CheckRunAnnotation{Path: new("a"), StartLine: new(1), EndLine: new(1), AnnotationLevel: new("notice"), Message: new("m")})
			}
			_, r, err := e.gh.Checks.CreateCheckRun(e.ctx, owner, repo, github.CreateCheckRunOptions{Name: "n", HeadSHA: sha,
				Output: &github.CheckRunOutput{Title: new("t"), Summary: new("s"), Annotations: ann}})
			return r, err
		}, 422, "annotations"},
		{"completed without a conclusion", func() (*github.Response, error) {
			_, r, err := e.gh.Checks.CreateCheckRun(e.ctx, owner, repo, github.CreateCheckRunOptions{Name: "n", HeadSHA: sha, Status: new("completed")})
			return r, err
		}, 422, "conclusion"},
		{"check run by a person", func() (*github.Response, error) {
			_, r, err := client(t, e.srv, e.srv.Token("alice")).Checks.CreateCheckRun(e.ctx, owner, repo, github.CreateCheckRunOptions{Name: "n", HeadSHA: sha})
			return r, err
		}, 403, "GitHub App"},
	}
	// A pull request for the comment to go on.
	e.pushBranch(t, "b", map[string][]byte{"b": []byte("b")})
	if _, err := e.srv.OpenPR(owner, repo, "b", labgithub.PROptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		e.srv.ResetViolations()
		resp, err := c.do()
		if err == nil || resp == nil || resp.StatusCode != c.want {
			t.Errorf("%s: want %d, got %v", c.name, c.want, err)
			continue
		}
		v := e.srv.Violations()
		if len(v) != 1 || !strings.Contains(v[0], c.says) {
			t.Errorf("%s: violations %q, want one that says %q", c.name, v, c.says)
		}
	}
}

// TestUnknownOperationIsAViolation: a request the subset has no operation
// for is a 404 and a violation that says what to do.
func TestUnknownOperationIsAViolation(t *testing.T) {
	e := setup(t)
	_, resp, err := e.gh.PullRequests.List(e.ctx, owner, repo, nil)
	if err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("want 404, got %v", err)
	}
	v := e.srv.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "/pulls") || !strings.Contains(v[0], "cut.mjs") {
		t.Errorf("violations: %q", v)
	}
	if e.srv.Calls("unknown") != 1 {
		t.Errorf("unknown calls: %d", e.srv.Calls("unknown"))
	}
}

// TestCountsWrites: writes are POST, PATCH, PUT and DELETE, counted per
// operation.
func TestCountsWrites(t *testing.T) {
	e := setup(t)
	e.pushBranch(t, "b", map[string][]byte{"b": []byte("b")})
	pr, _ := e.srv.OpenPR(owner, repo, "b", labgithub.PROptions{})
	e.srv.ResetCalls()
	c, _, err := e.gh.Issues.CreateComment(e.ctx, owner, repo, pr.Number, github.IssueCommentRequest{Body: "one"})
	if err != nil {
		t.Fatal(err)
	}
	e.gh.Issues.UpdateComment(e.ctx, owner, repo, c.GetID(), github.IssueCommentRequest{Body: "two"})
	e.gh.Issues.ListComments(e.ctx, owner, repo, pr.Number, nil)
	e.gh.Repositories.Get(e.ctx, owner, repo)
	if w := e.srv.Writes(); w != 2 {
		t.Errorf("writes %d, want 2", w)
	}
	want := map[string]int64{"issues/create-comment": 1, "issues/update-comment": 1, "issues/list-comments": 1, "repos/get": 1}
	for op, n := range want {
		if got := e.srv.Calls(op); got != n {
			t.Errorf("calls of %s: %d, want %d", op, got, n)
		}
	}
	if len(e.srv.CallCounts()) != len(want) {
		t.Errorf("call counts %v, want %v", e.srv.CallCounts(), want)
	}
	noViolations(t, e.srv)
}

// TestPagination: lists come in pages with GitHub's Link header, which
// go-github follows.
func TestPagination(t *testing.T) {
	e := setup(t)
	e.pushBranch(t, "b", map[string][]byte{"b": []byte("b")})
	pr, _ := e.srv.OpenPR(owner, repo, "b", labgithub.PROptions{})
	for i := range 5 {
		e.srv.AddComment(owner, repo, pr.Number, "alice", strings.Repeat("x", i+1))
	}
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 2}}
	var bodies []string
	pages := 0
	for {
		cs, resp, err := e.gh.Issues.ListComments(e.ctx, owner, repo, pr.Number, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, c := range cs {
			bodies = append(bodies, c.GetBody())
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	if pages != 3 || len(bodies) != 5 || bodies[4] != "xxxxx" {
		t.Errorf("%d pages, bodies %q", pages, bodies)
	}
	noViolations(t, e.srv)
}

// TestDeploymentNeedsPassingChecks: without required_contexts, every check
// on the commit must have passed, as on GitHub.
func TestDeploymentNeedsPassingChecks(t *testing.T) {
	e := setup(t)
	sha, _ := e.srv.Branch(owner, repo, "main")
	if _, _, err := e.gh.Checks.CreateCheckRun(e.ctx, owner, repo, github.CreateCheckRunOptions{Name: "ci", HeadSHA: sha, Status: new("in_progress")}); err != nil {
		t.Fatal(err)
	}
	_, resp, err := e.gh.Repositories.CreateDeployment(e.ctx, owner, repo, github.DeploymentRequest{Ref: "main", AutoMerge: new(false)})
	if err == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("want 409 while ci runs, got %v", err)
	}
	if _, _, err := e.gh.Repositories.CreateDeployment(e.ctx, owner, repo, github.DeploymentRequest{Ref: "main", AutoMerge: new(false), RequiredContexts: []string{}}); err != nil {
		t.Errorf("with required_contexts []: %v", err)
	}
	noViolations(t, e.srv)
}
