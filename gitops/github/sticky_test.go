package github

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/reconcile"
)

func TestMaxCommentCharsIsReconciles(t *testing.T) {
	if MaxCommentChars != reconcile.MaxCommentSize {
		t.Fatalf("MaxCommentChars = %d, reconcile.MaxCommentSize = %d", MaxCommentChars, reconcile.MaxCommentSize)
	}
}

// smallPlan is a plan of a few hosts whose revision is rev.
func smallPlan(rev string, hosts int) *reconcile.Plan {
	p := &reconcile.Plan{Fleet: "ducksnest", Revision: rev, ObservedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for i := range hosts {
		name := fmt.Sprintf("host-%04d", i)
		p.Steps = append(p.Steps,
			reconcile.Step{Plane: reconcile.PlaneCloud, Action: reconcile.ActionCreate, Address: "aws_instance." + name, Reason: "not in AWS yet",
				Changes: []reconcile.Change{
					{Attr: "instance_type", After: "t3.medium"},
					{Attr: "ami", After: "ami-0123456789abcdef0"},
					{Attr: "subnet", After: "subnet-0a1b2c3d"},
					{Attr: "root_volume.size_gb", After: "20"},
					{Attr: "root_volume.type", After: "gp3"},
					{Attr: "tags.nest:host", After: name},
					{Attr: "user_data", Sensitive: true},
				}},
			reconcile.Step{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: "host." + name, Reason: "revision " + rev, Batch: 1 + i/10,
				Changes: []reconcile.Change{{Attr: "revision", Before: "0ld", After: rev}}},
		)
	}
	return p
}

func TestUpsertSticky100PushesOneCommentTwoWritesEach(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	var ids []int64
	for push := range 100 {
		rev := fmt.Sprintf("%040x", push+1)
		parts := reconcile.RenderMarkdown(smallPlan(rev, 3))
		if len(parts) != 1 {
			t.Fatalf("push %d: %d parts, want 1", push, len(parts))
		}
		before := f.writes()
		res, err := c.UpsertSticky(ctx, testRepo, 7, marker, parts)
		if err != nil {
			t.Fatalf("push %d: %v", push, err)
		}
		if _, err := c.CreateCheckRun(ctx, testRepo, CheckRun{HeadSHA: rev, Status: "completed", Conclusion: "neutral",
			Title: "3 to create", Summary: "**3 to create**"}); err != nil {
			t.Fatalf("push %d: %v", push, err)
		}
		if w := f.writes() - before; w > 2 {
			t.Fatalf("push %d: %d writes, want at most 2 (the comment and the check run)", push, w)
		}
		want := StickyResult{Updated: 1, IDs: res.IDs}
		if push == 0 {
			want = StickyResult{Created: 1, IDs: res.IDs}
		}
		if fmt.Sprint(res) != fmt.Sprint(want) || len(res.IDs) != 1 {
			t.Fatalf("push %d: %+v, want %+v", push, res, want)
		}
		ids = append(ids, res.IDs[0])
		got := f.commentsOn(7)
		if len(got) != 1 || got[0].Body != parts[0] {
			t.Fatalf("push %d: %d comments on the PR (want 1, holding this push's plan)", push, len(got))
		}
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("the comment changed id: %v", ids)
		}
	}
	if n := f.count("POST /repos/{owner}/{repo}/issues/{number}/comments"); n != 1 {
		t.Errorf("%d comments created, want 1", n)
	}
	if n := f.count("PATCH /repos/{owner}/{repo}/issues/comments/{id}"); n != 99 {
		t.Errorf("%d comment edits, want 99", n)
	}
	if n := f.count("POST /repos/{owner}/{repo}/check-runs"); n != 100 {
		t.Errorf("%d check runs created, want 100", n)
	}
	if n := f.count("PATCH /repos/{owner}/{repo}/check-runs/{id}"); n != 0 {
		t.Errorf("%d check run updates, want 0: a completed run is one request", n)
	}
	if w := f.writes(); w != 200 {
		t.Errorf("%d writes for 100 pushes, want 200", w)
	}
	t.Logf("100 pushes: %d writes (%.1f per plan), %d reads", f.writes(), float64(f.writes())/100,
		f.count("GET /repos/{owner}/{repo}/issues/{number}/comments"))
}

