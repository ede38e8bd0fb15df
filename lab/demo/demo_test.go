package demo_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/lab/demo"
)

// TestStory plays the demo's story and checks each step's effect in the
// lab — instances, tailnet, committed files, comments, deployments, host
// revisions — not its narration.
func TestStory(t *testing.T) {
	t.Parallel() // boots a lab of its own
	if testing.Short() {
		t.Skip("starts a lab")
	}
	fixtures.Package(t, "@octokit/webhooks-examples")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var narration strings.Builder
	d, err := demo.Start(ctx, demo.Options{Out: &narration, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := d.Play(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, narration.String())
	}
	owner, name := d.Repo.Owner, d.Repo.Name
	revision := func(h string) (string, int) {
		t.Helper()
		lh, ok := d.Lab.Host(h)
		if !ok {
			t.Fatalf("the lab has no host %s", h)
		}
		st, err := lh.State()
		if err != nil {
			t.Fatal(err)
		}
		return st.Commit(), st.Generation
	}

	if s.Bootstrap.Deployment != "success" || len(s.Bootstrap.Rolled) != 3 {
		t.Errorf("first apply: %+v, want success with 3 hosts rolled", s.Bootstrap)
	}

	// #1 adds ec2-worker-1.
	if s.AddWorker.Deployment != "success" {
		t.Errorf("adding the worker: deployment %s: %s", s.AddWorker.Deployment, s.AddWorker.Detail)
	}
	cs, _ := d.GitHub.Comments(owner, name, s.AddWorker.Number)
	plans := 0
	for _, c := range cs {
		if strings.HasPrefix(c.Body, "<!-- nestbot:plan ") {
			plans++
			if !strings.Contains(c.Body, "aws.instance.ec2-worker-1") {
				t.Errorf("the plan comment does not create the instance:\n%s", c.Body)
			}
		}
	}
	if plans != 1 {
		t.Errorf("%d plan comments on #%d, want 1", plans, s.AddWorker.Number)
	}
	running := 0
	for _, in := range d.Lab.EC2.Instances() {
		if in.State == "running" {
			running++
		}
	}
	if running != 2 {
		t.Errorf("%d instances running, want 2 (control plane and worker)", running)
	}
	worker, ok := d.Lab.Host("ec2-worker-1")
	if !ok || !(worker.TailscaleIP() != "") {
		t.Fatal("ec2-worker-1 did not boot and join the tailnet")
	}
	if got := rollOrder(s.AddWorker); got != "ec2-worker-1" {
		t.Errorf("the rollout went %q, want the new worker alone (no other host's system changes)", got)
	}

	// #2 rolls only laptop-ultra.
	if s.Change.Deployment != "success" || rollOrder(s.Change) != "laptop-ultra" {
		t.Errorf("changing laptop-ultra: %s, rolled %q; want success, laptop-ultra only", s.Change.Deployment, rollOrder(s.Change))
	}
	// #3 breaks laptop-firebat: rolled back, the rollout halted, the deployment failed.
	if s.Break.Deployment != "failure" {
		t.Errorf("breaking laptop-firebat: deployment %s, want failure", s.Break.Deployment)
	}
	if len(s.Break.Rolled) != 2 || s.Break.Rolled[0].Final != "rolled-back" || s.Break.Rolled[1].Final != "skipped" {
		t.Errorf("breaking laptop-firebat rolled %+v, want laptop-firebat rolled back and laptop-ultra not started", s.Break.Rolled)
	}

	// Where the hosts are, against the repository.
	certCommit := ""
	for _, r := range s.Hosts {
		if r.Host == "ec2-worker-1" {
			certCommit = r.Revision
		}
	}
	// The hosts whose systems no later commit changed run the first apply's
	// certificates' commit; firebat rolled back to it.
	_, first, _ := strings.Cut(s.Bootstrap.Detail, "certificates committed as ")
	first = strings.TrimSpace(first)
	for _, h := range []string{"ec2-controlplane", "laptop-firebat"} {
		if got, _ := revision(h); first == "" || !strings.HasPrefix(got, first) {
			t.Errorf("%s runs %.7s, want the first apply's certificates' commit %q (%s)", h, got, first, s.Bootstrap.Detail)
		}
	}
	if got, _ := revision("laptop-ultra"); got != s.Change.Merge {
		t.Errorf("laptop-ultra runs %.7s, want #%d's merge %.7s", got, s.Change.Number, s.Change.Merge)
	}
	dir, _ := d.GitHub.GitDir(owner, name)
	if out := gitShow(t, dir, certCommit); !strings.Contains(out, "infra/nix/secrets/certs/hosts/ec2-worker-1.pub") ||
		!strings.Contains(out, "infra/nix/secrets/certs/derived/ec2-worker-1/kubernetes-kubelet.crt") {
		t.Errorf("the certificates' commit %.7s lacks the worker's pinned key or certificate:\n%s", certCommit, out)
	}
	for _, r := range s.Hosts {
		if r.CertsExpire.Before(time.Now().Add(300 * 24 * time.Hour)) {
			t.Errorf("%s's certificates expire %s, want about a year from now", r.Host, r.CertsExpire)
		}
	}
	if v := d.GitHub.Violations(); len(v) > 0 {
		t.Errorf("requests not valid per GitHub's OpenAPI description: %v", v)
	}
	if p := s.Problems(); len(p) > 0 {
		t.Errorf("the demo finds its story did not come out as told: %v", p)
	}
	if s.Took > 60*time.Second {
		t.Logf("the story took %s (the demo's goal is under 60 s)", s.Took)
	}

}

func rollOrder(st *demo.Step) string {
	var hosts []string
	for _, r := range st.Rolled {
		hosts = append(hosts, r.Host)
	}
	return strings.Join(hosts, " ")
}

// TestProblemsSayWhichStep: a story whose first apply failed (the
// certificate tree encrypted to another admin, say) is told as such, step
// by step, and certificates "expiring" 0001-01-01 are a problem; a story
// that went as told has none.
func TestProblemsSayWhichStep(t *testing.T) {
	soon := time.Now().Add(365 * 24 * time.Hour)
	good := &demo.Story{
		Bootstrap: &demo.Step{Deployment: "success", Rolled: []demo.HostRoll{{Host: "a", Final: "confirmed"}, {Host: "b", Final: "confirmed"}, {Host: "c", Final: "confirmed"}}},
		AddWorker: &demo.Step{Deployment: "success", Rolled: []demo.HostRoll{{Host: "ec2-worker-1", Final: "confirmed"}}},
		Change:    &demo.Step{Deployment: "success", Rolled: []demo.HostRoll{{Host: "laptop-ultra", Final: "confirmed"}}},
		Break:     &demo.Step{Deployment: "failure", Rolled: []demo.HostRoll{{Host: "laptop-firebat", Final: "rolled-back"}, {Host: "laptop-ultra", Final: "skipped"}}},
		Hosts:     []demo.HostRow{{Host: "a", Revision: "r", CertsExpire: soon}},
	}
	if p := good.Problems(); len(p) != 0 {
		t.Errorf("a story that went as told has problems: %v", p)
	}
	bad := *good
	bad.Bootstrap = &demo.Step{Deployment: "failure", Detail: "pki: cannot decrypt the CA key"}
	bad.AddWorker = &demo.Step{Deployment: "failure"}
	bad.Hosts = []demo.HostRow{{Host: "a", Revision: "r"}}
	p := bad.Problems()
	if len(p) != 3 || !strings.HasPrefix(p[0], "1: ") || !strings.Contains(p[0], "cannot decrypt") || !strings.HasPrefix(p[1], "2: ") || !strings.Contains(p[2], "0001-01-01") {
		t.Errorf("problems %q, want steps 1, 2 and 5 (certificates 0001-01-01)", p)
	}
}
