package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab/demo"
	"github.com/ducksnest/nestbot/reconcile"
)

// exampleRepoWithBot is a git checkout of the example (one commit, on
// main) whose admins include nestbot's own age identity, so that it can
// sign with the CAs it issues.
func exampleRepoWithBot(ctx context.Context, t *testing.T) (repo string, git func(args ...string) string, id *age.X25519Identity) {
	t.Helper()
	repo = copyExample(t)
	git = gitIn(ctx, t, repo)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	testkit.AddAdmin(t, filepath.Join(repo, "nest.yaml"), id.Recipient().String(), "nestbot")
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "the fleet")
	return repo, git, id
}

// planDoc is what TestApplyThenPlanIsEmptyOnEveryPlane reads of a JSON plan.
type planDoc struct {
	Summary reconcile.Summary `json:"summary"`
	Steps   []struct {
		Plane   reconcile.Plane  `json:"plane"`
		Action  reconcile.Action `json:"action"`
		Address string           `json:"address"`
		Reason  string           `json:"reason"`
	} `json:"steps"`
}

// counted is the summary the steps make, counted here on their own: a
// replace is a create and a delete, a delete of any plane is a delete,
// every step of the certificate and host planes but drift and waits is a
// cert or a host.
func (p planDoc) counted() reconcile.Summary {
	var s reconcile.Summary
	for _, st := range p.Steps {
		switch st.Action {
		case reconcile.ActionDrift:
			s.Drift++
			continue
		case reconcile.ActionWait:
			s.Waits++
			continue
		case reconcile.ActionCreate:
			s.Create++
		case reconcile.ActionUpdate:
			s.Update++
		case reconcile.ActionDelete:
			s.Delete++
		case reconcile.ActionReplace:
			s.Replace++
			s.Create++
			s.Delete++
		case reconcile.ActionAdopt:
			s.Adopt++
		}
		switch st.Plane {
		case reconcile.PlanePKI:
			s.Certs++
		case reconcile.PlaneHosts:
			s.Hosts++
		}
	}
	return s
}

// TestApplyThenPlanIsEmptyOnEveryPlane applies three commits to the
// example fleet against the lab — the fleet from nothing; a new EC2
// worker and a new admin; the worker removed again — which plan steps on
// every plane (cloud, tailnet, certificates, hosts; the removal rolls no
// host, since no other host's system changes). For each:
// the summary is what the steps are; the apply does every step the plan
// shows (none failed or skipped); and the plan after it is empty.
func TestApplyThenPlanIsEmptyOnEveryPlane(t *testing.T) {
	t.Parallel() // boots a lab of its own
	if testing.Short() {
		t.Skip("starts a lab")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	repo, git, id := exampleRepoWithBot(ctx, t)
	file := filepath.Join(repo, "nest.yaml")
	flake := filepath.Join(repo, "infra", "nix", "flake.nix")
	read := func(p string) string {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	write := func(p, data string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, l := labFor(t, repo)
	nestbot, _ := nestbotSteps(ctx, t, append(l.Env(), "NESTBOT_STATE_DIR="+t.TempDir(), "NEST_AGE_IDENTITY="+id.String()))

	plan := func(t *testing.T) planDoc {
		t.Helper()
		var p planDoc
		out := nestbot(0, "plan", "-f", file, "--format", "json")
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("plan --format json: %v\n%s", err, out)
		}
		if p.Summary != p.counted() {
			t.Errorf("the summary says %+v, the steps are %+v", p.Summary, p.counted())
		}
		return p
	}
	converge := func(t *testing.T, wants map[reconcile.Plane][]reconcile.Action) {
		t.Helper()
		before := plan(t)
		got := map[reconcile.Plane][]reconcile.Action{}
		for _, st := range before.Steps {
			if !slices.Contains(got[st.Plane], st.Action) {
				got[st.Plane] = append(got[st.Plane], st.Action)
			}
		}
		for plane, actions := range wants {
			for _, a := range actions {
				if !slices.Contains(got[plane], a) {
					t.Fatalf("the plan has no %s step on the %s plane; its steps: %v", a, plane, got)
				}
			}
		}
		out := nestbot(0, "apply", "-f", file, "--auto-approve")
		if !strings.Contains(out, " 0 failed, 0 skipped.") {
			t.Fatalf("apply:\n%s", out)
		}
		for _, st := range before.Steps {
			if st.Action == reconcile.ActionDrift {
				continue
			}
			if !slices.ContainsFunc(strings.Split(out, "\n"), func(line string) bool {
				f := strings.Fields(line)
				return len(f) >= 3 && f[0] == st.Address && f[1] == string(st.Action) && f[2] == string(reconcile.StatusApplied)
			}) {
				t.Errorf("the plan shows %s %s, which the apply did not report applied:\n%s", st.Action, st.Address, out)
			}
		}
		after := plan(t)
		if len(after.Steps) != 0 {
			var lines []string
			for _, st := range after.Steps {
				lines = append(lines, fmt.Sprintf("%s %s: %s", st.Action, st.Address, st.Reason))
			}
			t.Fatalf("the plan after the apply is not empty:\n%s\nthe apply:\n%s", strings.Join(lines, "\n"), out)
		}
	}

	t.Run("from nothing", func(t *testing.T) {
		converge(t, map[reconcile.Plane][]reconcile.Action{
			reconcile.PlaneCloud: {reconcile.ActionCreate}, reconcile.PlaneTailnet: {reconcile.ActionWait},
			reconcile.PlanePKI: {reconcile.ActionIssue}, reconcile.PlaneHosts: {reconcile.ActionRoll},
		})
	})
	const worker = "ec2-worker-1"
	original := map[string]string{file: read(file), flake: read(flake)}
	t.Run("a new worker and a new admin", func(t *testing.T) {
		admin, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		for rel, data := range demo.WorkerFiles(worker, original[file], original[flake]) {
			write(filepath.Join(repo, filepath.FromSlash(rel)), data)
		}
		testkit.AddAdmin(t, file, admin.Recipient().String(), "a second admin")
		git("add", ".")
		git("commit", "-q", "-m", worker+", and a second admin")
		converge(t, map[reconcile.Plane][]reconcile.Action{
			reconcile.PlaneCloud: {reconcile.ActionCreate}, reconcile.PlaneTailnet: {reconcile.ActionWait},
			reconcile.PlanePKI: {reconcile.ActionIssue, reconcile.ActionRekey}, reconcile.PlaneHosts: {reconcile.ActionRoll},
		})
	})
	t.Run("the worker removed", func(t *testing.T) {
		withWorker := demo.WorkerFiles(worker, "  laptop-firebat:", "")["nest.yaml"] // its block, then the next host's key
		write(file, strings.Replace(read(file), withWorker, "  laptop-firebat:", 1))
		write(flake, original[flake])
		if err := os.RemoveAll(filepath.Join(repo, "infra/nix/hosts", worker)); err != nil {
			t.Fatal(err)
		}
		git("add", "-A")
		git("commit", "-q", "-m", "without "+worker)
		// No other host's system changes (nix eval): nothing rolls.
		converge(t, map[reconcile.Plane][]reconcile.Action{
			reconcile.PlaneCloud: {reconcile.ActionDelete}, reconcile.PlaneTailnet: {reconcile.ActionDelete},
			reconcile.PlanePKI: {reconcile.ActionDelete},
		})
	})
}
