package bot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/store"
)

// The handler tests: PlanPR, Drift, ApplyPush, Command and DeadLetter over
// fakeGitHub, a repository on disk and the state file, observing none of
// the live fleet's planes (the lab's stories observe them all).

// handlerBot is a bot over gh that observes nothing of the live fleet.
type handlerBot struct {
	*Bot
	db      *store.DB
	workDir string
	masked  []string
}

func newHandlerBot(t *testing.T, gh GitHub, edit func(*Config)) *handlerBot {
	t.Helper()
	state := t.TempDir()
	db, err := store.Open(filepath.Join(state, "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := &handlerBot{db: db, workDir: filepath.Join(state, "work")}
	cfg := Config{GitHub: gh, WorkDir: h.workDir, Owner: "replica-1", Locker: db.Locks(), Artifacts: db.Artifacts(),
		Mask:  func(s string) { h.masked = append(h.masked, s) },
		Fleet: fleet.Options{Getenv: func(string) string { return "" }, Planes: []reconcile.Plane{}, DB: db}}
	if edit != nil {
		edit(&cfg)
	}
	if h.Bot, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const canaryToken = "ghs_CANARYinstallationTOKEN0123456789"

// canaryLink, as a link's target, is a file of the bot's own outside the
// checkout that holds canaryFile.
const (
	canaryLink = "(the canary file)"
	canaryFile = "CANARY-linked-file-9f8e7d"
)

// invalidYAML makes nest.yaml name a host with a field nest.yaml has not.
func invalidYAML(yaml string) string {
	return strings.Replace(yaml, "  laptop-ultra:   {roles: [worker], addresses: [192.168.0.22]}", "  laptop-ultra:   {roles: [worker], colour: blue}", 1)
}

func TestHandlerPlanPR(t *testing.T) {
	for _, c := range []struct {
		name  string
		main  func(string) string      // nest.yaml on main
		files map[string]string        // the pull request's change
		links map[string]string        // symbolic links it adds
		broke bool                     // the change makes nest.yaml invalid
		edit  func(yaml string) string // the change to nest.yaml it makes
		pki   bool                     // observe the certificates
		pr    func(*nestgh.PR)         // what GitHub says of it
		draft bool
		check func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot)
	}{
		{name: "the plan is the pull request's sticky comment and a nest/plan check run, and is saved",
			files: map[string]string{"README.md": "x\n"},
			check: func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot) {
				if err != nil || res.Plan == nil {
					t.Fatalf("PlanPR = %+v, %v; want a plan", res, err)
				}
				if len(gh.stickies) != 1 || gh.stickies[0].number != 7 || gh.stickies[0].marker != stickyMarker ||
					!slices.Equal(gh.stickies[0].parts, res.Parts) || !strings.HasPrefix(res.Parts[0], stickyMarker) {
					t.Errorf("sticky comments %+v, want the plan's parts once, on #7, under the plan's marker", gh.stickies)
				}
				if len(gh.comments) != 0 {
					t.Errorf("the plan was also posted as a comment: %q", gh.comments)
				}
				if len(gh.checks) != 1 || gh.checks[0].Name != CheckPlan || gh.checks[0].HeadSHA != res.Head || gh.checks[0].Conclusion != "success" {
					t.Errorf("check runs %+v, want one successful nest/plan on the head %s", gh.checks, res.Head)
				}
				if _, err := h.db.Artifacts().GetPlan(context.Background(), planKey(policyRepo, 7, res.Head)); err != nil {
					t.Errorf("the plan of the head was not saved for /nest apply: %v", err)
				}
			}},
		{name: "an invalid nest.yaml: the sticky comment lists its mistakes, the check run fails with an annotation at each",
			broke: true,
			check: func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot) {
				if err != nil || len(res.Invalid) == 0 || res.Plan != nil {
					t.Fatalf("PlanPR = %+v, %v; want nest.yaml's mistakes and no plan", res, err)
				}
				if len(gh.stickies) != 1 || !strings.Contains(gh.stickies[0].parts[0], "`nest.yaml` is not valid") || !strings.Contains(gh.stickies[0].parts[0], "colour") {
					t.Errorf("sticky comments %+v, want one naming the mistake", gh.stickies)
				}
				if len(gh.checks) != 1 || gh.checks[0].Conclusion != "failure" || len(gh.checks[0].Annotations) != len(res.Invalid) ||
					gh.checks[0].Annotations[0].Path != "nest.yaml" || gh.checks[0].Annotations[0].StartLine < 2 {
					t.Errorf("check runs %+v, want one failed, annotated at each mistake's line", gh.checks)
				}
			}},
		{name: "a failed plan says what failed, and no token or path of the bot's",
			files: map[string]string{"README.md": "x\n"}, pr: func(pr *nestgh.PR) { pr.DefaultBranch = "trunk" },
			check: func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot) {
				if err == nil || !strings.Contains(err.Error(), "fetch the default branch trunk") {
					t.Fatalf("PlanPR: %v, want the default branch's fetch to fail", err)
				}
				if len(gh.stickies) != 1 || !strings.Contains(gh.stickies[0].parts[0], "the plan failed") ||
					!strings.Contains(gh.stickies[0].parts[0], "fetch the default branch trunk") {
					t.Errorf("sticky comments %+v, want one saying the plan failed fetching trunk", gh.stickies)
				}
				if len(gh.checks) != 1 || gh.checks[0].Conclusion != "failure" || gh.checks[0].Title != "The plan failed" {
					t.Errorf("check runs %+v, want one failed", gh.checks)
				}
				if all := gh.written(); strings.Contains(all, canaryToken) || strings.Contains(all, h.workDir) {
					t.Errorf("what the bot wrote holds the token or its work directory %s:\n%s", h.workDir, all)
				}
				if !slices.Contains(h.masked, canaryToken) {
					t.Errorf("the installation's token was not masked (masked %d values)", len(h.masked))
				}
			}},
		{name: "a draft is not planned while github.plan_drafts is off",
			files: map[string]string{"README.md": "x\n"}, draft: true,
			check: func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot) {
				if err != nil || res.Skipped == "" || res.Plan != nil {
					t.Fatalf("PlanPR = %+v, %v; want it skipped", res, err)
				}
				if len(gh.stickies)+len(gh.checks)+len(gh.comments) != 0 {
					t.Errorf("a draft got %d sticky comments, %d check runs, %d comments", len(gh.stickies), len(gh.checks), len(gh.comments))
				}
			}},
		{name: "a draft is planned with github.plan_drafts on",
			main: func(y string) string { return y + "github:\n  plan_drafts: true\n" }, draft: true,
			files: map[string]string{"README.md": "x\n"},
			check: func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot) {
				if err != nil || res.Plan == nil || len(gh.stickies) != 1 {
					t.Fatalf("PlanPR = %+v, %v (sticky comments %d); want it planned", res, err, len(gh.stickies))
				}
			}},
		{name: "a change to where credentials go is planned with the default branch's, and says it takes effect after merge",
			edit: func(y string) string {
				return strings.Replace(y, "  auth_key: {env: TS_AUTHKEY}\n", "  auth_key: {env: TS_AUTHKEY}\n  control_url: https://control.attacker.example\n", 1)
			},
			check: func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot) {
				if err != nil || !slices.Equal(res.Deferred, []string{"tailnet.control_url"}) {
					t.Fatalf("PlanPR = %+v, %v; want tailnet.control_url deferred", res, err)
				}
				if len(gh.stickies) != 1 || !strings.Contains(gh.stickies[0].parts[0], "This pull request changes tailnet.control_url") ||
					!strings.Contains(gh.stickies[0].parts[0], "takes effect after merge") {
					t.Errorf("the plan comment does not say the change takes effect after merge: %+v", gh.stickies)
				}
			}},
		{name: "a certificate file linked out of the checkout is refused by name, and what it points at is shown nowhere",
			pki: true, links: map[string]string{"infra/nix/secrets/certs/secrets.nix": canaryLink},
			check: func(t *testing.T, res *PlanResult, err error, gh *fakeGitHub, h *handlerBot) {
				if err == nil || len(gh.stickies) != 1 || !strings.Contains(gh.stickies[0].parts[0], "infra/nix/secrets/certs/secrets.nix: a symbolic link; nestbot reads and writes nothing through a link") {
					t.Fatalf("PlanPR: %v; sticky comments %+v; want the link refused by name", err, gh.stickies)
				}
				if all := gh.written(); strings.Contains(all, canaryFile) || strings.Contains(all, h.workDir) {
					t.Errorf("what the bot wrote holds the linked file or the work directory:\n%s", all)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRemote(t, c.main)
			for name, target := range c.links {
				if target == canaryLink {
					file := filepath.Join(t.TempDir(), "canary")
					if err := os.WriteFile(file, []byte(canaryFile+" = {\n"), 0o600); err != nil {
						t.Fatal(err)
					}
					c.links = map[string]string{name: file}
				}
			}
			switch {
			case c.broke:
				c.files = map[string]string{"nest.yaml": invalidYAML(r.yaml)}
			case c.edit != nil:
				c.files = map[string]string{"nest.yaml": c.edit(r.yaml)}
			}
			pr := r.pull(7, "change", c.files, c.links)
			if c.pr != nil {
				c.pr(&pr)
			}
			gh := &fakeGitHub{token: canaryToken, install: 42, pr: pr}
			h := newHandlerBot(t, gh, func(cfg *Config) {
				if c.pki {
					cfg.Fleet.Planes = []reconcile.Plane{reconcile.PlanePKI}
				}
			})
			res, err := h.PlanPR(testContext(t), gh, PlanRequest{Repo: policyRepo, CloneURL: r.url(), Number: 7, Draft: c.draft})
			if res != nil && err == nil && res.Head != pr.HeadSHA {
				t.Errorf("planned %s, want the pull request's head %s", res.Head, pr.HeadSHA)
			}
			c.check(t, res, err, gh, h)
		})
	}
	t.Run("planned again, the plan stays in the one sticky comment", func(t *testing.T) {
		r := newRemote(t, nil)
		pr := r.pull(7, "change", map[string]string{"README.md": "x\n"}, nil)
		gh := &fakeGitHub{pr: pr}
		h := newHandlerBot(t, gh, nil)
		for range 2 {
			if _, err := h.PlanPR(testContext(t), gh, PlanRequest{Repo: policyRepo, CloneURL: r.url(), Number: 7}); err != nil {
				t.Fatal(err)
			}
		}
		// The parts' first lines name the fleet and the part: the same
		// comment (the rest says when the live state was observed).
		firstLines := func(s sticky) (lines []string) {
			for _, p := range s.parts {
				line, _, _ := strings.Cut(p, "\n")
				lines = append(lines, line)
			}
			return lines
		}
		if len(gh.stickies) != 2 || gh.stickies[0].marker != gh.stickies[1].marker || !slices.Equal(firstLines(gh.stickies[0]), firstLines(gh.stickies[1])) ||
			len(gh.comments) != 0 {
			t.Errorf("sticky comments %+v, comments %q; want the same parts under the same marker twice, and no comment", gh.stickies, gh.comments)
		}
	})
}

