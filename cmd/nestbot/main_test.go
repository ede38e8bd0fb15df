package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const example = "../../examples/ducksnest/"

// runCLI runs the command line in-process and returns its exit code and output.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	io := &IO{In: strings.NewReader(""), Out: &out, Err: &errb,
		Getenv:     func(k string) string { return env[k] },
		IsTerminal: func() bool { return false }}
	code = run(io, args)
	return code, out.String(), errb.String()
}

func TestValidateExample(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "validate", "-f", example+"nest.yaml")
	if code != 0 || !strings.Contains(out, "valid. Fleet ducksnest: 3 hosts (1 in AWS)") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

func TestValidateReportsFiveMistakes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "nest.yaml")
	src := `version: 1
name: ducksnest
aws:
  region: ap-northeast-2
  vpc: {cidr: 10.20.0.0/16}
  subnets:
    public-a: {cidr: 10.20.0.0/33, zone: ap-northeast-2a}
hosts:
  ec2-controlplane:
    roles: [control-plane, gpu]
    aws: {instance_type: t3.medium, ami: {name: x}, subnet: public-b}
  laptop: {roles: [worker], colour: red}
tailnet: {tags: [nest]}
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, nil, "validate", "-f", file)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	want := []string{
		file + ":7:22: aws.subnets.public-a.cidr: 10.20.0.0/33 is not a valid CIDR",
		file + ":10:28: hosts.ec2-controlplane.roles[1]: role \"gpu\" does not exist",
		file + ":11:61: hosts.ec2-controlplane.aws.subnet: subnet \"public-b\" is not defined under aws.subnets",
		file + ":12:29: hosts.laptop.colour: unknown key \"colour\"",
		file + ":13:18: tailnet.tags[0]: \"nest\" is not a tag",
		"5 errors in " + file,
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("missing %q in:\n%s", w, errOut)
		}
	}
}

func TestPlanExitCodes(t *testing.T) {
	f := example + "nest.yaml"
	cases := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"converged", []string{"plan", "-f", f, "--live", example + "live/converged.json"}, 0, "No changes. The fleet matches nest.yaml."},
		{"converged detailed", []string{"plan", "-f", f, "--live", example + "live/converged.json", "--detailed-exitcode"}, 0, "No changes."},
		{"empty", []string{"plan", "-f", f, "--live", example + "live/empty.json"}, 0, "Plan: 7 to create, 0 to update, 0 to delete · 23 certs · 1 host"},
		{"empty detailed", []string{"plan", "-f", f, "--live", example + "live/empty.json", "--detailed-exitcode"}, 2, "+ aws.instance.ec2-controlplane"},
		{"drifted", []string{"plan", "-f", f, "--live", example + "live/drifted.json"}, 0, "~ pki.cert.ec2-controlplane/apiserver"},
		{"markdown", []string{"plan", "-f", f, "--live", example + "live/drifted.json", "--format", "markdown"}, 0, "<!-- nestbot:plan fleet=ducksnest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, c.args...)
			if code != c.code || !strings.Contains(out, c.contains) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", code, c.code, c.contains, out, errOut)
			}
			if strings.Contains(out, "\x1b[") {
				t.Fatal("colour when not on a terminal")
			}
		})
	}
}

func TestPlanJSON(t *testing.T) {
	code, out, _ := runCLI(t, nil, "plan", "-f", example+"nest.yaml", "--live", example+"live/drifted.json", "--format", "json")
	var doc struct {
		FormatVersion string `json:"format_version"`
		HasChanges    bool   `json:"has_changes"`
		Steps         []struct {
			Address string `json:"address"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if doc.FormatVersion != "1" || !doc.HasChanges || len(doc.Steps) != 2 {
		t.Fatalf("%+v", doc)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"NESTBOT_FILE": example + "nest.yaml", "NESTBOT_LIVE": example + "live/empty.json", "NESTBOT_FORMAT": "json", "NESTBOT_DETAILED_EXITCODE": "true"}
	code, out, errOut := runCLI(t, env, "plan")
	if code != 2 || !strings.HasPrefix(out, "{") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	// A flag on the command line wins over the variable.
	code, out, _ = runCLI(t, env, "plan", "--format", "text", "--detailed-exitcode=false")
	if code != 0 || !strings.HasPrefix(out, "nestbot plan for ducksnest") {
		t.Fatalf("exit %d: %s", code, out)
	}
	code, _, errOut = runCLI(t, map[string]string{"NESTBOT_DETAILED_EXITCODE": "maybe"}, "plan")
	if code != 1 || !strings.Contains(errOut, "NESTBOT_DETAILED_EXITCODE") {
		t.Fatalf("a bad variable: exit %d: %s", code, errOut)
	}
}

func TestPlanOutWritesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "plan.md")
	code, _, _ := runCLI(t, nil, "plan", "-f", example+"nest.yaml", "--live", example+"live/drifted.json", "--format", "markdown", "--out", out)
	data, err := os.ReadFile(out)
	if code != 0 || err != nil || !strings.Contains(string(data), "apiserver") {
		t.Fatalf("exit %d, %v", code, err)
	}
	bad := filepath.Join(dir, "bad.md")
	code, _, errOut := runCLI(t, nil, "plan", "-f", example+"nest.yaml", "--live", filepath.Join(dir, "missing.json"), "--out", bad)
	if code != 1 || !strings.Contains(errOut, "missing.json") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a failed plan left files: %v", entries)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"plan", "--format", "yaml", "--live", example + "live/empty.json", "-f", example + "nest.yaml"},
		{"validate", "extra-arg"},
		{"frobnicate"},
	} {
		if code, _, errOut := runCLI(t, nil, args...); code != 1 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

func TestSchemaMatchesCommittedFile(t *testing.T) {
	_, out, _ := runCLI(t, nil, "schema")
	want, err := os.ReadFile("../../nest.schema.json")
	if err != nil || out != string(want) {
		t.Fatalf("nestbot schema differs from nest.schema.json (%v)", err)
	}
}
