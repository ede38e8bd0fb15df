package bot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/bot"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

func TestParseCommand(t *testing.T) {
	for body, want := range map[string]string{
		"/nest plan":          "plan",
		"/nest APPLY\nplease": "apply",
		"  /nest   unlock  ":  "unlock",
		"/nest":               "help",
		"/nest frobnicate":    "frobnicate",
		"please /nest plan":   "",
		"/nestplan":           "",
		"LGTM\n/nest apply":   "",
		"":                    "",
	} {
		cmd, ok := bot.ParseCommand(body)
		if ok != (want != "") || cmd.Verb != want {
			t.Errorf("ParseCommand(%q) = %q, %v; want %q", body, cmd.Verb, ok, want)
		}
	}
}

// comment posts body as login on the pull request and runs the event.
func (w *world) comment(ctx context.Context, t *testing.T, number int, login, body string) (labgithub.Comment, error) {
	t.Helper()
	c, err := w.gh.AddComment(w.repo.Owner, w.repo.Name, number, login, body)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.gh.IssueCommentEvent(w.repo.Owner, w.repo.Name, c.ID, "created")
	if err != nil {
		t.Fatal(err)
	}
	return c, w.run(ctx, t, ev)
}

func (w *world) lastComment(t *testing.T, number int) string {
	t.Helper()
	cs := w.comments(t, number)
	if len(cs) == 0 {
		return ""
	}
	return cs[len(cs)-1].Body
}

// TestApplyFromComment: with github.apply: comment, /nest apply applies an
// approved, mergeable pull request's current plan, and commits the
// certificates onto its branch; a fork's pull request never applies.
func TestApplyFromComment(t *testing.T) {
	w := newWorld(t, func(yaml string) string { return yaml + "github:\n  apply: comment\n" })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner, name := w.repo.Owner, w.repo.Name

	// A fork's pull request.
	if err := w.gh.Fork(ctx, owner, name, "outsider"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.gh.Commit(ctx, "outsider", name, labgithub.Commit{Branch: "evil", Message: "evil", Files: map[string][]byte{"README.md": []byte("x\n")}}); err != nil {
		t.Fatal(err)
	}
	fork, err := w.gh.OpenPR(owner, name, "evil", labgithub.PROptions{Fork: "outsider", User: "outsider"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.comment(ctx, t, fork.Number, owner, "/nest apply"); err != nil {
		t.Fatal(err)
	}
	if got := w.lastComment(t, fork.Number); !strings.Contains(got, "fork") {
		t.Errorf("/nest apply on a fork's pull request got %q", got)
	}

	pr := w.openPR(ctx, t, "grow", map[string][]byte{"infra/nix/hosts/laptop-ultra/extra.nix": []byte("{ }\n")})
	if _, err := w.comment(ctx, t, pr.Number, owner, "/nest apply"); err != nil {
		t.Fatal(err)
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "approving review") {
		t.Errorf("/nest apply before approval got %q", got)
	}
	w.gh.AddUser("reviewer")
	w.gh.SetPermission(owner, name, "reviewer", "write")
	if _, err := w.gh.AddReview(owner, name, pr.Number, "reviewer", "APPROVED", "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.comment(ctx, t, pr.Number, owner, "/nest apply"); err != nil {
		t.Fatal(err)
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "no plan for the head commit") {
		t.Errorf("/nest apply without a plan got %q", got)
	}
	if _, err := w.comment(ctx, t, pr.Number, owner, "/nest plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.comment(ctx, t, pr.Number, owner, "/nest apply"); err != nil {
		t.Fatalf("/nest apply: %v\n%s", err, w.log.String())
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "nestbot applied") {
		t.Fatalf("/nest apply of an approved, planned pull request got %q", got)
	}
	if n := len(w.lab.EC2.Instances()); n != 1 {
		t.Errorf("%d instances after /nest apply, want 1", n)
	}
	head, _ := w.gh.Branch(owner, name, "grow")
	if head == pr.HeadSHA {
		t.Error("the certificates were not committed onto the pull request's branch")
	}
	if main, _ := w.gh.Branch(owner, name, "main"); main == head {
		t.Error("the certificates went to main, not the pull request's branch")
	}
	w.checkSecrets(t)
	w.checkViolations(t)
}

// TestInvalidNestYAML: the check run fails with an annotation at each
// mistake, and the comment lists them.
func TestInvalidNestYAML(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	owner, name := w.repo.Owner, w.repo.Name
	data, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "broken", Message: "broken",
		Files: map[string][]byte{"nest.yaml": []byte("version: 1\nname: ducksnest\nflake: infra/nix\nhosts:\n  web:\n    roles: [web]\n    colour: blue\n")}})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := w.gh.OpenPR(owner, name, "broken", labgithub.PROptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := w.gh.PullRequestEvent(owner, name, pr.Number, "opened")
	if err := w.run(ctx, t, ev); err != nil {
		t.Fatal(err)
	}
	runs, _ := w.gh.CheckRuns(owner, name, data.After)
	if len(runs) != 1 || runs[0].Conclusion != "failure" || len(runs[0].Annotations) == 0 {
		t.Fatalf("check runs: %+v, want one failure with annotations", runs)
	}
	for _, a := range runs[0].Annotations {
		if a.Path != "nest.yaml" || a.StartLine < 1 {
			t.Errorf("annotation %+v is not at a nest.yaml line", a)
		}
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "is not valid") || !strings.Contains(got, "nest.yaml:7:") {
		t.Errorf("comment on an invalid nest.yaml: %q", got)
	}
	w.checkViolations(t)
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"/nest plan", "/nest apply now\nthanks", "/nest", " /nest\tUNLOCK ", "nope", "/nestplan", "\x00/nest"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		cmd, ok := bot.ParseCommand(body)
		if !ok {
			if cmd.Verb != "" || cmd.Args != nil {
				t.Fatalf("not a command, yet %+v", cmd)
			}
			return
		}
		first := strings.Fields(strings.SplitN(strings.TrimSpace(body), "\n", 2)[0])
		if len(first) == 0 || first[0] != "/nest" {
			t.Fatalf("%q parsed as a command though its first line does not start with /nest", body)
		}
		if cmd.Verb == "" || cmd.Verb != strings.ToLower(cmd.Verb) {
			t.Fatalf("%q: verb %q, want a non-empty lower-case verb", body, cmd.Verb)
		}
	})
}