func TestHandlerDrift(t *testing.T) {
	t.Run("no drift: a successful nest/drift check run, and no open issue", func(t *testing.T) {
		r := newRemote(t, nil)
		gh := &fakeGitHub{}
		h := newHandlerBot(t, gh, nil)
		res, err := h.Drift(testContext(t), gh, DriftRequest{Repo: policyRepo, CloneURL: r.url(), Branch: "main"})
		if err != nil || res.Drifted {
			t.Fatalf("Drift = %+v, %v; want no drift", res, err)
		}
		if len(gh.checks) != 1 || gh.checks[0].Name != CheckDrift || gh.checks[0].Conclusion != "success" || gh.checks[0].Title != "No drift: the fleet matches main" {
			t.Errorf("check runs %+v, want one successful nest/drift", gh.checks)
		}
		if len(gh.issues) != 1 || gh.issues[0].open || gh.issues[0].marker != "<!-- nestbot:drift fleet=ducksnest -->" {
			t.Errorf("issues synced %+v, want the fleet's drift issue closed", gh.issues)
		}
	})
	t.Run("an invalid nest.yaml on the branch: an error, and nothing written", func(t *testing.T) {
		r := newRemote(t, invalidYAML)
		gh := &fakeGitHub{}
		h := newHandlerBot(t, gh, nil)
		_, err := h.Drift(testContext(t), gh, DriftRequest{Repo: policyRepo, CloneURL: r.url(), Branch: "main"})
		if err == nil || !strings.Contains(err.Error(), "nest.yaml on main is not valid, so drift cannot be judged") {
			t.Errorf("Drift: %v, want nest.yaml's mistakes", err)
		}
		if len(gh.checks)+len(gh.issues) != 0 {
			t.Errorf("check runs %+v, issues %+v; want none", gh.checks, gh.issues)
		}
	})
	t.Run("a drift job of an installation uses the installation's client", func(t *testing.T) {
		r := newRemote(t, nil)
		app, inst := &fakeGitHub{}, &fakeGitHub{}
		var asked []int64
		h := newHandlerBot(t, app, func(c *Config) {
			c.Installation = func(id int64) GitHub { asked = append(asked, id); return inst }
		})
		payload, _ := json.Marshal(DriftJob{Repo: policyRepo.FullName(), CloneURL: r.url(), Branch: "main", InstallationID: 42})
		if err := h.Run(testContext(t), store.Job{ID: "d1", Event: "drift", Payload: payload}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(asked, []int64{42}) || len(app.calls) != 0 || len(inst.checks) != 1 {
			t.Errorf("installations asked for %v; the App's client got %v, the installation's %v", asked, app.calls, inst.calls)
		}
	})
}

func TestHandlerApplyPush(t *testing.T) {
	for _, c := range []struct {
		name    string
		main    func(string) string
		ref     string
		older   bool // the push is not the branch's head any more
		skipped string
		err     string
		check   func(t *testing.T, res *ApplyResult, gh *fakeGitHub, h *handlerBot)
	}{
		{name: "a push to another branch does nothing at all", ref: "refs/heads/dev",
			skipped: "refs/heads/dev is not the repository's default branch main",
			check: func(t *testing.T, res *ApplyResult, gh *fakeGitHub, h *handlerBot) {
				if len(gh.calls) != 0 {
					t.Errorf("GitHub was asked %v, want nothing (not even a token to clone)", gh.calls)
				}
			}},
		{name: "github.apply off: skipped, no deployment", main: func(y string) string { return y + "github:\n  apply: \"off\"\n" },
			skipped: "github.apply is off"},
		{name: "github.default_branch names another branch: skipped, saying so", main: func(y string) string { return y + "github:\n  default_branch: trunk\n" },
			skipped: "github.default_branch in nest.yaml is trunk"},
		{name: "the branch moved on: the newer push applies", older: true, skipped: "superseded by "},
		{name: "an invalid nest.yaml: a failed deployment says so", main: invalidYAML, skipped: "invalid nest.yaml", err: "nest.yaml at ",
			check: func(t *testing.T, res *ApplyResult, gh *fakeGitHub, h *handlerBot) {
				if len(gh.deploys) != 1 || len(gh.statuses) != 1 || !strings.HasPrefix(gh.statuses[0], "failure: nest.yaml has 1 mistakes; nothing applied") {
					t.Errorf("deployments %q, statuses %q; want one failed, saying nothing applied", gh.deploys, gh.statuses)
				}
			}},
		{name: "nothing to change: a successful deployment, reported on the merged pull request only",
			check: func(t *testing.T, res *ApplyResult, gh *fakeGitHub, h *handlerBot) {
				if res.Report == nil || res.Deployment == 0 || res.Err != nil {
					t.Fatalf("ApplyPush = %+v, want an apply of no changes", res)
				}
				if want := []string{"in_progress: applying ", "success: no changes: the fleet already matched"}; len(gh.statuses) != 2 ||
					!strings.HasPrefix(gh.statuses[0], want[0]) || gh.statuses[1] != want[1] {
					t.Errorf("deployment statuses %q, want %q", gh.statuses, want)
				}
				if len(gh.commented) != 1 || len(gh.commented[3]) != 1 || !strings.Contains(gh.commented[3][0], "nestbot applied") {
					t.Errorf("comments %v, want one report on the merged #3", gh.commented)
				}
				recs, err := h.db.Artifacts().AuditLog(context.Background())
				if err != nil || len(recs) != 1 || recs[0].Trigger != "push" || recs[0].Actor != "octocat" || recs[0].Result != "success" {
					t.Errorf("audit log %+v, %v; want the push's apply by octocat", recs, err)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRemote(t, c.main)
			sha := r.commit("main", "main", map[string]string{"README.md": "pushed\n"}, nil)
			if c.older {
				r.commit("main", "main", map[string]string{"README.md": "pushed again\n"}, nil)
			}
			gh := &fakeGitHub{pulls: []nestgh.PR{{Number: 3, Merged: true}, {Number: 4}}}
			h := newHandlerBot(t, gh, nil)
			res, err := h.ApplyPush(testContext(t), gh, Push{Repo: policyRepo, CloneURL: r.url(), Ref: cmp.Or(c.ref, "refs/heads/main"), DefaultBranch: "main", SHA: sha, Pusher: "octocat"})
			if (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
				t.Fatalf("ApplyPush: %v, want %q", err, c.err)
			}
			if c.skipped != "" && (res == nil || !strings.HasPrefix(res.Skipped, c.skipped)) {
				t.Fatalf("ApplyPush = %+v, want it skipped: %q", res, c.skipped)
			}
			if c.skipped != "" && c.err == "" && len(gh.deploys)+len(gh.comments) != 0 {
				t.Errorf("a skipped push made deployments %q and comments %q", gh.deploys, gh.comments)
			}
			// Only an apply takes the fleet lock; it releases it.
			lease, err := h.db.Locks().Acquire(context.Background(), lockName(policyRepo), "someone-else", time.Minute)
			if err != nil {
				t.Errorf("the fleet lock is not free after the push: %v", err)
			} else if lease.Token != 1 && c.skipped != "" {
				t.Errorf("a skipped push took the fleet lock (the next holder's token is %d)", lease.Token)
			}
			if c.check != nil {
				c.check(t, res, gh, h)
			}
		})
	}
}

func TestHandlerCommand(t *testing.T) {
	perms := map[string]string{"writer": "write", "reader": "read"}
	for _, c := range []struct {
		name, user, verb string
		pr               nestgh.PR
		reactErr         error
		reply            string // what the one reply says
	}{
		{name: "an unknown verb gets the help", user: "writer", verb: "frobnicate", reply: "`/nest frobnicate` is not a command I know."},
		{name: "a reader is refused", user: "reader", verb: "apply", reply: "@reader: `/nest apply` needs write access to ducksnest/fleet; yours is read."},
		{name: "a failed reaction does not stop the answer", user: "writer", verb: "help", reactErr: errors.New("502"), reply: Help},
		{name: "/nest apply of a fork's pull request is refused before any checkout", user: "writer", verb: "apply",
			pr: nestgh.PR{Fork: true, State: "open", BaseRef: "main", DefaultBranch: "main"}, reply: "@writer: not applied: this pull request comes from a fork"},
		{name: "/nest apply with the default branch's policy off is refused", user: "writer", verb: "apply", reply: "@writer: not applied: `/nest apply` is off"},
		{name: "/nest unlock of a free lock says so", user: "writer", verb: "unlock", reply: "@writer: the fleet of ducksnest/fleet is not locked."},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRemote(t, nil)
			pr := c.pr
			if pr.HeadSHA == "" && !pr.Fork {
				pr = r.pull(5, "change", map[string]string{"README.md": "x\n"}, nil)
			}
			gh := &fakeGitHub{perms: perms, pr: pr, reactErr: c.reactErr}
			h := newHandlerBot(t, gh, nil)
			res, err := h.Command(testContext(t), gh, CommandRequest{Repo: policyRepo, CloneURL: r.url(), Number: 5, CommentID: 11, User: c.user, Command: Command{Verb: c.verb}})
			if err != nil || res != nil {
				t.Fatalf("Command = %+v, %v; want only a reply", res, err)
			}
			if !slices.Equal(gh.reactions, []string{"eyes"}) {
				t.Errorf("reactions %q, want eyes", gh.reactions)
			}
			if len(gh.comments) != 1 || !strings.Contains(gh.comments[0], c.reply) {
				t.Errorf("replies %q, want one saying %q", gh.comments, c.reply)
			}
			if c.pr.Fork && slices.Contains(gh.calls, "GitToken") {
				t.Error("a fork's pull request was checked out")
			}
			if len(gh.deploys)+len(gh.stickies) != 0 {
				t.Errorf("deployments %q, sticky comments %d; want none", gh.deploys, len(gh.stickies))
			}
		})
	}
}

