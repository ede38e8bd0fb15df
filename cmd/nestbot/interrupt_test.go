package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/ducksnest/nestbot/store"
)

// TestInterruptWindsTheRolloutDown: a first Ctrl-C during a rollout starts
// no new host; the host in flight is seen through to confirmed; nestbot
// exits 130; the next plan and rollout go on with the host not started.
func TestInterruptWindsTheRolloutDown(t *testing.T) {
	t.Parallel() // boots a lab of its own
	if testing.Short() {
		t.Skip("starts a lab")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	repo, git, id := exampleRepoWithBot(ctx, t)
	_, l := labFor(t, repo)
	stateDir := t.TempDir()
	env := append(l.Env(), "NESTBOT_STATE_DIR="+stateDir, "NEST_AGE_IDENTITY="+id.String())
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
		data = []byte(strings.Replace(string(data), "{\n", "{\n  services.openssh.settings.ClientAliveInterval = 60;\n", 1))
		if err := os.WriteFile(cfg, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("commit", "-q", "-am", "workers: keep idle SSH sessions alive")
	next := git("rev-parse", "HEAD")

	p := startNestbot(ctx, t, env, "rollout", "-f", file) // max_parallel 1: one worker at a time
	first := p.waitLine(ctx, "a worker activating", func(l string) bool {
		return strings.Contains(l, " activating") && (strings.Contains(l, "laptop-firebat") || strings.Contains(l, "laptop-ultra"))
	})
	p.signal(os.Interrupt)
	if code := p.waitExit(ctx); code != 130 {
		t.Errorf("rollout interrupted: exit %d, want 130", code)
	}
	out := p.stderr()
	t.Logf("nestbot rollout, interrupted while %q:\n%s", strings.TrimSpace(first), out)
	if !strings.Contains(out, "nestbot: interrupt: winding down") || !strings.Contains(out, "nestbot: stopped by interrupt") {
		t.Errorf("no word of winding down and stopping:\n%s", out)
	}
	inFlight, second := "laptop-firebat", "laptop-ultra"
	if strings.Contains(first, "laptop-ultra") {
		inFlight, second = second, inFlight
	}
	for h, want := range map[string]string{inFlight: next, second: applied} {
		lh, _ := l.Host(h)
		st, err := lh.State()
		t.Logf("after the interrupt %s runs %.7s, generation %d, boot default %d", h, st.Commit(), st.Generation, st.BootDefault)
		if err != nil || st.Commit() != want {
			t.Errorf("after the interrupt %s runs %.7s (%v), want %.7s", h, st.Commit(), err, want)
		}
	}
	skipped := false
	for _, l := range strings.Split(out, "\n") {
		skipped = skipped || strings.Contains(l, second) && strings.Contains(l, "skipped: not started: the rollout was stopped")
	}
	if !skipped {
		t.Errorf("%s is not reported as not started:\n%s", second, out)
	}
	checkJournalAfterInterrupt(t, filepath.Join(stateDir, "nestbot.db"), next, inFlight, second)
	again, err := nestbotCmd(ctx, env, "rollout", "-f", file, "--dry-run").CombinedOutput()
	t.Logf("nestbot rollout --dry-run after it:\n%s", again)
	if err != nil || !strings.Contains(string(again), second) || strings.Contains(string(again), inFlight) {
		t.Errorf("rollout --dry-run after the interrupt (%v) should roll %s alone:\n%s", err, second, again)
	}
}

// checkJournalAfterInterrupt reads the journal the interrupted rollout
// left: the host in flight was seen through to confirmed, the other has no
// step in flight, and nothing is left for a resumed run to find.
func checkJournalAfterInterrupt(t *testing.T, path, revision, inFlight, second string) {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j := db.Journal()
	last, err := j.Hosts(revision)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	steps := map[string]string{}
	for _, e := range last {
		steps[e.Host] = e.Step
		lines = append(lines, fmt.Sprintf("%-16s %-10s %s", e.Host, e.Step, e.Detail))
	}
	t.Logf("the journal of rollout %.12s after the interrupt, each host's last step:\n%s", revision, strings.Join(lines, "\n"))
	if steps[inFlight] != string(rollout.StateConfirmed) {
		t.Errorf("the journal has %s at %q, want it seen through to %q", inFlight, steps[inFlight], rollout.StateConfirmed)
	}
	if st, ok := steps[second]; ok && st != string(rollout.StateSkipped) && st != string(rollout.StateQueued) {
		t.Errorf("the journal has %s, never started, at %q", second, st)
	}
	if in, err := rollout.Interrupted(j, revision); err != nil || len(in) != 0 {
		t.Errorf("the journal leaves %v in flight (%v); want none", in, err)
	}
}
