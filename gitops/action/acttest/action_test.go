package acttest

import (
	"cmp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// actionMeta is the part of action.yml these tests read.
type actionMeta struct {
	Name   string `yaml:"name"`
	Inputs map[string]struct {
		Default string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Value string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

type actionStep struct {
	ID    string            `yaml:"id"`
	Name  string            `yaml:"name"`
	If    string            `yaml:"if"`
	Uses  string            `yaml:"uses"`
	Shell string            `yaml:"shell"`
	Run   string            `yaml:"run"`
	Env   map[string]string `yaml:"env"`
	With  map[string]string `yaml:"with"`
}

// repoRoot is the module's root.
func repoRoot(t testing.TB) string {
	t.Helper()
	return fixtures.RepoRoot()
}

func loadAction(t *testing.T) actionMeta {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a actionMeta
	if err := yaml.Unmarshal(data, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	return a
}

// inputRef finds the inputs an expression reads.
var inputRef = regexp.MustCompile(`inputs\.([A-Za-z0-9_-]+)`)

// TestActionPassesInputsOnlyThroughEnv checks action.yml's one rule about
// inputs: no run: script holds an expression (an input pasted into a script
// is a script injection), and every input reaches a step, through env: or
// with: (or an if:).
func TestActionPassesInputsOnlyThroughEnv(t *testing.T) {
	a := loadAction(t)
	if a.Runs.Using != "composite" {
		t.Fatalf("runs.using is %q, want composite", a.Runs.Using)
	}
	used := map[string]bool{}
	for i, st := range a.Runs.Steps {
		if strings.Contains(st.Run, "${{") {
			t.Errorf("step %d (%s): its run: script holds an expression; pass the value through env:", i, st.Name)
		}
		var refs []string
		for _, v := range st.Env {
			refs = append(refs, v)
		}
		for _, v := range st.With {
			refs = append(refs, v)
		}
		refs = append(refs, st.If)
		for _, r := range refs {
			for _, m := range inputRef.FindAllStringSubmatch(r, -1) {
				used[m[1]] = true
			}
		}
	}
	for name := range a.Inputs {
		if !used[name] {
			t.Errorf("input %s reaches no step", name)
		}
	}
	for name := range used {
		if _, ok := a.Inputs[name]; !ok {
			t.Errorf("a step reads inputs.%s, which action.yml does not declare", name)
		}
	}
	for _, name := range []string{"changes", "result", "plan-json"} {
		if got, want := a.Outputs[name].Value, "${{ steps.run.outputs."+name+" }}"; got != want {
			t.Errorf("output %s is %q, want %q", name, got, want)
		}
	}
	if !slices.ContainsFunc(a.Runs.Steps, func(s actionStep) bool {
		return s.ID == "run" && strings.Contains(s.Run, `"$RUNNER_TEMP/nestbot" action`)
	}) {
		t.Error(`no step with id "run" runs "$RUNNER_TEMP/nestbot" action`)
	}
}

// TestActionScriptsPassShellcheck runs shellcheck on every run: script of
// action.yml, as the runner runs it (bash -e {0}).
func TestActionScriptsPassShellcheck(t *testing.T) {
	shellcheck := fixtures.Require(t, "shellcheck")
	a := loadAction(t)
	dir := t.TempDir()
	n := 0
	for i, st := range a.Runs.Steps {
		if st.Run == "" {
			continue
		}
		if st.Shell != "bash" {
			t.Errorf("step %d (%s): shell %q; the scripts are written for bash", i, st.Name, st.Shell)
			continue
		}
		n++
		file := filepath.Join(dir, strings.ReplaceAll(cmp.Or(st.ID, st.Name), " ", "-")+".sh")
		// The runner runs it as `bash --noprofile --norc -eo pipefail {0}`.
		if err := os.WriteFile(file, []byte("#!/usr/bin/env bash\n"+st.Run), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(shellcheck, "--shell=bash", "--severity=style", file).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck on the script of step %q:\n%s", cmp.Or(st.ID, st.Name), out)
		}
	}
	if n == 0 {
		t.Fatal("action.yml has no run: script")
	}
	// The scripts the steps run from the action's own files.
	scripts := map[string]bool{}
	for _, st := range a.Runs.Steps {
		for _, m := range actionScript.FindAllStringSubmatch(st.Run, -1) {
			scripts[m[1]] = true
		}
	}
	if !scripts["gitops/action/install.sh"] {
		t.Errorf("no step runs gitops/action/install.sh: %v", scripts)
	}
	for script := range scripts {
		out, err := exec.Command(shellcheck, "--shell=bash", "--severity=style", filepath.Join(repoRoot(t), script)).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck on %s:\n%s", script, out)
		}
	}
}

// actionScript finds a script of the action's that a run: script runs.
var actionScript = regexp.MustCompile(`"\$GITHUB_ACTION_PATH/([A-Za-z0-9_./-]+\.sh)"`)
