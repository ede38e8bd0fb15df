package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// The conventions a Terraform, kubectl or gh user expects of a command line.

// TestPlanJSONFlag: plan --json prints what --format json prints, and
// refuses to be combined with another format.
func TestPlanJSONFlag(t *testing.T) {
	args := []string{"plan", "-f", example + "nest.yaml", "--live", example + "live/drifted.json"}
	code, viaFlag, errOut := runCLI(t, nil, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errOut)
	}
	_, viaFormat, _ := runCLI(t, nil, append(args, "--format", "json")...)
	if viaFlag != viaFormat || !json.Valid([]byte(viaFlag)) {
		t.Errorf("plan --json printed\n%s\nplan --format json printed\n%s", viaFlag, viaFormat)
	}
	code, out, errOut := runCLI(t, nil, append(args, "--json", "--format", "markdown")...)
	if code != 1 || out != "" || !strings.Contains(errOut, "--json and --format markdown: give one of them") {
		t.Errorf("--json --format markdown: exit %d\n%s%s", code, out, errOut)
	}
}

// TestPlanTarget: plan --target shows only the address and the steps it
// needs; an address the plan does not hold lists what it holds.
func TestPlanTarget(t *testing.T) {
	args := []string{"plan", "-f", example + "nest.yaml", "--live", example + "live/empty.json", "--json"}
	code, out, errOut := runCLI(t, nil, append(args, "--target", "aws.subnet.public-a")...)
	var doc struct {
		Steps []struct{ Address string } `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s%s", code, err, out, errOut)
	}
	var got []string
	for _, s := range doc.Steps {
		got = append(got, s.Address)
	}
	if strings.Join(got, " ") != "aws.vpc aws.subnet.public-a" {
		t.Errorf("--target aws.subnet.public-a planned %v, want the subnet and the VPC it needs", got)
	}
	code, _, errOut = runCLI(t, nil, append(args, "--target", "aws.subnet.nope")...)
	if code != 1 || !strings.Contains(errOut, "--target aws.subnet.nope: not in the plan; the plan holds: ") || !strings.Contains(errOut, "aws.instance.ec2-controlplane") {
		t.Errorf("--target of an unknown address: exit %d: %s", code, errOut)
	}
}

// TestPlanSavePlanSaysWhereAndHow: --save-plan says, on standard error (so
// standard output stays the plan), where it saved the plan and the command
// that applies it; the saved plan is what that command reads.
func TestPlanSavePlanSaysWhereAndHow(t *testing.T) {
	saved := filepath.Join(t.TempDir(), "my plan.json")
	code, out, errOut := runCLI(t, nil, "plan", "-f", example+"nest.yaml", "--live", example+"live/empty.json", "--json", "--save-plan", saved)
	if code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	want := "\nSaved the plan to " + saved + ". To apply exactly this plan:\n    nestbot apply -f " + example + "nest.yaml --plan '" + saved + "'\n"
	if errOut != want {
		t.Errorf("standard error:\n%q\nwant\n%q", errOut, want)
	}
	if data, err := os.ReadFile(saved); err != nil || !json.Valid(data) {
		t.Errorf("the saved plan: %v", err)
	}
}

// TestNoColor: --no-color and NO_COLOR each keep colour out of a plan on a
// terminal, which is coloured otherwise.
func TestNoColor(t *testing.T) {
	plan := func(env map[string]string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		io := &IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] },
			IsTerminal: func() bool { return true }}
		if code := run(io, append([]string{"plan", "-f", example + "nest.yaml", "--live", example + "live/empty.json"}, args...)); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	if !strings.Contains(plan(nil), "\x1b[") {
		t.Fatal("no colour on a terminal: the test cannot tell --no-color works")
	}
	for name, s := range map[string]string{
		"--no-color":             plan(nil, "--no-color"),
		"NO_COLOR=1":             plan(map[string]string{"NO_COLOR": "1"}),
		"NESTBOT_NO_COLOR=true":  plan(map[string]string{"NESTBOT_NO_COLOR": "true"}),
		"--no-color after flags": plan(nil, "--no-color=true"),
	} {
		if strings.Contains(s, "\x1b[") {
			t.Errorf("%s: the plan is coloured", name)
		}
	}
}

// TestEveryVerbHasExamples: every command a user runs shows examples in
// its help (cobra's own completion and help commands aside).
func TestEveryVerbHasExamples(t *testing.T) {
	root := newRootCmd(&IO{Getenv: func(string) string { return "" }})
	root.InitDefaultCompletionCmd()
	n := 0
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			n++
			if strings.TrimSpace(sub.Example) == "" {
				t.Errorf("%s has no examples in its help", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)
	if n < 12 {
		t.Fatalf("walked only %d commands", n)
	}
}

// TestMistakesPointAtHelp: an unknown flag or command is answered with
// where to look (--help), and exit 1.
func TestMistakesPointAtHelp(t *testing.T) {
	for args, want := range map[string]string{
		"plan --colour":      "Error: unknown flag: --colour\nRun 'nestbot plan --help' for the flags it takes.\n",
		"certs status --jsn": "Error: unknown flag: --jsn\nRun 'nestbot certs status --help' for the flags it takes.\n",
		"plann":              "Error: unknown command \"plann\" for \"nestbot\"\n\nDid you mean this?\n\tplan\n\nRun 'nestbot --help' for the commands.\n",
	} {
		code, out, errOut := runCLI(t, nil, strings.Fields(args)...)
		if code != 1 || out != "" || errOut != want {
			t.Errorf("nestbot %s: exit %d\n%q\nwant\n%q", args, code, errOut, want)
		}
	}
}

// TestMissingNestYAMLPointsAtF: without nest.yaml, every verb that reads it
// says where it looked and how to name another file.
func TestMissingNestYAMLPointsAtF(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	want := "Error: no nest.yaml at " + filepath.Join(dir, "nest.yaml") + ": run nestbot in the repository that holds it, or name it with -f FILE (or NESTBOT_FILE)\n"
	for _, verb := range []string{"validate", "plan", "apply", "certs plan", "hosts"} {
		code, out, errOut := runCLI(t, nil, strings.Fields(verb)...)
		if code != 1 || out != "" || errOut != want {
			t.Errorf("nestbot %s: exit %d\n%q\nwant\n%q", verb, code, errOut, want)
		}
	}
}

// TestMissingAWSCredentialsInOneLine: a fleet in AWS planned without AWS
// credentials fails at once with one line saying what to set, not the
// SDK's retries of the instance metadata service and their error.
func TestMissingAWSCredentialsInOneLine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	home := t.TempDir()
	abs, err := filepath.Abs(example + "nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Exactly this environment: no AWS_* but the one that keeps the SDK off
	// the network (the metadata service is its last resort).
	cmd := nestbotCmd(ctx, []string{"HOME=" + home, "AWS_EC2_METADATA_DISABLED=true", "NESTBOT_STATE_DIR=" + filepath.Join(home, "state")}, "plan", "-f", abs)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("plan without AWS credentials: %v, want exit 1\n%s%s", err, stdout.String(), stderr.String())
	}
	want := "Error: aws: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE " +
		"(aws configure, aws sso login), or run where a role provides them (an EC2 instance profile; in GitHub Actions, aws-actions/configure-aws-credentials)\n"
	if got := stderr.String(); got != want {
		t.Errorf("standard error:\n%q\nwant the one line\n%q", got, want)
	}
}