func TestHandlerDeadLetter(t *testing.T) {
	repo := &gogithub.Repository{Name: new("fleet"), Owner: &gogithub.User{Login: new("ducksnest")}}
	job := func(event string, ev any) store.Job {
		payload, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return store.Job{ID: "dl-1", Event: event, Payload: payload, Attempt: 4}
	}
	t.Run("a pull request's plan fails, on its sticky comment and head", func(t *testing.T) {
		gh := &fakeGitHub{}
		h := newHandlerBot(t, gh, nil)
		err := h.DeadLetter(testContext(t), job("pull_request", gogithub.PullRequestEvent{Action: new("opened"), Repo: repo,
			PullRequest: &gogithub.PullRequest{Number: new(2), Head: &gogithub.PullRequestBranch{SHA: new("abc123")}}}))
		if err != nil {
			t.Fatal(err)
		}
		if len(gh.stickies) != 1 || gh.stickies[0].number != 2 || !strings.Contains(gh.stickies[0].parts[0], "gave up on this job (delivery dl-1) after 3 attempts") {
			t.Errorf("sticky comments %+v, want #2's saying nestbot gave up after 3 attempts", gh.stickies)
		}
		if len(gh.checks) != 1 || gh.checks[0].HeadSHA != "abc123" || gh.checks[0].Conclusion != "failure" {
			t.Errorf("check runs %+v, want one failed on abc123", gh.checks)
		}
		if slices.Contains(gh.calls, "GitToken") {
			t.Error("the dead job was checked out")
		}
	})
	t.Run("a command gets a reply", func(t *testing.T) {
		gh := &fakeGitHub{}
		h := newHandlerBot(t, gh, nil)
		err := h.DeadLetter(testContext(t), job("issue_comment", gogithub.IssueCommentEvent{Action: new("created"), Repo: repo,
			Issue:   &gogithub.Issue{Number: new(2), PullRequestLinks: &gogithub.PullRequestLinks{}},
			Comment: &gogithub.IssueComment{Body: new("/nest plan"), User: &gogithub.User{Login: new("writer")}}}))
		if err != nil {
			t.Fatal(err)
		}
		if len(gh.comments) != 1 || !strings.HasPrefix(gh.comments[0], "@writer: your command was not carried out. nestbot gave up") {
			t.Errorf("replies %q, want one telling @writer", gh.comments)
		}
	})
}