func TestUpsertStickyUnchangedPlanMakesNoWrite(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	parts := reconcile.RenderMarkdown(smallPlan("abc", 2))
	if _, err := c.UpsertSticky(ctx, testRepo, 3, marker, parts); err != nil {
		t.Fatal(err)
	}
	before := f.writes()
	res, err := c.UpsertSticky(ctx, testRepo, 3, marker, parts)
	if err != nil {
		t.Fatal(err)
	}
	if w := f.writes() - before; w != 0 || res.Unchanged != 1 || res.Writes() != 0 {
		t.Fatalf("unchanged plan: %d writes, result %+v; want no write, 1 unchanged", w, res)
	}
}

// bigPlan is a plan of 1,000 hosts: cloud instances to create and hosts to
// roll, with their attribute changes.
func bigPlan() *reconcile.Plan { return smallPlan(strings.Repeat("b", 40), 1000) }

func TestUpsertStickySplitsAndShrinks(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	// Someone else's comments, one quoting a marker, and enough of them to
	// need two pages.
	f.addComment(9, "alice", "looks good")
	f.addComment(9, "bob", reconcile.MarkdownMarker("otherfleet")+"part=1/1 -->\nanother fleet's plan")
	for i := range 150 {
		f.addComment(9, "carol", fmt.Sprintf("comment %d", i))
	}

	big := reconcile.RenderMarkdown(bigPlan())
	if len(big) < 3 {
		t.Fatalf("the 1,000-host plan renders to %d parts; the test needs at least 3", len(big))
	}
	res, err := c.UpsertSticky(ctx, testRepo, 9, marker, big)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != len(big) || len(res.IDs) != len(big) {
		t.Fatalf("first upsert: %+v, want %d created", res, len(big))
	}
	ours := func() []fakeComment {
		var out []fakeComment
		for _, cm := range f.commentsOn(9) {
			if strings.HasPrefix(cm.Body, marker) {
				out = append(out, cm)
			}
		}
		return out
	}
	got := ours()
	if len(got) != len(big) {
		t.Fatalf("%d plan comments, want %d", len(got), len(big))
	}
	for i, cm := range got {
		if cm.Body != big[i] {
			t.Fatalf("comment %d does not hold part %d", i+1, i+1)
		}
		if !strings.Contains(cm.Body, fmt.Sprintf("part=%d/%d -->", i+1, len(big))) {
			t.Fatalf("comment %d has no part number %d/%d", i+1, i+1, len(big))
		}
		if len([]rune(cm.Body)) > MaxCommentChars {
			t.Fatalf("comment %d has %d characters", i+1, len([]rune(cm.Body)))
		}
	}

	// The same plan again: nothing to write, although the comments span pages.
	f.resetCalls()
	res, err = c.UpsertSticky(ctx, testRepo, 9, marker, big)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged != len(big) || f.writes() != 0 {
		t.Fatalf("same big plan: %+v and %d writes, want all unchanged and none", res, f.writes())
	}
	if n := f.count("GET /repos/{owner}/{repo}/issues/{number}/comments"); n != 2 {
		t.Errorf("%d list requests for %d comments, want 2 pages of 100", n, len(f.commentsOn(9)))
	}

	// The plan shrinks to one part: part 1 is edited, the rest deleted.
	small := reconcile.RenderMarkdown(smallPlan("c", 1))
	f.resetCalls()
	res, err = c.UpsertSticky(ctx, testRepo, 9, marker, small)
	if err != nil {
		t.Fatal(err)
	}
	if res.Updated != 1 || res.Deleted != len(big)-1 || res.Created != 0 {
		t.Fatalf("shrink: %+v, want 1 updated, %d deleted", res, len(big)-1)
	}
	if n := f.count("DELETE /repos/{owner}/{repo}/issues/comments/{id}"); n != len(big)-1 {
		t.Errorf("%d deletes, want %d", n, len(big)-1)
	}
	got = ours()
	if len(got) != 1 || got[0].Body != small[0] || got[0].ID != res.IDs[0] {
		t.Fatalf("after the shrink: %d plan comments, want the first one holding the small plan", len(got))
	}
	if n := len(f.commentsOn(9)); n != 153 {
		t.Errorf("%d comments on the PR, want 153 (152 of others, never touched, and the plan)' comments are never touched", n)
	}
	if got[0].ID != res.IDs[0] {
		t.Errorf("the remaining comment is %d, want the first part's %d", got[0].ID, res.IDs[0])
	}
}

