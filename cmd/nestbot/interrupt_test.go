package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInterruptReachesRollout: Ctrl-C during nestbot rollout cancels the
// rollout's context (the root one) and nestbot exits 130 once the rollout
// has returned. Two workers are due and roll one at a time; the interrupt
// comes while the first switches. What the rollout does with the
// cancellation (finish or roll back the host in flight, start no other) is
// reconcile/rollout's; this test shows the cancellation reaches it: no
// other worker starts switching after it, and the rollout returns at once
// (its error says it stopped). The hosts' revisions, nestbot hosts and a
// dry run after it are logged, for the record.
func TestInterruptReachesRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a lab")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	repo, git, id := exampleRepoWithBot(ctx, t)
	_, l := labFor(t, repo)
	env := append(l.Env(), "NESTBOT_STATE_DIR="+t.TempDir(), "NEST_AGE_IDENTITY="+id.String())
	file := filepath.Join(repo, "nest.yaml")
	if out, err := nestbotCmd(ctx, env, "apply", "-f", file, "--auto-approve").CombinedOutput(); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	applied := git("rev-parse", "HEAD")
	for _, h := range []string{"laptop-firebat", "laptop-ultra"} {
		cfg := filepath.Join(repo, "infra/nix/hosts", h, "configuration.nix")
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, append(data, []byte("# more swap\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("commit", "-q", "-am", "workers: more swap")

	p := startNestbot(ctx, t, env, "rollout", "-f", file)
	first := p.waitLine(ctx, "a worker switching", func(l string) bool {
		return strings.Contains(l, " switching") && (strings.Contains(l, "laptop-firebat") || strings.Contains(l, "laptop-ultra"))
	})
	p.signal(os.Interrupt)
	if code := p.waitExit(ctx); code != 130 {
		t.Errorf("rollout interrupted: exit %d, want 130", code)
	}
	out := p.stderr()
	t.Logf("nestbot rollout, interrupted while %q:\n%s", strings.TrimSpace(first), out)
	if !strings.Contains(out, "nestbot: interrupt: winding down") || !strings.Contains(out, "nestbot: stopped by interrupt") || !strings.Contains(out, "context canceled") {
		t.Errorf("no word of winding down and stopping:\n%s", out)
	}
	second := "laptop-ultra"
	if strings.Contains(first, "laptop-ultra") {
		second = "laptop-firebat"
	}
	_, after, _ := strings.Cut(out, "winding down")
	for _, l := range strings.Split(after, "\n") {
		if strings.Contains(l, second) && (strings.Contains(l, " armed") || strings.Contains(l, " switching")) {
			t.Errorf("%s started switching after the interrupt: %q", second, l)
		}
	}
	for _, h := range []string{"ec2-controlplane", "laptop-firebat", "laptop-ultra"} {
		lh, _ := l.Host(h)
		st, err := lh.State()
		t.Logf("after the interrupt %s runs %.7s (the apply's %.7s) %v", h, st.Revision, applied, err)
	}
	hosts, _ := nestbotCmd(ctx, env, "hosts", "-f", file).CombinedOutput()
	t.Logf("nestbot hosts after it:\n%s", hosts)
	again, _ := nestbotCmd(ctx, env, "rollout", "-f", file, "--dry-run").CombinedOutput()
	t.Logf("nestbot rollout --dry-run after it:\n%s", again)
}