// TestHandlerRunIgnores: the events that start nothing ask GitHub nothing,
// not even for a token to clone with.
func TestHandlerRunIgnores(t *testing.T) {
	repo := &gogithub.Repository{Name: new("fleet"), Owner: &gogithub.User{Login: new("ducksnest")}, DefaultBranch: new("main")}
	const sha = "1111111111111111111111111111111111111111"
	for _, c := range []struct {
		name, event string
		ev          any
	}{
		{"a closed pull request", "pull_request", gogithub.PullRequestEvent{Action: new("closed"), Repo: repo, PullRequest: &gogithub.PullRequest{Number: new(2)}}},
		{"a pull request labelled", "pull_request", gogithub.PullRequestEvent{Action: new("labeled"), Repo: repo, PullRequest: &gogithub.PullRequest{Number: new(2)}}},
		{"a deleted branch", "push", gogithub.PushEvent{Ref: new("refs/heads/main"), Deleted: new(true), After: new(strings.Repeat("0", 40)), Repo: &gogithub.PushEventRepository{Name: new("fleet")}}},
		{"nestbot's own commit", "push", gogithub.PushEvent{Ref: new("refs/heads/main"), After: new(sha), Repo: &gogithub.PushEventRepository{Name: new("fleet"), DefaultBranch: new("main")},
			HeadCommit: &gogithub.HeadCommit{Author: &gogithub.CommitAuthor{Email: new("NestBot@users.noreply.github.com")}}}},
		{"an edited comment", "issue_comment", gogithub.IssueCommentEvent{Action: new("edited"), Repo: repo,
			Issue:   &gogithub.Issue{Number: new(2), PullRequestLinks: &gogithub.PullRequestLinks{}},
			Comment: &gogithub.IssueComment{Body: new("/nest apply"), User: &gogithub.User{Login: new("writer")}}}},
		{"a command on an issue", "issue_comment", gogithub.IssueCommentEvent{Action: new("created"), Repo: repo,
			Issue: &gogithub.Issue{Number: new(2)}, Comment: &gogithub.IssueComment{Body: new("/nest apply"), User: &gogithub.User{Login: new("writer")}}}},
		{"a comment that is no command", "issue_comment", gogithub.IssueCommentEvent{Action: new("created"), Repo: repo,
			Issue:   &gogithub.Issue{Number: new(2), PullRequestLinks: &gogithub.PullRequestLinks{}},
			Comment: &gogithub.IssueComment{Body: new("lgtm, /nest apply later"), User: &gogithub.User{Login: new("writer")}}}},
		{"an event not handled", "star", gogithub.StarEvent{Action: new("created"), Repo: repo}},
	} {
		payload, err := json.Marshal(c.ev)
		if err != nil {
			t.Fatal(err)
		}
		gh := &fakeGitHub{}
		h := newHandlerBot(t, gh, func(cfg *Config) { cfg.CommitEmail = "nestbot@users.noreply.github.com" })
		if err := h.Run(testContext(t), store.Job{ID: "ignored", Event: c.event, Payload: payload}); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if len(gh.calls) != 0 {
			t.Errorf("%s: GitHub was asked %v, want nothing", c.name, gh.calls)
		}
	}
}
