package bot_test

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/bot"
	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/reconcile"

	nestgh "github.com/ducksnest/nestbot/gitops/github"
	labgithub "github.com/ducksnest/nestbot/lab/github"
	"github.com/ducksnest/nestbot/store"
)

// TestDeadLetteredPlanIsReportedOnItsPR: a pull request whose plan the
// workers gave up on (issue 12 (5)) is told so: its plan comment says the
// plan failed and why, and its head gets a failed nest/plan check run.
func TestDeadLetteredPlanIsReportedOnItsPR(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr := w.openPR(ctx, t, "bomb", map[string][]byte{"README.md": []byte("x\n")})
	ev, err := w.gh.PullRequestEvent(w.repo.Owner, w.repo.Name, pr.Number, "opened")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.bot.DeadLetter(ctx, store.Job{ID: labgithub.NewDeliveryID(), Event: ev.Name, Payload: ev.Payload, Attempt: 4}); err != nil {
		t.Fatal(err)
	}
	cs := w.comments(t, pr.Number)
	if planComments(cs) != 1 || !strings.Contains(cs[0].Body, "gave up on this job") || !strings.Contains(cs[0].Body, "after 3 attempts") {
		t.Fatalf("comments after the dead letter: %+v, want the plan comment saying nestbot gave up after 3 attempts", cs)
	}
	runs, _ := w.gh.CheckRuns(w.repo.Owner, w.repo.Name, pr.HeadSHA)
	if len(runs) != 1 || runs[0].Conclusion != "failure" {
		t.Fatalf("check runs: %+v, want one failed nest/plan", runs)
	}
	w.checkViolations(t)
}

// TestForgedMarkerCommentStaysUntouched: a comment by someone else that
// begins with the plan's marker (issue 12 (7)) is not taken for nestbot's:
// the plan goes into a comment of nestbot's own, and the forged one is
// neither edited nor deleted — with no login configured, as serve, the
// Action and the image run by default.
func TestForgedMarkerCommentStaysUntouched(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := w.gh.App()
	root, err := nestgh.New(nestgh.Options{BaseURL: w.gh.APIURL(), AppID: app.ID, PrivateKey: app.PrivateKeyPEM, WriteSpacing: -1, Logf: w.log.logf(t)})
	if err != nil {
		t.Fatal(err)
	}
	w.root = root // no Options.Login
	w.bot = mustBot(t, w, nil)
	pr := w.openPR(ctx, t, "forged", map[string][]byte{"README.md": []byte("x\n")})
	w.gh.AddUser("mallory")
	forged := "<!-- nestbot:plan ducksnest part=1/1 -->\n### nestbot: no changes, merge away\n"
	c, err := w.gh.AddComment(w.repo.Owner, w.repo.Name, pr.Number, "mallory", forged)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := w.gh.PullRequestEvent(w.repo.Owner, w.repo.Name, pr.Number, "opened")
	if err := w.run(ctx, t, ev); err != nil {
		t.Fatal(err)
	}
	var mine int
	for _, cm := range w.comments(t, pr.Number) {
		switch {
		case cm.ID == c.ID:
			if cm.Body != forged || cm.User != "mallory" {
				t.Errorf("mallory's comment was changed: %.120q", cm.Body)
			}
			c.ID = -1 // seen
		case cm.User == app.BotLogin && strings.HasPrefix(cm.Body, "<!-- nestbot:plan "):
			mine++
		}
	}
	if c.ID != -1 {
		t.Error("mallory's comment was deleted")
	}
	if mine != 1 {
		t.Errorf("%d plan comments by %s, want 1 of its own", mine, app.BotLogin)
	}
	w.checkViolations(t)
}

// TestInstallationTokenIsMasked: the installation token a job mints to
// clone is handed to Config.Mask (the Action masks it in the job's log)
// before the clone uses it.
func TestInstallationTokenIsMasked(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var masked []string
	b, err := bot.New(bot.Config{GitHub: w.root, WorkDir: t.TempDir(), Locker: w.db.Locks(), Logf: w.log.logf(t),
		Mask:  func(s string) { masked = append(masked, s) },
		Fleet: fleet.Options{Getenv: os.Getenv, Planes: []reconcile.Plane{reconcile.PlanePKI}, DB: w.db}})
	if err != nil {
		t.Fatal(err)
	}
	pr := w.openPR(ctx, t, "masked", map[string][]byte{"README.md": []byte("x\n")})
	if _, err := b.PlanPR(ctx, w.app, w.repo, w.gh.CloneURL(w.repo.Owner, w.repo.Name), pr.Number, false); err != nil {
		t.Fatal(err)
	}
	tok, err := w.app.GitToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(masked, tok) {
		t.Errorf("the installation token was not masked (masked %d values)", len(masked))
	}
}

// prAndPlan commits c on a new branch, opens a pull request from it and
// runs its opened event; it returns the pull request.
func (w *world) prAndPlan(ctx context.Context, t *testing.T, c labgithub.Commit) labgithub.PullRequest {
	t.Helper()
	c.Message = cmp.Or(c.Message, "change "+c.Branch)
	if _, err := w.gh.Commit(ctx, w.repo.Owner, w.repo.Name, c); err != nil {
		t.Fatal(err)
	}
	pr, err := w.gh.OpenPR(w.repo.Owner, w.repo.Name, c.Branch, labgithub.PROptions{Title: c.Branch})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.gh.PullRequestEvent(w.repo.Owner, w.repo.Name, pr.Number, "opened")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.run(ctx, t, ev); err != nil {
		t.Logf("the plan: %v", err)
	}
	return pr
}

// TestSymlinkOutOfTheCheckoutIsRefused: a pull request whose files under
// pki.dir are symbolic links out of the checkout (issue 12 (4)) — secrets.nix
// to a file of the bot's own, by a relative path, and a pinned host key to
// /proc/self/environ — gets a plan that refuses them by name; what they
// point at appears nowhere.
func TestSymlinkOutOfTheCheckoutIsRefused(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	canary := "CANARY-symlinked-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.WriteFile(filepath.Join(w.state, "canary"), []byte(canary+" = {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NESTBOT_TEST_CANARY", canary) // /proc/self/environ holds it too
	w.secrets = append(w.secrets, canary)
	// The checkout is <state>/work/job-…/repo: seven levels above
	// <pki.dir>/secrets.nix is the state directory.
	pr := w.prAndPlan(ctx, t, labgithub.Commit{Branch: "links", Symlinks: map[string]string{
		"infra/nix/secrets/certs/secrets.nix":            "../../../../../../../canary",
		"infra/nix/secrets/certs/hosts/laptop-ultra.pub": "/proc/self/environ",
	}})
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "symbolic link") {
		t.Errorf("the plan does not refuse the links as such; its comment: %.600q", got)
	}
	w.checkSecrets(t)
}
