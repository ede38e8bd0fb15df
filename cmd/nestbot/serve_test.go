package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// TestServeWithLabFromShell drives, as a person in a shell would, the lab's
// GitHub (nestlab up --github, nestlab pr …) against nestbot serve,
// each in its own process: a pull request gets its plan comment, a
// /nest plan is answered, the merge applies and the deployment succeeds.
func TestServeWithLabFromShell(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a lab and a server")
	}
	fixtures.Package(t, "@octokit/webhooks-examples")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	repo := copyExample(t)
	dir := t.TempDir()
	addr := freeLoopbackAddr(t)
	_, env := startLabUp(ctx, t, repo, filepath.Join(dir, "lab.env"), &bytes.Buffer{}, &bytes.Buffer{},
		"--github", "--webhook-url", "http://"+addr+"/webhook")
	env = append(env, "NESTBOT_STATE_DIR="+filepath.Join(dir, "state"))

	var serveLog bytes.Buffer
	serve := nestbotCmd(ctx, env, "serve", "--listen", addr)
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	waitReady(ctx, t, "http://"+addr+"/readyz")

	pr := func(args ...string) string {
		t.Helper()
		out, err := nestlabCmd(ctx, t, env, append([]string{"pr"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nestlab pr %s: %v\n%s\nserver:\n%s", strings.Join(args, " "), err, out, serveLog.String())
		}
		return string(out)
	}
	if out := pr("open", "--branch", "more-swap", "infra/nix/hosts/laptop-ultra/swap.nix={ }"); !strings.Contains(out, "Opened #1") || !strings.Contains(out, "answered 202") {
		t.Fatalf("open: %s", out)
	}
	out := pr("show", "1", "--wait", "plan", "--timeout", "90s")
	if !strings.Contains(out, "Plan: 7 to create") || !strings.Contains(out, "nest/plan  neutral") {
		t.Fatalf("the pull request shows no plan:\n%s", out)
	}
	pr("comment", "1", "/nest plan")
	pr("merge", "1")
	out = pr("show", "1", "--wait", "deployment", "--timeout", "120s")
	if !strings.Contains(out, "deployment  ducksnest  success") {
		t.Fatalf("the merge did not deploy:\n%s\nserver:\n%s", out, serveLog.String())
	}
	if strings.Count(out, "### nestbot plan for") != 1 {
		t.Errorf("want exactly one plan comment (edited, never posted anew):\n%s", out)
	}
	// The apply is counted once it is reported everywhere, just after its
	// deployment status: wait for it, bounded.
	var metrics string
	for metrics = get(ctx, t, "http://"+addr+"/metrics"); !strings.Contains(metrics, `nestbot_applies_total{result="success"} 1`); metrics = get(ctx, t, "http://"+addr+"/metrics") {
		select {
		case <-ctx.Done():
			t.Fatalf("no successful apply in the metrics:\n%s", metrics)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, want := range []string{`nestbot_webhook_deliveries_total{event="pull_request",result="accepted"}`,
		`nestbot_webhook_deliveries_total{event="push",result="accepted"}`, `nestbot_applies_total{result="success"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func waitReady(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never answered 200", url)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
