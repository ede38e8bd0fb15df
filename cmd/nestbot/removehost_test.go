package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/demo"
	"github.com/ducksnest/nestbot/reconcile/tailnet"
)

// TestRemovedEC2HostLeavesTheTailnet adds an EC2 host to the example,
// applies it against the lab (the instance boots and joins the tailnet),
// then removes the host from nest.yaml: the plan deletes its instance and,
// with it, its tailnet node; the apply deletes the device through the
// Tailscale API, so that afterwards nothing is left — no stray in the plan,
// no device in the API's list.
func TestRemovedEC2HostLeavesTheTailnet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const worker = "ec2-worker-1"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	repo := copyExample(t)
	_, env := startLabUp(ctx, t, repo, filepath.Join(dir, "lab.env"), io.Discard, io.Discard)
	getenv := func(name string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		return ""
	}
	cfg, err := tailnet.APIConfigFromEnv(getenv)
	if err != nil || !cfg.HasCredentials() {
		t.Fatalf("the lab's env file has no Tailscale API client (%v):\n%s", err, strings.Join(env, "\n"))
	}
	api, err := tailnet.NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	workerDevices := func() []tailnet.Device {
		t.Helper()
		devs, err := api.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []tailnet.Device
		for _, d := range devs {
			if d.Label() == worker {
				out = append(out, d)
			}
		}
		return out
	}

	nestbot, outputs := nestbotSteps(ctx, t, env)
	f := filepath.Join(repo, "nest.yaml")
	flake := filepath.Join(repo, "infra", "nix", "flake.nix")
	hostDir := filepath.Join(repo, "infra", "nix", "hosts", worker)

	// Add the worker as the demo's first pull request does.
	original := map[string][]byte{}
	for _, p := range []string{f, flake} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		original[p] = data
	}
	added := demo.WorkerFiles(worker, string(original[f]), string(original[flake]))
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, data := range added {
		p := filepath.Join(repo, filepath.FromSlash(rel))
		if p != filepath.Join(hostDir, "configuration.nix") && data == string(original[p]) {
			t.Fatalf("adding %s did not change %s: the example moved on", worker, p)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nestbot(0, "validate", "-f", f)
	if out := nestbot(0, "apply", "-f", f, "--auto-approve"); !strings.Contains(out, " 0 failed, 0 skipped.") || !strings.Contains(out, "aws.instance."+worker) {
		t.Fatalf("apply with %s:\n%s", worker, out)
	}
	if devs := workerDevices(); len(devs) != 1 {
		t.Fatalf("after the apply, the Tailscale API lists %d devices named %s, want 1: %+v", len(devs), worker, devs)
	}
	if out := nestbot(0, "plan", "-f", f, "--detailed-exitcode"); !strings.Contains(out, "No changes.") {
		t.Fatalf("plan after adding %s:\n%s", worker, out)
	}

	// Remove it again: nest.yaml, the flake and its configuration as they were.
	for p, data := range original {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(hostDir); err != nil {
		t.Fatal(err)
	}
	nestbot(0, "validate", "-f", f)
	out := nestbot(2, "plan", "-f", f, "--detailed-exitcode")
	nodeReason := "its instance aws.instance." + worker + " is deleted by this plan"
	for _, line := range []string{"  - aws.instance." + worker + "\n", "  # tailnet.node." + worker + " will be deleted: " + nodeReason, "  - tailnet.node." + worker + "\n"} {
		if !strings.Contains(out, line) {
			t.Fatalf("plan after removing %s lacks %q:\n%s", worker, line, out)
		}
	}
	var doc struct {
		Steps []struct {
			Action  string `json:"action"`
			Address string `json:"address"`
			Reason  string `json:"reason"`
		} `json:"steps"`
	}
	out = nestbot(0, "plan", "-f", f, "--format", "json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("plan --format json: %v\n%s", err, out)
	}
	actions := map[string]string{}
	for _, s := range doc.Steps {
		if strings.HasSuffix(s.Address, "."+worker) {
			actions[s.Address] = s.Action
			if s.Address == "tailnet.node."+worker && !strings.HasPrefix(s.Reason, nodeReason) {
				t.Errorf("%s: reason %q, want it to start %q", s.Address, s.Reason, nodeReason)
			}
		}
	}
	want := map[string]string{"aws.instance." + worker: "delete", "tailnet.node." + worker: "delete"}
	if fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Fatalf("the plan's steps for %s: %v, want %v\n%s", worker, actions, want, out)
	}

	out = nestbot(0, "apply", "-f", f, "--auto-approve")
	if !strings.Contains(out, " 0 failed, 0 skipped.") {
		t.Fatalf("apply without %s:\n%s", worker, out)
	}
	for addr := range want {
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(line string) bool {
			fields := strings.Fields(line)
			return len(fields) >= 3 && fields[0] == addr && fields[1] == "delete" && fields[2] == "applied"
		}) {
			t.Fatalf("apply without %s did not report %s deleted:\n%s", worker, addr, out)
		}
	}
	if out := nestbot(0, "plan", "-f", f, "--detailed-exitcode"); !strings.Contains(out, "No changes.") || strings.Contains(out, worker) {
		t.Fatalf("plan after removing %s:\n%s", worker, out)
	}
	if devs := workerDevices(); len(devs) != 0 {
		t.Fatalf("after the apply, the Tailscale API still lists %s: %+v", worker, devs)
	}
	for i, out := range *outputs {
		for _, secret := range []string{getenv("TS_AUTHKEY"), cfg.OAuthClientSecret} {
			if secret != "" && strings.Contains(out, secret) {
				t.Fatalf("output %d shows a credential from the lab's env file", i)
			}
		}
	}
}
