package bot_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"
	"tailscale.com/tstest/integration/testcontrol"

	"github.com/ducksnest/nestbot/gitops/bot"
	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/gitops/git"
	"github.com/ducksnest/nestbot/reconcile"

	nestgh "github.com/ducksnest/nestbot/gitops/github"
	labgithub "github.com/ducksnest/nestbot/lab/github"
	"github.com/ducksnest/nestbot/lab/host"
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
	root, err := nestgh.New(nestgh.Options{BaseURL: w.gh.APIURL(), AppID: app.ID, PrivateKey: app.PrivateKeyPEM, WriteSpacing: -1, Logger: w.logger})
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
	b, err := bot.New(bot.Config{GitHub: w.root, WorkDir: t.TempDir(), Locker: w.db.Locks(), Logger: w.logger,
		Mask:  func(s string) { masked = append(masked, s) },
		Fleet: fleet.Options{Getenv: os.Getenv, Planes: []reconcile.Plane{reconcile.PlanePKI}, DB: w.db}})
	if err != nil {
		t.Fatal(err)
	}
	pr := w.openPR(ctx, t, "masked", map[string][]byte{"README.md": []byte("x\n")})
	if _, err := b.PlanPR(ctx, w.app, bot.PlanRequest{Repo: w.repo, CloneURL: w.gh.CloneURL(w.repo.Owner, w.repo.Name), Number: pr.Number}); err != nil {
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

// attackerControl is a tailnet control server an attacker runs: tailscale's
// testcontrol, which lets in only a node that registers with canary as its
// auth key, behind a handler that counts every request it gets.
func attackerControl(t *testing.T, w *world, canary string) (url string, requests *atomic.Int64) {
	t.Helper()
	ctl := &testcontrol.Server{DERPMap: w.lab.Tailnet.DERPMap(), RequireAuthKey: canary, Logf: t.Logf}
	requests = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		ctl.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, requests
}

// TestPRCannotRedirectCredentials: a pull request whose nest.yaml points
// the tailnet at an attacker's control server and names another secret as
// the auth key (issue 12 (1)) is planned with the default branch's values:
// the attacker's server gets no request at all, the canary appears
// nowhere, the plan says the change takes effect after merge, and
// /nest apply refuses the pull request.
func TestPRCannotRedirectCredentials(t *testing.T) {
	w := newWorld(t, func(yaml string) string { return yaml + "github:\n  apply: comment\n" })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner, name := w.repo.Owner, w.repo.Name
	canary := "tskey-auth-CANARY" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Setenv("NESTBOT_TEST_CANARY", canary)
	w.secrets = append(w.secrets, canary)
	attacker, requests := attackerControl(t, w, canary)

	// The default branch names the lab's control server itself (no
	// operator flag overrides it here), as a Headscale user's would.
	mainYAML := w.yaml
	legit := strings.Replace(string(mainYAML), "  auth_key: {env: TS_AUTHKEY}\n", "  auth_key: {env: TS_AUTHKEY}\n  control_url: "+os.Getenv("NESTBOT_TS_CONTROL_URL")+"\n", 1)
	if legit == string(mainYAML) {
		t.Fatal("the example's tailnet.auth_key line moved; this test edits it")
	}
	if _, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "main", Message: "name the control server", Files: map[string][]byte{"nest.yaml": []byte(legit)}}); err != nil {
		t.Fatal(err)
	}
	b, err := bot.New(bot.Config{GitHub: w.root, WorkDir: filepath.Join(w.state, "work"), Logger: w.logger, LockTTL: 30 * time.Second,
		Fleet:  fleet.Options{Getenv: os.Getenv, Tailnet: fleet.TailnetOptions{StateDir: w.state}, DB: w.db},
		Locker: w.db.Locks(), Artifacts: w.db.Artifacts()})
	if err != nil {
		t.Fatal(err)
	}
	w.bot = b

	evil := strings.Replace(legit, "  auth_key: {env: TS_AUTHKEY}\n  control_url: "+os.Getenv("NESTBOT_TS_CONTROL_URL")+"\n",
		"  auth_key: {env: NESTBOT_TEST_CANARY}\n  control_url: "+attacker+"\n", 1)
	pr := w.prAndPlan(ctx, t, labgithub.Commit{Branch: "faster-tailnet", Files: map[string][]byte{"nest.yaml": []byte(evil)}})
	if n := requests.Load(); n != 0 {
		t.Errorf("the attacker's control server got %d requests from the plan; want none", n)
	}
	plan := w.lastComment(t, pr.Number)
	if !strings.Contains(plan, "takes effect after merge") || !strings.Contains(plan, "tailnet.control_url") || !strings.Contains(plan, "tailnet.auth_key") {
		t.Errorf("the plan does not say the tailnet change takes effect after merge:\n%.3000s", plan)
	}

	// Approved by a writer, planned: /nest apply still refuses it.
	w.gh.AddUser("reviewer")
	w.gh.SetPermission(owner, name, "reviewer", "write")
	if _, err := w.gh.AddReview(owner, name, pr.Number, "reviewer", "APPROVED", "lgtm"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.comment(ctx, t, pr.Number, owner, "/nest apply"); err != nil {
		t.Logf("/nest apply: %v", err)
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "take effect after merge") {
		t.Errorf("/nest apply of a pull request that redirects the tailnet got %q", got)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the attacker's control server got %d requests; want none", n)
	}
	if n := len(w.lab.EC2.Instances()); n != 0 {
		t.Errorf("%d instances: the pull request was applied", n)
	}
	w.checkSecrets(t)
}

