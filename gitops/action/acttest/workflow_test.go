package acttest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab"
	labgithub "github.com/ducksnest/nestbot/lab/github"
	"github.com/ducksnest/nestbot/nest"
)

const owner, repoName = "ducksnest", "infra"

// world is the lab with the infra repository in its GitHub.
type world struct {
	lab      *lab.Lab
	gh       *labgithub.Server
	identity *age.X25519Identity // nestbot's, one of pki.admins
	act      *actRunner
	log      *lines
	tokens   []string // the GITHUB_TOKENs the runs were given
	releases string   // the loopback github.com the action installs nestbot@v1 from
}

// newWorld starts the lab seeded with examples/ducksnest, and its GitHub
// holding that example as ducksnest/infra with nestbot's age identity
// added to pki.admins.
func newWorld(t *testing.T, act *actRunner) *world {
	t.Helper()
	examples := fixtures.Package(t, "@octokit/webhooks-examples")
	w := &world{act: act, log: &lines{}}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	w.identity = id
	dir := t.TempDir()
	testkit.ExampleFleet(t, dir, id.Recipient().String())
	f, err := nest.Load(filepath.Join(dir, "nest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w.lab, err = lab.Up(lab.Options{Fleet: f, PendingDelay: -1, Logger: slog.New(slog.NewTextHandler(w.log, nil)),
		GitHub: &lab.GitHubOptions{Owner: owner, Repo: repoName, FromDir: dir, Examples: examples}})
	if err != nil {
		t.Fatal(err)
	}
	w.gh = w.lab.GitHub.Server
	t.Cleanup(func() {
		if v := w.gh.Violations(); len(v) > 0 {
			t.Errorf("requests GitHub's OpenAPI description does not allow:\n%s", strings.Join(v, "\n"))
		}
		if t.Failed() {
			t.Logf("the lab's log:\n%s", w.log.String())
		}
		w.lab.Close()
	})
	return w
}

// actOptions are the settings of an act run against the world: the lab's
// endpoints in the environment (as aws-actions/configure-aws-credentials
// and the runner would set them), its keys as the repository's secrets,
// its control server as a repository variable, and a workspace checked out
// at sha as actions/checkout would.
func (w *world) actOptions(ctx context.Context, t *testing.T, ev labgithub.Event, sha string) actOptions {
	t.Helper()
	env := map[string]string{"GITHUB_REPOSITORY": owner + "/" + repoName}
	secrets := map[string]string{}
	for _, kv := range w.lab.Env() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "TS_AUTHKEY" || k == "NESTBOT_TS_AUTHKEY" || strings.HasPrefix(k, "TAILSCALE_OAUTH_"):
			secrets[k] = v // the example reads them from secrets
			if k == "NESTBOT_TS_AUTHKEY" {
				secrets["NESTBOT_TS_PLAN_AUTHKEY"] = v // the plan job's own (the lab has one tailnet key)
			}
		case strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "TS_") || k == "TAILSCALE_BASE_URL",
			k == "GITHUB_API_URL" || k == "GITHUB_SERVER_URL" || k == "GITHUB_REPOSITORY":
			env[k] = v // the runner's, or AWS credentials as configure-aws-credentials sets them
		}
		// The rest is for nestbot serve (the App, the webhook secret), or
		// reaches the job as a variable (NEST_TS_CONTROL_URL, below).
	}
	for _, k := range []string{"TS_AUTHKEY", "GITHUB_API_URL", "AWS_ENDPOINT_URL"} {
		if secrets[k] == "" && env[k] == "" {
			t.Fatalf("the lab's environment has no %s", k)
		}
	}
	ws := filepath.Join(t.TempDir(), repoName)
	gitDir, err := w.gh.GitDir(owner, repoName)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"clone", "-q", gitDir, ws}, {"-C", ws, "checkout", "-q", sha}} {
		if out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	token := w.gh.ActionsToken()
	w.tokens = append(w.tokens, token)
	secrets["GITHUB_TOKEN"] = token
	secrets["NEST_AGE_IDENTITY"] = w.identity.String()
	return actOptions{
		Event:     ev.Name,
		Payload:   ev.Payload,
		Workspace: ws,
		Env:       w.withReleases(env),
		Secrets:   secrets,
		Vars:      map[string]string{"NEST_TS_CONTROL_URL": w.lab.Tailnet.ControlURL()},
	}
}

// runAct runs the example workflow and fails the test, with act's log, when
// act fails or another job than want ran.
func (w *world) runAct(ctx context.Context, t *testing.T, o actOptions, want string) *actRun {
	t.Helper()
	r := w.act.run(ctx, t, o)
	t.Logf("act %s: %s", o.Event, r.Took.Round(100*time.Millisecond))
	if r.Err != nil || len(r.Jobs) != 1 || r.Jobs[want] != "success" {
		t.Fatalf("act %s: %v; jobs %v, want only %s to run and succeed\n%s", o.Event, r.Err, r.Jobs, want, r.Log)
	}
	w.noSecrets(t, "act's log", string(r.Raw))
	w.noSecrets(t, "the step summary", r.Summary)
	return r
}

