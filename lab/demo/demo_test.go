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
		return st.Revision, st.Generation
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
	if !ok || !worker.TailscaleIP().IsValid() {
		t.Fatal("ec2-worker-1 did not boot and join the tailnet")
	}
	if got := rollOrder(s.AddWorker); got != "ec2-controlplane ec2-worker-1 laptop-firebat laptop-ultra" {
		t.Errorf("the rollout went %q, want control plane first, then workers by name", got)
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
	for h, want := range map[string]string{"ec2-controlplane": certCommit, "laptop-firebat": certCommit} {
		if got, _ := revision(h); got != want {
			t.Errorf("%s runs %.7s, want %.7s (the worker's certificates' commit; firebat rolled back to it)", h, got, want)
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