// TestBaseBranchPolicyDoesNotApply: a writer who opens a pull request into
// a branch of their own whose nest.yaml enables /nest apply (issue 12 (2))
// applies nothing: the policy is the default branch's, and /nest apply
// takes only pull requests into the default branch.
func TestBaseBranchPolicyDoesNotApply(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner, name := w.repo.Owner, w.repo.Name
	mainYAML := w.yaml
	policy := string(mainYAML) + "github:\n  apply: comment\n  require: [mergeable]\n"
	if _, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "evil-base", Message: "my own rules", Files: map[string][]byte{"nest.yaml": []byte(policy)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "evil-head", From: "evil-base", Message: "ship it", Files: map[string][]byte{"README.md": []byte("x\n")}}); err != nil {
		t.Fatal(err)
	}
	pr, err := w.gh.OpenPR(owner, name, "evil-head", labgithub.PROptions{Base: "evil-base", Title: "ship it"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.comment(ctx, t, pr.Number, owner, "/nest plan"); err != nil {
		t.Logf("/nest plan: %v", err)
	}
	if _, err := w.comment(ctx, t, pr.Number, owner, "/nest apply"); err != nil {
		t.Logf("/nest apply: %v", err)
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "not applied") || !strings.Contains(got, "default branch") {
		t.Errorf("/nest apply into a branch with its own policy got %q", got)
	}
	if n := len(w.lab.EC2.Instances()); n != 0 {
		t.Errorf("%d instances: the pull request into evil-base was applied", n)
	}
	if deps, _ := w.gh.Deployments(owner, name); len(deps) != 0 {
		t.Errorf("%d deployments, want none", len(deps))
	}
}

// TestReadOnlyApprovalDoesNotCount: with github.apply: comment, an
// approval by someone with read access, or by the pull request's author,
// is no approval (issue 12 (3)); and a pull request GitHub holds back for
// branch protection (mergeable_state blocked) is not mergeable.
func TestReadOnlyApprovalDoesNotCount(t *testing.T) {
	w := newWorld(t, func(yaml string) string { return yaml + "github:\n  apply: comment\n" })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner, name := w.repo.Owner, w.repo.Name
	w.gh.AddUser("alice")
	w.gh.SetPermission(owner, name, "alice", "write")
	w.gh.AddUser("rita")
	w.gh.SetPermission(owner, name, "rita", "read")
	if _, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "grow", Author: "alice", Message: "grow", Files: map[string][]byte{"README.md": []byte("x\n")}}); err != nil {
		t.Fatal(err)
	}
	pr, err := w.gh.OpenPR(owner, name, "grow", labgithub.PROptions{User: "alice", Title: "grow"})
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"rita", "alice"} {
		if _, err := w.gh.AddReview(owner, name, pr.Number, who, "APPROVED", "lgtm"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.comment(ctx, t, pr.Number, "alice", "/nest plan"); err != nil {
		t.Logf("/nest plan: %v", err)
	}
	if _, err := w.comment(ctx, t, pr.Number, "alice", "/nest apply"); err != nil {
		t.Logf("/nest apply: %v", err)
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "approving review") {
		t.Errorf("/nest apply approved only by a reader and the author got %q", got)
	}
	if n := len(w.lab.EC2.Instances()); n != 0 {
		t.Fatalf("%d instances: a reader's approval counted", n)
	}

	// A writer approves, but branch protection holds it back.
	w.gh.AddUser("bob")
	w.gh.SetPermission(owner, name, "bob", "write")
	if _, err := w.gh.AddReview(owner, name, pr.Number, "bob", "APPROVED", "lgtm"); err != nil {
		t.Fatal(err)
	}
	if err := w.gh.SetBlocked(owner, name, pr.Number, true); err != nil {
		t.Fatal(err)
	}
	if _, err := w.comment(ctx, t, pr.Number, "alice", "/nest apply"); err != nil {
		t.Logf("/nest apply: %v", err)
	}
	if got := w.lastComment(t, pr.Number); !strings.Contains(got, "blocked") {
		t.Errorf("/nest apply of a pull request branch protection blocks got %q", got)
	}
	if n := len(w.lab.EC2.Instances()); n != 0 {
		t.Errorf("%d instances: a blocked pull request was applied", n)
	}
	w.checkViolations(t)
}

// TestImpersonatingNodeGetsNoKeysAndNoRollout: a compromised fleet member
// holding the shared auth key registers a node named like the host the
// next apply creates (issue 12 (6)). The apply takes for that host only the
// node that joins after it launched the instance: the impersonator's SSH key
// is not pinned, no private key is encrypted to it, it is not rolled out
// to, and the node pinned for the host is the instance's.
func TestImpersonatingNodeGetsNoKeysAndNoRollout(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	owner, name := w.repo.Owner, w.repo.Name
	// The next host has no pinned key yet, as a host about to be created has not.
	if _, err := w.gh.Commit(ctx, owner, name, labgithub.Commit{Branch: "main", Message: "unpin",
		Remove: []string{"infra/nix/secrets/certs/hosts/ec2-controlplane.pub"}}); err != nil {
		t.Fatal(err)
	}
	_, attackerKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := host.Boot(ctx, w.lab.Tailnet, host.Config{Name: "ec2-controlplane", Root: t.TempDir(), HostKey: attackerKey, Tags: []string{"tag:nest"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { imp.Close() })
	before, err := imp.State()
	if err != nil {
		t.Fatal(err)
	}

	head, err := w.gh.Branch(owner, name, "main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.bot.ApplyPush(ctx, w.app, bot.Push{Repo: w.repo, CloneURL: w.gh.CloneURL(owner, name), Ref: "refs/heads/main", DefaultBranch: "main", SHA: head, Pusher: owner}); err != nil {
		t.Errorf("the apply: %v", err)
	}

	// What the apply committed.
	tok, err := w.app.GitToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := git.Clone(ctx, w.gh.CloneURL(owner, name), filepath.Join(t.TempDir(), "repo"), git.Options{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.Tree("HEAD")
	if err != nil {
		t.Fatal(err)
	}
	certs := "infra/nix/secrets/certs"
	attackerPub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(mustSSHPub(t, attackerKey.Public()))))
	if pinned, _ := fs.ReadFile(tree, certs+"/hosts/ec2-controlplane.pub"); strings.Contains(string(pinned), strings.Fields(attackerPub)[1]) {
		t.Errorf("the impersonator's SSH key was pinned for ec2-controlplane")
	}
	if node, err := fs.ReadFile(tree, certs+"/hosts/ec2-controlplane.node"); err != nil || strings.TrimSpace(string(node)) == impNodeID(t, imp) {
		t.Errorf("the node pinned for ec2-controlplane: %q, %v; want the instance's, not the impersonator's %s", node, err, impNodeID(t, imp))
	}
	id, err := agessh.NewEd25519Identity(attackerKey)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := fs.Glob(tree, certs+"/derived/ec2-controlplane/*.key.age")
	if len(keys) == 0 {
		t.Fatal("no keys were issued for ec2-controlplane: the test proves nothing")
	}
	for _, k := range keys {
		data, _ := fs.ReadFile(tree, k)
		if _, err := age.Decrypt(armor.NewReader(bytes.NewReader(data)), id); err == nil {
			t.Errorf("the impersonator can decrypt %s", k)
		}
	}
	if after, err := imp.State(); err != nil || after.Commit() != before.Commit() || after.Generation != before.Generation {
		t.Errorf("the impersonator was rolled out to: %+v, was %+v (%v)", after, before, err)
	}
	main, _ := w.gh.Branch(owner, name, "main")
	if real, ok := w.lab.Host("ec2-controlplane"); !ok {
		t.Error("the instance's host did not boot")
	} else if st, err := real.State(); err != nil || st.Commit() != main {
		t.Errorf("the instance's host runs %q (%v), want main's %s: the real host was not rolled out to", st.Commit(), err, fleet.ShortRev(main))
	}
	w.checkSecrets(t)
}

func mustSSHPub(t *testing.T, k crypto.PublicKey) ssh.PublicKey {
	t.Helper()
	pub, err := ssh.NewPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// impNodeID is the node id a lab host's tailnet node has.
func impNodeID(t *testing.T, h *host.Host) string {
	t.Helper()
	id := h.NodeID()
	if id == "" {
		t.Fatalf("host %s has no tailnet node", h.Name())
	}
	return id
}
