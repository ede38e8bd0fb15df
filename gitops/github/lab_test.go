package github_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/internal/logs/logstest"
	labgithub "github.com/ducksnest/nestbot/lab/github"
	"github.com/ducksnest/nestbot/reconcile"
)

// These tests drive the client against the lab's GitHub, which checks
// every request against GitHub's OpenAPI description: each ends by
// asserting that none of the client's requests broke it.

var repo = nestgh.Repo{Owner: "ducksnest", Name: "infra"}

// lab starts the lab's GitHub with ducksnest/infra holding nest.yaml and
// a pull request #1 from branch "change".
func lab(t *testing.T) (*labgithub.Server, labgithub.PullRequest) {
	t.Helper()
	return labWith(t, labgithub.Config{})
}

func labWith(t *testing.T, cfg labgithub.Config) (*labgithub.Server, labgithub.PullRequest) {
	t.Helper()
	return nestgh.LabWithPR(t, cfg)
}

// appClient is the client of the lab's App, as its installation.
func appClient(t *testing.T, srv *labgithub.Server) (*nestgh.Client, *logstest.Log) {
	t.Helper()
	app := srv.App()
	logger, logs := logstest.New(t)
	c, err := nestgh.New(nestgh.Options{BaseURL: srv.APIURL(), AppID: app.ID, PrivateKey: app.PrivateKeyPEM, Login: app.BotLogin,
		WriteSpacing: time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return c.Installation(app.InstallationID), logs
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// plan is a plan of hosts hosts at revision rev.
func plan(rev string, hosts int) *reconcile.Plan {
	p := &reconcile.Plan{Fleet: "ducksnest", Revision: rev, ObservedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for i := range hosts {
		name := fmt.Sprintf("host-%04d", i)
		p.Steps = append(p.Steps,
			reconcile.Step{Plane: reconcile.PlaneCloud, Action: reconcile.ActionCreate, Address: reconcile.CloudAddress(reconcile.KindInstance, name), Reason: "not in AWS yet",
				Changes: []reconcile.Change{{Attr: "instance_type", After: "t3.medium"}, {Attr: "ami", After: "ami-0123456789abcdef0"},
					{Attr: "subnet", After: "subnet-0a1b2c3d"}, {Attr: "tags.nest:host", After: name}, {Attr: "user_data", Sensitive: true}}},
			reconcile.Step{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: reconcile.MustParseAddress("host." + name), Reason: "revision " + rev, Batch: 1 + i/10,
				Changes: []reconcile.Change{{Attr: "revision", Before: "0ld", After: rev}}})
	}
	return p
}

func TestLabPlanPer100PushesOneCommentTwoWrites(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	// The installation token is minted once, before: it is no write of a plan.
	if _, err := c.GitToken(ctx); err != nil {
		t.Fatal(err)
	}
	srv.ResetCalls()
	for push := range 100 {
		sha := fmt.Sprintf("%040x", push+1)
		if push == 0 {
			sha = pr.HeadSHA
		}
		before := srv.Writes()
		if _, err := c.UpsertSticky(ctx, repo, pr.Number, marker, reconcile.RenderMarkdown(plan(sha, 3))); err != nil {
			t.Fatalf("push %d: %v", push, err)
		}
		if _, err := c.CreateCheckRun(ctx, repo, nestgh.CheckRun{HeadSHA: pr.HeadSHA, Status: "completed", Conclusion: "neutral",
			Title: "3 to create, 3 hosts to roll", Summary: "**3 to create**"}); err != nil {
			t.Fatalf("push %d: %v", push, err)
		}
		if w := srv.Writes() - before; w > 2 {
			t.Fatalf("push %d: %d writes, want at most 2", push, w)
		}
	}
	comments, err := srv.Comments(repo.Owner, repo.Name, pr.Number)
	if err != nil {
		t.Fatal(err)
	}
	if len(comments) != 1 || !strings.Contains(comments[0].Body, fmt.Sprintf("%x", 100)) {
		t.Fatalf("%d comments, want 1 holding the last plan", len(comments))
	}
	if n := srv.Calls("issues/create-comment"); n != 1 {
		t.Errorf("%d comments created, want 1", n)
	}
	if n := srv.Calls("issues/update-comment"); n != 99 {
		t.Errorf("%d comment edits, want 99", n)
	}
	if n := srv.Writes(); n != 200 {
		t.Errorf("%d writes for 100 plans, want 200", n)
	}
	if n := srv.Calls("apps/create-installation-access-token"); n != 0 {
		t.Errorf("%d installation tokens minted during 100 plans, want 0 (cached)", n)
	}
	t.Logf("100 plans: %d writes, %d reads of comments, %d token requests", srv.Writes(),
		srv.Calls("issues/list-comments"), srv.Calls("apps/create-installation-access-token"))
}

func TestLabThousandHostPlanSplitsAndShrinks(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	big := reconcile.RenderMarkdown(plan(strings.Repeat("b", 40), 1000))
	if len(big) < 3 {
		t.Fatalf("%d parts; the test needs at least 3", len(big))
	}
	// Others' comments, enough for the bot's to be found across two pages.
	if _, err := srv.AddComment(repo.Owner, repo.Name, pr.Number, "alice", "LGTM"); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		if _, err := srv.AddComment(repo.Owner, repo.Name, pr.Number, "bob", fmt.Sprintf("comment %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.UpsertSticky(ctx, repo, pr.Number, marker, big)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != len(big) {
		t.Fatalf("%+v, want %d created", res, len(big))
	}
	for i, id := range res.IDs {
		comments, _ := srv.Comments(repo.Owner, repo.Name, pr.Number)
		for _, cm := range comments {
			if cm.ID == id && (cm.Body != big[i] || !strings.Contains(cm.Body, fmt.Sprintf("part=%d/%d -->", i+1, len(big)))) {
				t.Fatalf("comment %d does not hold part %d of %d", id, i+1, len(big))
			}
		}
	}
	srv.ResetCalls()
	if res, err := c.UpsertSticky(ctx, repo, pr.Number, marker, big); err != nil || res.Unchanged != len(big) || srv.Writes() != 0 {
		t.Fatalf("the same plan again: %+v, %v, %d writes; want no write", res, err, srv.Writes())
	}
	if n := srv.Calls("issues/list-comments"); n != 2 {
		t.Errorf("%d pages of comments read, want 2", n)
	}
	small := reconcile.RenderMarkdown(plan("c", 1))
	res, err = c.UpsertSticky(ctx, repo, pr.Number, marker, small)
	if err != nil {
		t.Fatal(err)
	}
	if res.Updated != 1 || res.Deleted != len(big)-1 {
		t.Fatalf("shrink: %+v, want 1 updated and %d deleted", res, len(big)-1)
	}
	comments, _ := srv.Comments(repo.Owner, repo.Name, pr.Number)
	if len(comments) != 152 || comments[0].Body != "LGTM" || comments[151].Body != small[0] || comments[151].ID != res.IDs[0] {
		t.Fatalf("after the shrink: %d comments, want the 151 of others and the one-part plan", len(comments))
	}
	if n := srv.Calls("issues/delete-comment"); n != int64(len(big)-1) {
		t.Errorf("%d deletes, want %d", n, len(big)-1)
	}
}

func TestLabCheckRunAnnotationsAndConclusions(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	var anns []nestgh.Annotation
	for i := range 120 {
		anns = append(anns, nestgh.Annotation{Path: "nest.yaml", StartLine: i + 1, StartColumn: 1, EndColumn: 4, Level: "failure",
			Title: "nest.yaml", Message: fmt.Sprintf("error %d", i+1)})
	}
	srv.ResetCalls()
	id, err := c.CreateCheckRun(ctx, repo, nestgh.CheckRun{HeadSHA: pr.HeadSHA, Status: "completed", Conclusion: "failure",
		Title: "nest.yaml is invalid", Summary: "120 errors", Annotations: anns, ExternalID: "plan-1"})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Calls("checks/create") != 1 || srv.Calls("checks/update") != 2 {
		t.Errorf("%d creates and %d updates, want 1 and 2", srv.Calls("checks/create"), srv.Calls("checks/update"))
	}
	runs, err := srv.CheckRuns(repo.Owner, repo.Name, pr.HeadSHA)
	if err != nil || len(runs) != 1 || runs[0].ID != id {
		t.Fatalf("check runs %+v, %v", runs, err)
	}
	run := runs[0]
	if run.Name != nestgh.CheckName || run.Conclusion != "failure" || len(run.Annotations) != 120 || run.Annotations[119].Message != "error 120" {
		t.Errorf("check run %s %s with %d annotations", run.Name, run.Conclusion, len(run.Annotations))
	}

	id, err = c.CreateCheckRun(ctx, repo, nestgh.CheckRun{HeadSHA: pr.HeadSHA, Status: "in_progress", Title: "Planning", Summary: "Observing the fleet"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateCheckRun(ctx, repo, id, nestgh.CheckRun{Conclusion: "success", Title: "No changes", Summary: "The fleet matches nest.yaml."}); err != nil {
		t.Fatal(err)
	}
	runs, _ = srv.CheckRuns(repo.Owner, repo.Name, pr.HeadSHA)
	if last := runs[len(runs)-1]; last.Status != "completed" || last.Conclusion != "success" || last.Title != "No changes" {
		t.Errorf("updated run %+v", last)
	}
}

func TestLabCommandsPermissionsReviews(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	for login, perm := range map[string]string{"alice": "write", "bob": "read", "carol": "maintain"} {
		if err := srv.SetPermission(repo.Owner, repo.Name, login, perm); err != nil {
			t.Fatal(err)
		}
	}
	for login, want := range map[string]string{"alice": "write", "bob": "read", "carol": "maintain", "ducksnest": "admin", "stranger": "none"} {
		got, err := c.Permission(ctx, repo, login)
		if err != nil || got != want {
			t.Errorf("Permission(%s) = %q, %v; want %q", login, got, err, want)
		}
		if nestgh.CanWrite(got) != (want == "write" || want == "maintain" || want == "admin") {
			t.Errorf("CanWrite(%q) = %v", got, nestgh.CanWrite(got))
		}
	}
	cmd, err := srv.AddComment(repo.Owner, repo.Name, pr.Number, "alice", "/nest plan")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.React(ctx, repo, cmd.ID, "eyes"); err != nil {
		t.Fatal(err)
	}
	comments, _ := srv.Comments(repo.Owner, repo.Name, pr.Number)
	if len(comments[0].Reactions) != 1 || comments[0].Reactions[0].Content != "eyes" {
		t.Errorf("reactions %+v", comments[0].Reactions)
	}
	id, err := c.Comment(ctx, repo, pr.Number, "Planning…")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EditComment(ctx, repo, id, "Planned."); err != nil {
		t.Fatal(err)
	}

	got, err := c.PullRequest(ctx, repo, pr.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got.HeadSHA != pr.HeadSHA || got.HeadRef != "change" || got.BaseRef != "main" || got.Fork || got.HeadRepo != repo.FullName() || got.Title != "Grow the fleet" {
		t.Errorf("PullRequest = %+v", *got)
	}
	if ok, err := c.Approved(ctx, repo, pr.Number, pr.HeadSHA, got.Author); err != nil || ok {
		t.Errorf("Approved before any review = %v, %v", ok, err)
	}
	if _, err := srv.AddReview(repo.Owner, repo.Name, pr.Number, "carol", "APPROVED", ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Approved(ctx, repo, pr.Number, pr.HeadSHA, got.Author); err != nil || !ok {
		t.Errorf("Approved after carol's approval = %v, %v", ok, err)
	}
	if _, err := srv.AddReview(repo.Owner, repo.Name, pr.Number, "alice", "CHANGES_REQUESTED", "no"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Approved(ctx, repo, pr.Number, pr.HeadSHA, got.Author); err != nil || ok {
		t.Errorf("Approved with alice's changes requested = %v, %v", ok, err)
	}

	merged, err := srv.Merge(ctx, repo.Owner, repo.Name, pr.Number, "carol")
	if err != nil {
		t.Fatal(err)
	}
	prs, err := c.PullsForCommit(ctx, repo, merged.After)
	if err != nil || len(prs) != 1 || prs[0].Number != pr.Number || !prs[0].Merged {
		t.Errorf("PullsForCommit(merge) = %+v, %v", prs, err)
	}
}

func TestLabDeploymentAndDriftIssue(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	id, err := c.CreateDeployment(ctx, repo, pr.HeadSHA, "ducksnest", "nestbot apply")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"in_progress", "success"} {
		if err := c.DeploymentStatus(ctx, repo, id, st, "apply "+st, "http://127.0.0.1/log"); err != nil {
			t.Fatal(err)
		}
	}
	deps, _ := srv.Deployments(repo.Owner, repo.Name)
	if len(deps) != 1 || deps[0].Environment != "ducksnest" || len(deps[0].Statuses) != 2 || deps[0].Statuses[1].State != "success" {
		t.Errorf("deployments %+v", deps)
	}

	marker := "<!-- nestbot:drift fleet=ducksnest -->"
	n, err := c.SyncIssue(ctx, repo, marker, "Drift in ducksnest", "2 resources drifted", true)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetCalls()
	if n2, err := c.SyncIssue(ctx, repo, marker, "Drift in ducksnest", "2 resources drifted", true); err != nil || n2 != n || srv.Writes() != 0 {
		t.Errorf("same drift: issue %d, %v, %d writes; want #%d and no write", n2, err, srv.Writes(), n)
	}
	if _, err := c.SyncIssue(ctx, repo, marker, "", "", false); err != nil {
		t.Fatal(err)
	}
	issues, _ := srv.Issues(repo.Owner, repo.Name)
	if len(issues) != 1 || issues[0].Number != n || issues[0].State != "closed" || issues[0].Labels[0] != nestgh.DriftLabel {
		t.Errorf("issues %+v, want #%d closed and labelled", issues, n)
	}
	if n3, err := c.SyncIssue(ctx, repo, marker, "Drift in ducksnest", "1 resource drifted", true); err != nil || n3 != n {
		t.Errorf("drift again: issue %d, %v; want #%d reopened", n3, err, n)
	}
}

func TestLabUnchangedPlanMakesNoWrite(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	parts := reconcile.RenderMarkdown(plan("abc", 2))
	if _, err := c.UpsertSticky(ctx, repo, pr.Number, marker, parts); err != nil {
		t.Fatal(err)
	}
	srv.ResetCalls()
	res, err := c.UpsertSticky(ctx, repo, pr.Number, marker, parts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged != 1 || res.Writes() != 0 || srv.Writes() != 0 {
		t.Fatalf("unchanged plan: %+v and %d writes; want 1 unchanged and no write", res, srv.Writes())
	}
}

func TestLabStickyIsTheBotsOwnAndHealsDuplicates(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	parts := reconcile.RenderMarkdown(plan("abc", 1))
	// A user pasted the plan: not the bot's, so it is left alone. Two
	// replicas raced and both posted it: the first is kept.
	pasted, _ := srv.AddComment(repo.Owner, repo.Name, pr.Number, "mallory", parts[0])
	first, _ := srv.AddComment(repo.Owner, repo.Name, pr.Number, srv.App().BotLogin, parts[0])
	second, _ := srv.AddComment(repo.Owner, repo.Name, pr.Number, srv.App().BotLogin, parts[0])
	res, err := c.UpsertSticky(ctx, repo, pr.Number, marker, parts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged != 1 || res.Deleted != 1 || res.IDs[0] != first.ID {
		t.Fatalf("%+v: want comment %d kept as it is and the duplicate deleted", res, first.ID)
	}
	comments, _ := srv.Comments(repo.Owner, repo.Name, pr.Number)
	if len(comments) != 2 || comments[0].ID != pasted.ID || comments[1].ID != first.ID {
		t.Fatalf("comments %+v, want mallory's and the bot's first; %d deleted", comments, second.ID)
	}
}

func TestLabSummaryCutToGitHubsLimit(t *testing.T) {
	srv, pr := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	id, err := c.CreateCheckRun(ctx, repo, nestgh.CheckRun{HeadSHA: pr.HeadSHA, Status: "completed", Conclusion: "neutral",
		Title: "Big plan", Summary: strings.Repeat("s", 70000), Text: strings.Repeat("t", 70000)})
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := srv.CheckRuns(repo.Owner, repo.Name, pr.HeadSHA)
	if len(runs) != 1 || runs[0].ID != id || len([]rune(runs[0].Summary)) > 65535 || !strings.HasSuffix(runs[0].Summary, "(cut to fit GitHub's limit)") {
		t.Fatalf("check run summary of %d characters, want at most 65,535 and saying it was cut", len([]rune(runs[0].Summary)))
	}
}

func TestLabPullRequestFromAFork(t *testing.T) {
	srv, _ := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	if err := srv.Fork(ctx, repo.Owner, repo.Name, "mallory"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Commit(ctx, "mallory", repo.Name, labgithub.Commit{Branch: "evil", Message: "x", Author: "mallory",
		Files: map[string][]byte{"nest.yaml": []byte("version: 1\n")}}); err != nil {
		t.Fatal(err)
	}
	lp, err := srv.OpenPR(repo.Owner, repo.Name, "evil", labgithub.PROptions{Fork: "mallory", User: "mallory", Draft: true})
	if err != nil {
		t.Fatal(err)
	}
	no := false
	if err := srv.SetMergeable(repo.Owner, repo.Name, lp.Number, &no); err != nil {
		t.Fatal(err)
	}
	pr, err := c.PullRequest(ctx, repo, lp.Number)
	if err != nil {
		t.Fatal(err)
	}
	if !pr.Fork || pr.HeadRepo != "mallory/infra" || !pr.Draft || pr.Author != "mallory" || pr.Mergeable == nil || *pr.Mergeable {
		t.Errorf("PR from a fork = %+v (mergeable %v)", *pr, pr.Mergeable)
	}
}

func TestLabDriftIssueLeavesOthersAlone(t *testing.T) {
	srv, _ := lab(t)
	c, _ := appClient(t, srv)
	ctx := ctxFor(t)
	// alice keeps a drift issue of another fleet, with the same label.
	alice, err := nestgh.New(nestgh.Options{BaseURL: srv.APIURL(), Token: srv.Token("alice"), WriteSpacing: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetPermission(repo.Owner, repo.Name, "alice", "write"); err != nil {
		t.Fatal(err)
	}
	other, err := alice.SyncIssue(ctx, repo, "<!-- nestbot:drift fleet=other -->", "Drift in other", "x", true)
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- nestbot:drift fleet=ducksnest -->"
	n, err := c.SyncIssue(ctx, repo, marker, "Drift in ducksnest", strings.Repeat("d", nestgh.MaxCommentChars), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SyncIssue(ctx, repo, marker, "", "", false); err != nil {
		t.Fatal(err)
	}
	issues, _ := srv.Issues(repo.Owner, repo.Name)
	if len(issues) != 2 {
		t.Fatalf("%d issues, want 2", len(issues))
	}
	for _, is := range issues {
		switch is.Number {
		case other:
			if is.State != "open" || is.User != "alice" {
				t.Errorf("alice's issue was touched: %+v", is)
			}
		case n:
			if is.State != "closed" || !strings.HasPrefix(is.Body, marker) || len([]rune(is.Body)) > nestgh.MaxCommentChars {
				t.Errorf("the drift issue: %s, %d characters", is.State, len([]rune(is.Body)))
			}
		}
	}
}
