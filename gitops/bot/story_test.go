package bot_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ducksnest/nestbot/gitops/bot"
	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/internal/logs/logstest"
	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab"
	labgithub "github.com/ducksnest/nestbot/lab/github"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/store"
)

// world is a lab with its GitHub, the DucksNest repository in it, and a
// bot acting as the lab's GitHub App.
type world struct {
	lab    *lab.Lab
	gh     *lab.GitHub
	repo   nestgh.Repo
	app    *nestgh.Client // the installation's client
	root   *nestgh.Client // the App's client
	state  string
	bot    *bot.Bot
	db     *store.DB
	log    *logstest.Log // what the bot and its GitHub client logged
	logger *slog.Logger
	// secrets must appear in no comment, check run, deployment, issue or log line.
	secrets []string
	// yaml is nest.yaml as the repository's first commit holds it.
	yaml string
}

// newWorld starts the lab with the example fleet; nestbot's age identity
// is one of the admins, so it signs with the CAs it creates.
func newWorld(t testing.TB, edit func(yaml string) string) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a lab")
	}
	fixtures.Package(t, "@octokit/webhooks-examples")
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	file := testkit.ExampleFleet(t, dir, id.Recipient().String())
	data, _ := os.ReadFile(file)
	yaml := string(data)
	if edit != nil {
		yaml = edit(yaml)
	}
	os.WriteFile(file, []byte(yaml), 0o644)
	f, err := nest.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{yaml: yaml}
	w.logger, w.log = logstest.New(t)
	l, err := lab.Up(lab.Options{Fleet: f, PendingDelay: -1, GitHub: &lab.GitHubOptions{FromDir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	w.lab, w.gh = l, l.GitHub
	w.repo = nestgh.Repo{Owner: w.gh.Owner, Name: w.gh.Repo}
	for _, kv := range l.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // the AWS SDK reads its endpoint and credentials from the process
	}
	t.Setenv("NEST_AGE_IDENTITY", id.String())
	_, oauthSecret := l.Tailnet.OAuthClient()
	w.secrets = []string{id.String(), l.AuthKey, oauthSecret, w.gh.Secret, w.gh.InstallationToken(), string(w.gh.App().PrivateKeyPEM)}

	app := w.gh.App()
	root, err := nestgh.New(nestgh.Options{BaseURL: w.gh.APIURL(), AppID: app.ID, PrivateKey: app.PrivateKeyPEM, Login: app.BotLogin,
		WriteSpacing: -1, Logger: w.logger})
	if err != nil {
		t.Fatal(err)
	}
	w.app = root.Installation(app.InstallationID)
	state := t.TempDir()
	if w.db, err = store.Open(filepath.Join(state, "nestbot.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.db.Close() })
	w.root, w.state = root, state
	w.bot = mustBot(t, w, nil)
	return w
}

// mustBot makes the world's bot, as the lab's GitHub App.
func mustBot(t testing.TB, w *world, hosts func(map[string]int)) *bot.Bot {
	t.Helper()
	b, err := bot.New(bot.Config{GitHub: w.root, WorkDir: filepath.Join(w.state, "work"),
		Fleet:  fleet.Options{Getenv: os.Getenv, Tailnet: fleet.TailnetOptions{StateDir: w.state, ControlURL: os.Getenv("NESTBOT_TS_CONTROL_URL")}, DB: w.db},
		Locker: w.db.Locks(), Artifacts: w.db.Artifacts(), Logger: w.logger, LockTTL: 30 * time.Second, ObserveHosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSecrets fails t when a secret appears in anything nestbot wrote to
// GitHub or to its log.
func (w *world) checkSecrets(t *testing.T) {
	t.Helper()
	var seen []string
	seen = append(seen, w.log.String())
	for n := 1; ; n++ {
		pr, err := w.gh.PullRequest(w.repo.Owner, w.repo.Name, n)
		if err != nil {
			break
		}
		cs, _ := w.gh.Comments(w.repo.Owner, w.repo.Name, pr.Number)
		for _, c := range cs {
			seen = append(seen, c.Body)
		}
		runs, _ := w.gh.CheckRuns(w.repo.Owner, w.repo.Name, pr.HeadSHA)
		for _, r := range runs {
			seen = append(seen, r.Title, r.Summary, r.Text)
			for _, a := range r.Annotations {
				seen = append(seen, a.Message, a.Title)
			}
		}
	}
	deps, _ := w.gh.Deployments(w.repo.Owner, w.repo.Name)
	for _, d := range deps {
		seen = append(seen, d.Description)
		for _, s := range d.Statuses {
			seen = append(seen, s.Description)
		}
	}
	issues, _ := w.gh.Issues(w.repo.Owner, w.repo.Name)
	for _, is := range issues {
		seen = append(seen, is.Title, is.Body)
	}
	all := strings.Join(seen, "\n")
	for _, s := range w.secrets {
		s = strings.TrimSpace(s)
		if len(s) >= 8 && strings.Contains(all, s) {
			t.Errorf("a secret (%.6s…) reached GitHub or the log", s)
		}
	}
}

func (w *world) checkViolations(t *testing.T) {
	t.Helper()
	for _, v := range w.gh.Violations() {
		t.Errorf("request not valid per GitHub's OpenAPI description: %s", v)
	}
}

// openPR commits files on a new branch and opens a pull request from it.
func (w *world) openPR(ctx context.Context, t testing.TB, branch string, files map[string][]byte) labgithub.PullRequest {
	t.Helper()
	if _, err := w.gh.Commit(ctx, w.repo.Owner, w.repo.Name, labgithub.Commit{Branch: branch, Message: "change " + branch, Files: files}); err != nil {
		t.Fatal(err)
	}
	pr, err := w.gh.OpenPR(w.repo.Owner, w.repo.Name, branch, labgithub.PROptions{Title: branch})
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

func (w *world) comments(t testing.TB, number int) []labgithub.Comment {
	t.Helper()
	cs, err := w.gh.Comments(w.repo.Owner, w.repo.Name, number)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func planComments(cs []labgithub.Comment) (n int) {
	for _, c := range cs {
		if strings.HasPrefix(c.Body, "<!-- nestbot:plan ") {
			n++
		}
	}
	return n
}

// run delivers ev to the bot as the server's worker would.
func (w *world) run(ctx context.Context, t testing.TB, ev labgithub.Event) error {
	t.Helper()
	return w.bot.Run(ctx, store.Job{ID: labgithub.NewDeliveryID(), Event: ev.Name, Payload: ev.Payload})
}

// TestPullRequestPlanMergeApply plays the story: a pull request gets one
// plan comment and a check run; a non-writer's command is refused; the
// merge applies everything — instance, tailnet, certificates committed
// back, every host rolled — as a deployment reported on the pull request;
// nestbot's own commit starts no second apply; afterwards there is no drift.
func TestPullRequestPlanMergeApply(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	owner, name := w.repo.Owner, w.repo.Name

	pr := w.openPR(ctx, t, "more-swap", map[string][]byte{"infra/nix/hosts/laptop-ultra/extra.nix": []byte("{ }\n")})
	ev, err := w.gh.PullRequestEvent(owner, name, pr.Number, "opened")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.run(ctx, t, ev); err != nil {
		t.Fatal(err)
	}
	// A second push to the pull request: the comment is edited, not posted anew.
	pushed, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "more-swap", Message: "more",
		Files: map[string][]byte{"infra/nix/hosts/laptop-ultra/extra.nix": []byte("{ swapDevices = [ ]; }\n")}})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ = w.gh.PullRequestEvent(owner, name, pr.Number, "synchronize")
	writes := w.gh.Writes()
	if err := w.run(ctx, t, ev); err != nil {
		t.Fatal(err)
	}
	if got := w.gh.Writes() - writes; got > 2 {
		t.Errorf("a plan made %d writes to GitHub, want at most 2 (the comment and the check run)", got)
	}
	pr.HeadSHA = pushed.After
	cs := w.comments(t, pr.Number)
	if planComments(cs) != 1 || !strings.Contains(cs[0].Body, "to create") {
		t.Fatalf("want one plan comment that creates the fleet, got %d comments:\n%v", len(cs), cs)
	}
	runs, _ := w.gh.CheckRuns(owner, name, pr.HeadSHA)
	if len(runs) != 1 || runs[0].Name != bot.CheckPlan || runs[0].Conclusion != "neutral" {
		t.Fatalf("check runs on the head: %+v, want one nest/plan, neutral (changes)", runs)
	}

	// Someone without write access asks to apply: refused, with a reply.
	w.gh.AddUser("mallory")
	c, err := w.gh.AddComment(owner, name, pr.Number, "mallory", "/nest apply")
	if err != nil {
		t.Fatal(err)
	}
	ev, _ = w.gh.IssueCommentEvent(owner, name, c.ID, "created")
	if err := w.run(ctx, t, ev); err != nil {
		t.Fatal(err)
	}
	cs = w.comments(t, pr.Number)
	if last := cs[len(cs)-1]; !strings.Contains(last.Body, "needs write access") {
		t.Errorf("mallory's /nest apply got no refusal; last comment: %q", last.Body)
	}
	if reacted(cs, c.ID, "eyes") == false {
		t.Errorf("no eyes reaction on the command")
	}

	// The merge applies.
	merged, err := w.gh.Merge(ctx, owner, name, pr.Number, owner)
	if err != nil {
		t.Fatal(err)
	}
	ev, err = w.gh.PushEvent(merged)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.run(ctx, t, ev); err != nil {
		t.Fatalf("apply after merge: %v\n%s", err, w.log.String())
	}
	if n := len(w.lab.EC2.Instances()); n != 1 {
		t.Errorf("%d instances in EC2 after the apply, want 1", n)
	}
	head, err := w.gh.Branch(owner, name, "main")
	if err != nil {
		t.Fatal(err)
	}
	if head == merged.After {
		t.Fatalf("main is still at the merge %s: the certificates were not committed back", merged.After[:7])
	}
	for _, h := range []string{"ec2-controlplane", "laptop-firebat", "laptop-ultra"} {
		lh, ok := w.lab.Host(h)
		if !ok {
			t.Fatalf("lab has no host %s", h)
		}
		if st, err := lh.State(); err != nil || st.Commit() != head {
			t.Errorf("%s runs %q (%v), want the certificates' commit %s", h, st.Commit(), err, head[:7])
		}
	}
	deps, _ := w.gh.Deployments(owner, name)
	if len(deps) != 1 || deps[0].Environment != "ducksnest" || lastState(deps[0]) != "success" {
		t.Fatalf("deployments: %+v, want one to ducksnest ending in success", deps)
	}
	cs = w.comments(t, pr.Number)
	if last := cs[len(cs)-1]; !strings.Contains(last.Body, "nestbot applied") || !strings.Contains(last.Body, "laptop-ultra") {
		t.Errorf("the merged pull request was not told the apply's result; last comment:\n%s", last.Body)
	}

	// nestbot's own push of the certificates starts no apply.
	ev, err = w.gh.PushEvent(labgithub.Pushed{Owner: owner, Repo: name, Ref: "refs/heads/main", Before: merged.After, After: head, Pusher: w.gh.App().BotLogin})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.run(ctx, t, ev); err != nil {
		t.Fatal(err)
	}
	if deps, _ := w.gh.Deployments(owner, name); len(deps) != 1 {
		t.Errorf("nestbot's own commit started another apply: %d deployments", len(deps))
	}

	// Nothing drifted, and every host is on main.
	var states map[string]int
	w.bot = mustBot(t, w, func(m map[string]int) { states = m })
	res, err := w.bot.Drift(ctx, w.app, bot.DriftRequest{Repo: w.repo, CloneURL: w.gh.CloneURL(owner, name), Branch: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Drifted {
		t.Errorf("drift right after the apply:\n%s", res.Plan.Summary())
	}
	if states["current"] != 3 || states["behind"]+states["unreachable"]+states["absent"] != 0 {
		t.Errorf("host states after the apply: %v, want 3 current", states)
	}
	w.checkSecrets(t)
	w.checkViolations(t)
}

func reacted(cs []labgithub.Comment, id int64, content string) bool {
	for _, c := range cs {
		if c.ID != id {
			continue
		}
		for _, r := range c.Reactions {
			if r.Content == content {
				return true
			}
		}
	}
	return false
}

func lastState(d labgithub.Deployment) string {
	if len(d.Statuses) == 0 {
		return ""
	}
	return d.Statuses[len(d.Statuses)-1].State
}