func TestUpsertStickyOnlyTheBotsOwnWithLogin(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f, func(o *Options) { o.Login = f.login })
	ctx := testContext(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	parts := reconcile.RenderMarkdown(smallPlan("abc", 1))
	// A user pasted a plan comment: it is not the bot's, so it is left alone.
	pasted := f.addComment(4, "mallory", parts[0])
	res, err := c.UpsertSticky(ctx, testRepo, 4, marker, parts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 1 || res.IDs[0] == pasted {
		t.Fatalf("%+v: want a new comment of the bot's own, not the pasted one", res)
	}
}

func TestUpsertStickyRefusesPartsItCouldNotFindAgain(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	for name, tc := range map[string]struct {
		marker string
		parts  []string
		want   string
	}{
		"no marker":       {"", []string{"x"}, "marker is empty"},
		"no parts":        {marker, nil, "no parts"},
		"unmarked part":   {marker, []string{marker + "part=1/2 -->\n", "plain"}, "part 2 of 2 does not begin with the marker"},
		"too long a part": {marker, []string{marker + strings.Repeat("é", MaxCommentChars)}, "over GitHub's limit"},
	} {
		_, err := c.UpsertSticky(ctx, testRepo, 1, tc.marker, tc.parts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		}
	}
	if f.writes() != 0 {
		t.Errorf("%d writes for refused parts", f.writes())
	}
}

func TestUpsertStickyHealsADuplicate(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	parts := reconcile.RenderMarkdown(smallPlan("abc", 1))
	// Two replicas raced and both created the comment.
	first := f.addComment(5, f.login, parts[0])
	f.addComment(5, f.login, parts[0])
	res, err := c.UpsertSticky(ctx, testRepo, 5, marker, parts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unchanged != 1 || res.Deleted != 1 || res.IDs[0] != first {
		t.Fatalf("%+v: want the first kept unchanged and the duplicate deleted", res)
	}
	if n := len(f.commentsOn(5)); n != 1 {
		t.Fatalf("%d comments, want 1", n)
	}
}

func TestCommentReactAndEdit(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	cmd := f.addComment(2, "alice", "/nest plan")
	if err := c.React(ctx, testRepo, cmd, "eyes"); err != nil {
		t.Fatal(err)
	}
	if got := f.reactions[cmd]; len(got) != 1 || got[0] != "eyes" {
		t.Fatalf("reactions %v, want [eyes]", got)
	}
	if err := c.React(ctx, testRepo, cmd, "smile"); err == nil || !strings.Contains(err.Error(), "eyes") {
		t.Fatalf("unknown reaction: %v, want an error listing the known ones", err)
	}
	id, err := c.Comment(ctx, testRepo, 2, "Planning…")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EditComment(ctx, testRepo, id, "Planned."); err != nil {
		t.Fatal(err)
	}
	got := f.commentsOn(2)
	if len(got) != 2 || got[1].ID != id || got[1].Body != "Planned." || got[1].User != f.login {
		t.Fatalf("comments %+v", got)
	}
	if _, err := c.Comment(ctx, testRepo, 2, strings.Repeat("x", MaxCommentChars+1)); err == nil {
		t.Fatal("a comment over GitHub's limit was sent")
	}
}