// withReleases points the action at the loopback releases, through the
// job's environment (NESTBOT_RELEASES_URL), as a self-hosted runner's
// .env would: the example workflow names no releases-url.
func (w *world) withReleases(env map[string]string) map[string]string {
	if w.releases != "" {
		env["NESTBOT_RELEASES_URL"] = w.releases
	}
	return env
}

// noSecrets fails the test when text holds one of the world's secrets.
func (w *world) noSecrets(t *testing.T, where, text string) {
	t.Helper()
	_, oauthSecret := w.lab.Tailnet.OAuthClient()
	secrets := map[string]string{"the tailnet auth key": w.lab.AuthKey, "nestbot's age identity": w.identity.String(),
		"the Tailscale OAuth client's secret": oauthSecret}
	for i, tok := range w.tokens {
		secrets[fmt.Sprintf("GITHUB_TOKEN %d", i+1)] = tok
	}
	for name, secret := range secrets {
		if secret != "" && strings.Contains(text, secret) {
			t.Errorf("%s holds %s", where, name)
		}
	}
}

// TestExampleWorkflowPlansAPullRequestThenAppliesItsMerge runs
// examples/workflows/nest.yml under act, as GitHub would run it for the
// infra repository: a pull request gets its plan (the step summary, the
// outputs, one sticky comment and a nest/plan check run); a /nest plan
// comment plans it again; its merge's push applies (the instance
// is created in the lab's EC2, the deployment succeeds, the pull request is
// told); and the drift check after it finds nothing to do.
func TestExampleWorkflowPlansAPullRequestThenAppliesItsMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("runs act and the lab")
	}
	fixtures.Require(t, "git")
	act := newActRunner(t, fixtures.Require(t, "act"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	w := newWorld(t, act)
	// nestbot@v1 is installed from the snapshot release, as a user's @v1 is.
	s := sharedSnapshot(ctx, t)
	rs := startReleaseServer(ctx, t, s)
	rs.setRelease("v1.2.3", s.Assets)
	w.releases = rs.URL

	// A pull request makes the control plane bigger.
	main, err := w.gh.Branch(owner, repoName, "main")
	if err != nil {
		t.Fatal(err)
	}
	gitDir, _ := w.gh.GitDir(owner, repoName)
	yaml, err := exec.CommandContext(ctx, "git", "--git-dir", gitDir, "show", main+":nest.yaml").Output()
	if err != nil {
		t.Fatal(err)
	}
	bigger := strings.Replace(string(yaml), "instance_type: t3.medium", "instance_type: t3.large", 1)
	if bigger == string(yaml) {
		t.Fatal("examples/ducksnest/nest.yaml has no t3.medium instance to change")
	}
	if _, err := w.gh.Commit(ctx, owner, repoName, labgithub.Commit{Branch: "bigger-controlplane", Message: "ec2-controlplane: t3.large",
		Files: map[string][]byte{"nest.yaml": []byte(bigger)}}); err != nil {
		t.Fatal(err)
	}
	pr, err := w.gh.OpenPR(owner, repoName, "bigger-controlplane", labgithub.PROptions{Title: "A bigger control plane"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.gh.PullRequestEvent(owner, repoName, pr.Number, "opened")
	if err != nil {
		t.Fatal(err)
	}
	r := w.runAct(ctx, t, w.actOptions(ctx, t, ev, pr.HeadSHA), "plan")
	if !strings.Contains(r.Log, "Installing nestbot v1.2.3 (nestbot_"+hostTarget+".tar.gz)") || !strings.Contains(r.Log, "nestbot "+s.Version+"\n") {
		t.Errorf("the job did not install the release @v1 names:\n%s", r.Log)
	}
	if r.Outputs["changes"] != "true" || r.Outputs["result"] != "changes" {
		t.Errorf("outputs changes=%q result=%q, want true and changes\n%s", r.Outputs["changes"], r.Outputs["result"], r.Log)
	}
	var plan map[string]any
	if err := json.Unmarshal([]byte(r.Outputs["plan-json"]), &plan); err != nil {
		t.Errorf("output plan-json is not JSON: %v\n%q", err, r.Outputs["plan-json"])
	}
	if !strings.Contains(r.Summary, "ec2-controlplane") || !strings.Contains(r.Summary, "t3.large") {
		t.Errorf("the step summary does not show the plan to create ec2-controlplane (t3.large):\n%s", r.Summary)
	}
	comments, err := w.gh.Comments(owner, repoName, pr.Number)
	if err != nil {
		t.Fatal(err)
	}
	if len(comments) != 1 || !strings.Contains(comments[0].Body, "<!-- nestbot:plan ") || !strings.Contains(comments[0].Body, "t3.large") {
		t.Errorf("pull request #%d has %d comments, want one plan comment showing t3.large: %+v", pr.Number, len(comments), comments)
	} else {
		w.noSecrets(t, "the plan comment", comments[0].Body)
		if comments[0].User != "github-actions[bot]" {
			t.Errorf("the plan comment is by %s, want github-actions[bot] (the job's GITHUB_TOKEN)", comments[0].User)
		}
	}
	runs, err := w.gh.CheckRuns(owner, repoName, pr.HeadSHA)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Name != "nest/plan" || runs[0].Status != "completed" {
		t.Errorf("check runs on the head %.7s: %+v, want one completed nest/plan", pr.HeadSHA, runs)
	}

	// A /nest plan comment plans again: the sticky comment stays one.
	cmd, err := w.gh.AddComment(owner, repoName, pr.Number, owner, "/nest plan")
	if err != nil {
		t.Fatal(err)
	}
	if ev, err = w.gh.IssueCommentEvent(owner, repoName, cmd.ID, "created"); err != nil {
		t.Fatal(err)
	}
	w.runAct(ctx, t, w.actOptions(ctx, t, ev, pr.HeadSHA), "command")
	if comments, err = w.gh.Comments(owner, repoName, pr.Number); err != nil {
		t.Fatal(err)
	}
	plans, acked := 0, false
	for _, c := range comments {
		if strings.Contains(c.Body, "<!-- nestbot:plan ") {
			plans++
		}
		for _, re := range c.Reactions {
			acked = acked || (c.ID == cmd.ID && re.Content == "eyes" && re.User == "github-actions[bot]")
		}
	}
	if plans != 1 || !acked {
		t.Errorf("after /nest plan: %d plan comments (want 1), command acknowledged with eyes: %t; comments: %+v", plans, acked, comments)
	}

	// The merge's push applies it.
	pushed, err := w.gh.Merge(ctx, owner, repoName, pr.Number, owner)
	if err != nil {
		t.Fatal(err)
	}
	ev, err = w.gh.PushEvent(pushed)
	if err != nil {
		t.Fatal(err)
	}
	r = w.runAct(ctx, t, w.actOptions(ctx, t, ev, pushed.After), "fleet")
	if r.Outputs["result"] != "applied" {
		t.Errorf("output result=%q after the push, want applied\n%s", r.Outputs["result"], r.Log)
	}
	var created []string
	for _, in := range w.lab.EC2.Instances() {
		if in.State != "terminated" {
			created = append(created, in.Tags["Name"]+" "+in.InstanceType+" "+in.State)
		}
	}
	if len(created) != 1 || !strings.HasPrefix(created[0], "ec2-controlplane t3.large ") {
		t.Errorf("instances in the lab's EC2 after the apply: %q, want ec2-controlplane (t3.large)", created)
	}
	if _, ok := w.lab.Host("ec2-controlplane"); !ok {
		t.Error("ec2-controlplane did not boot in the lab")
	}
	deps, err := w.gh.Deployments(owner, repoName)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) != 1 || deps[0].SHA != pushed.After || len(deps[0].Statuses) == 0 || deps[0].Statuses[len(deps[0].Statuses)-1].State != "success" {
		t.Errorf("deployments after the apply: %+v, want one of %.7s ending in success", deps, pushed.After)
	}

	if comments, err = w.gh.Comments(owner, repoName, pr.Number); err != nil {
		t.Fatal(err)
	}
	if last := comments[len(comments)-1]; !strings.Contains(last.Body, "nestbot applied") {
		t.Errorf("the merged pull request was not told of the apply; its last comment:\n%s", last.Body)
	}

	// Nothing is left to do: the drift check plans main again.
	head, err := w.gh.Branch(owner, repoName, "main")
	if err != nil {
		t.Fatal(err)
	}
	schedule, _ := json.Marshal(map[string]any{"schedule": "23 5 * * *"})
	r = w.runAct(ctx, t, w.actOptions(ctx, t, labgithub.Event{Name: "schedule", Payload: schedule}, head), "fleet")
	if r.Outputs["changes"] != "false" || r.Outputs["result"] != "no-changes" {
		t.Errorf("the drift check after the apply: changes=%q result=%q, want false and no-changes\n%s", r.Outputs["changes"], r.Outputs["result"], r.Log)
	}
	if runs, err = w.gh.CheckRuns(owner, repoName, head); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Name != "nest/drift" || runs[0].Conclusion != "success" {
		t.Errorf("check runs on main's head %.7s after the drift check: %+v, want one nest/drift, success", head, runs)
	}
	if issues, err := w.gh.Issues(owner, repoName); err != nil || len(issues) != 0 {
		t.Errorf("issues after a drift check that found none: %+v (%v), want none", issues, err)
	}

	// What nestbot wrote to GitHub holds none of its secrets.
	var written strings.Builder
	comments, _ = w.gh.Comments(owner, repoName, pr.Number)
	for _, c := range comments {
		written.WriteString(c.Body + "\n")
	}
	for _, sha := range []string{pr.HeadSHA, head} {
		runs, _ := w.gh.CheckRuns(owner, repoName, sha)
		for _, c := range runs {
			written.WriteString(c.Title + "\n" + c.Summary + "\n" + c.Text + "\n")
		}
	}
	deps, _ = w.gh.Deployments(owner, repoName)
	for _, d := range deps {
		for _, st := range d.Statuses {
			written.WriteString(st.Description + "\n")
		}
	}
	w.noSecrets(t, "the comments, check runs and deployment statuses", written.String())
}

// lines collects log lines; the lab's GitHub logs from its own goroutines.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
