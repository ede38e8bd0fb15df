package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/testkit"
)

// TestMain lets the test binary run as nestbot itself, so end-to-end tests
// drive the real command line in separate processes, as a person's shells would.
func TestMain(m *testing.M) {
	if os.Getenv("NESTBOT_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// nestlab is the lab's own command, built once for the tests that start it
// (it is not part of nestbot).
var nestlab = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "nestlab-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nestlab")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/ducksnest/nestbot/cmd/nestlab").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/nestlab: %v\n%s", err, out)
	}
	return bin, nil
})

// nestlabCmd runs nestlab with exactly env (plus PATH).
func nestlabCmd(ctx context.Context, t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := nestlab()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	return cmd
}

// nestbotCmd runs the test binary as nestbot with exactly env (plus PATH).
func nestbotCmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append([]string{"NESTBOT_TEST_AS_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	return cmd
}

// nestbotSteps returns a runner of nestbot in env that fails the test on
// an exit code other than the one wanted, and every output it produced.
func nestbotSteps(ctx context.Context, t *testing.T, env []string) (run func(wantCode int, args ...string) string, outputs *[]string) {
	outputs = new([]string)
	return func(wantCode int, args ...string) string {
		t.Helper()
		out, err := nestbotCmd(ctx, env, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		*outputs = append(*outputs, string(out))
		if code != wantCode {
			t.Fatalf("nestbot %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, wantCode, out)
		}
		return string(out)
	}, outputs
}

// waitFile waits, bounded, until path exists and is not empty.
func waitFile(t *testing.T, path string, limit time.Duration) []byte {
	t.Helper()
	var data []byte
	testkit.WaitFor(t, path+" to appear", limit, func() bool {
		var err error
		data, err = os.ReadFile(path)
		return err == nil && len(data) > 0
	})
	return data
}

func TestLabUpThenPlanAndApplyFromAnotherShell(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	repo := copyExample(t)
	envFile := filepath.Join(dir, "lab.env")
	// Its standard output is the environment, credentials included, by
	// design; its log (standard error) must not repeat the auth key.
	var labOut, labLog strings.Builder
	lab, env := startLabUp(ctx, t, repo, envFile, &labOut, &labLog)
	authKey := ""
	for _, line := range env {
		if k, ok := strings.CutPrefix(line, "TS_AUTHKEY="); ok {
			authKey = k
		}
	}
	for _, want := range []string{"AWS_ENDPOINT_URL=http://127.0.0.1:", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_REGION=ap-northeast-2", "AWS_DEFAULT_REGION=ap-northeast-2"} {
		if !strings.Contains(strings.Join(env, "\n"), want) {
			t.Fatalf("env file lacks %s:\n%s", want, strings.Join(env, "\n"))
		}
	}
	if authKey == "" {
		t.Fatal("env file has no TS_AUTHKEY")
	}

	step, outputs := nestbotSteps(ctx, t, env)
	f := repo + "/nest.yaml"
	if out := step(2, "plan", "-f", f, "--detailed-exitcode", "--save-live", filepath.Join(dir, "live.json")); !strings.Contains(out, "Plan: 7 to create") {
		t.Fatalf("first plan:\n%s", out)
	}
	if out := step(1, "apply", "-f", f); !strings.Contains(out, "--auto-approve") {
		t.Fatalf("apply without a terminal or --auto-approve:\n%s", out)
	}
	if out := step(0, "apply", "-f", f, "--auto-approve"); !strings.Contains(out, "Apply: 31 applied, 0 failed, 0 skipped.") {
		t.Fatalf("apply:\n%s", out)
	}
	if out := step(0, "plan", "-f", f, "--detailed-exitcode"); !strings.Contains(out, "No changes.") {
		t.Fatalf("plan after apply:\n%s", out)
	}
	for i, out := range *outputs {
		if strings.Contains(out, authKey) {
			t.Fatalf("output %d shows the auth key", i)
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "live.json")); err != nil || strings.Contains(string(data), authKey) {
		t.Fatalf("saved live snapshot: %v", err)
	}

	lab.Process.Signal(syscall.SIGINT)
	if err := lab.Wait(); lab.ProcessState.ExitCode() != 130 || !strings.Contains(labLog.String(), "nestlab: interrupt: winding down") {
		t.Fatalf("lab up did not stop as interrupted (exit 130): %v\n%s", err, labLog.String())
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Fatal("lab up left its env file behind")
	}
	if strings.Contains(labLog.String(), authKey) {
		t.Fatal("the lab's log shows the auth key")
	}
}

func TestSavedPlanRefusedAfterLiveChanged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	repo := copyExample(t)
	_, env := startLabUp(ctx, t, repo, filepath.Join(dir, "lab.env"), io.Discard, io.Discard)
	f, planFile := repo+"/nest.yaml", filepath.Join(dir, "plan.json")
	run := func(args ...string) (string, int) {
		out, err := nestbotCmd(ctx, env, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	if out, code := run("plan", "-f", f, "--save-plan", planFile); code != 0 {
		t.Fatalf("plan: %d\n%s", code, out)
	}
	// The live state moves on: only the VPC is created, by another apply.
	if out, code := run("apply", "-f", f, "--auto-approve", "--target", "aws.vpc"); code != 0 || !strings.Contains(out, "Apply: 1 applied") {
		t.Fatalf("targeted apply: %d\n%s", code, out)
	}
	out, code := run("apply", "-f", f, "--auto-approve", "--plan", planFile)
	if code != 1 || !strings.Contains(out, "the live state changed since the plan was saved (the plan now differs: aws.vpc (create) is no longer planned): plan again\n") {
		t.Fatalf("stale saved plan: exit %d\n%s", code, out)
	}
	if out, code := run("plan", "-f", f, "--save-plan", planFile); code != 0 {
		t.Fatalf("re-plan: %d\n%s", code, out)
	}
	if out, code := run("apply", "-f", f, "--auto-approve", "--plan", planFile); code != 0 || !strings.Contains(out, "Apply: 30 applied") {
		t.Fatalf("fresh saved plan: exit %d\n%s", code, out)
	}
}

// copyExample copies the example infra repo, so that applying it (which
// writes certificates into it) leaves the real one untouched.
func copyExample(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := os.CopyFS(dst, os.DirFS(example))
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// startLabUp runs `nestlab up` for the repository in its own process,
// waits (bounded) for its env file, and returns the process and the
// environment it wrote. The process is killed when the test ends.
func startLabUp(ctx context.Context, t *testing.T, repo, envFile string, stdout, stderr io.Writer, extra ...string) (*exec.Cmd, []string) {
	t.Helper()
	lab := nestlabCmd(ctx, t, nil, append([]string{"up", "-f", repo + "/nest.yaml", "--env-file", envFile}, extra...)...)
	lab.Stdout, lab.Stderr = stdout, stderr
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Process.Kill() })
	return lab, strings.Split(strings.TrimSpace(string(waitFile(t, envFile, 30*time.Second))), "\n")
}
