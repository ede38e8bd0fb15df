package acttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// An act run of examples/workflows/nest.yml. act runs the job on this
// machine (-P ubuntu-latest=-self-hosted), never fetches anything
// (--action-offline-mode, and --local-repository for every action the
// workflow and action.yml name), and prints its log as JSON lines, from
// which the job results, the step outputs and the step summary are read.

// actRunner runs act against one lab.
type actRunner struct {
	bin      string // act
	root     string // this repository
	workflow string // examples/workflows/nest.yml
	dir      string // act's files: the action's source, its cache, HOME
	env      []string
	locals   []string // --local-repository values
}

// newActRunner prepares act's files: a copy of this repository's source as
// ducksnest/nestbot@<ref> (the action as the runner downloads it: tracked
// and new files, nothing ignored), the stand-in for every other action, and
// the environment of the act process, which a self-hosted job inherits (Go
// and its caches, as on a runner with Go installed; nothing from outside).
func newActRunner(t testing.TB, bin string) *actRunner {
	t.Helper()
	root, err := filepath.Abs(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	a := &actRunner{bin: bin, root: root, workflow: filepath.Join(root, "examples", "workflows", "nest.yml"), dir: t.TempDir()}
	src := filepath.Join(a.dir, "nestbot-src")
	copySource(t, root, src)
	stub, err := filepath.Abs(filepath.Join("testdata", "remote-action"))
	if err != nil {
		t.Fatal(err)
	}
	for _, uses := range usedActions(t, a.workflow, filepath.Join(root, "action.yml")) {
		dest := stub
		if strings.HasPrefix(uses, "ducksnest/nestbot@") {
			dest = src
		}
		a.locals = append(a.locals, uses+"="+dest)
	}
	goenv := func(name string) string {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	home := filepath.Join(a.dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	a.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"GOCACHE=" + goenv("GOCACHE"), // the test's build cache: the action's go build reuses it
		"GOMODCACHE=" + goenv("GOMODCACHE"),
		"GOPATH=" + goenv("GOPATH"),
		"GOPROXY=off",
		"GOTOOLCHAIN=local",
		"GOFLAGS=-mod=readonly",
		"ACT_DISABLE_VERSION_CHECK=1",
	}
	return a
}

// usedActions lists the remote actions (owner/repo@ref) the files name.
func usedActions(t testing.TB, files ...string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*(?:-\s*)?uses:\s*([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[A-Za-z0-9_.-]+)`)
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
	}
	if !slices.ContainsFunc(out, func(s string) bool { return strings.HasPrefix(s, "ducksnest/nestbot@") }) {
		t.Fatalf("%s uses no ducksnest/nestbot@<ref>", files[0])
	}
	return out
}

// copySource copies the repository's files as git lists them (tracked, and
// new but not ignored) to dst.
func copySource(t testing.TB, root, dst string) {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("list the action's source with git ls-files in %s: %v (the test copies the action as git sees it)", root, err)
	}
	n := 0
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		from := filepath.Join(root, filepath.FromSlash(name))
		fi, err := os.Lstat(from)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree
		} else if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("git ls-files listed nothing in %s", root)
	}
}

// actRun is what one act run did.
type actRun struct {
	Err     error
	Took    time.Duration
	Log     string            // the messages, one a line
	Raw     []byte            // act's output as it printed it
	Jobs    map[string]string // job id → success or failure, for the jobs that ran
	Outputs map[string]string // the outputs of the step with id "nest"
	Summary string            // the step summaries, as the steps wrote them
}

// actOptions are one run's event and settings.
type actOptions struct {
	Event     string // pull_request, push, schedule, workflow_dispatch, ...
	Payload   []byte
	Workspace string            // the job's workspace (a checkout of the infra repository)
	Env       map[string]string // --env-file
	Secrets   map[string]string // --secret-file
	Vars      map[string]string // --var-file
	Inputs    map[string]string // --input-file (workflow_dispatch)
}

func (a *actRunner) run(ctx context.Context, t testing.TB, o actOptions) *actRun {
	t.Helper()
	dir, err := os.MkdirTemp(a.dir, "run-")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{o.Event,
		"--workflows", a.workflow,
		"--eventpath", write("event.json", o.Payload),
		"--directory", o.Workspace,
		"--platform", "ubuntu-latest=-self-hosted",
		"--action-offline-mode",
		"--action-cache-path", filepath.Join(a.dir, "cache"),
		"--env-file", write("env", dotenv(t, o.Env)),
		"--secret-file", write("secrets", dotenv(t, o.Secrets)),
		"--var-file", write("vars", dotenv(t, o.Vars)),
		"--input-file", write("inputs", dotenv(t, o.Inputs)),
		"--defaultbranch", "main",
		"--no-cache-server",
		"--cache-server-addr", "127.0.0.1",
		"--artifact-server-addr", "127.0.0.1",
		"--json",
	}
	for _, l := range a.locals {
		args = append(args, "--local-repository", l)
	}
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Dir = o.Workspace
	cmd.Env = a.env
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	raw, err := cmd.CombinedOutput()
	r := &actRun{Err: err, Took: time.Since(start), Raw: raw, Jobs: map[string]string{}, Outputs: map[string]string{}}
	r.parse(raw)
	return r
}

// dotenv writes KEY=VALUE lines as act's --env-file, --secret-file,
// --var-file and --input-file read them (godotenv). The lab's values need
// no quoting; one that would is refused.
func dotenv(t testing.TB, m map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v := m[k]; strings.ContainsAny(v, "\n\r\"'`#$ \\") {
			t.Fatalf("%s: the value would need quoting in a dotenv file", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, m[k])
	}
	return b.Bytes()
}

// actLine is one line of act's JSON log.
type actLine struct {
	Msg       string   `json:"msg"`
	JobID     string   `json:"jobID"`
	StepID    []string `json:"stepID"`
	Command   string   `json:"command"`
	Name      string   `json:"name"`
	Arg       string   `json:"arg"`
	Content   string   `json:"content"`
	JobResult string   `json:"jobResult"`
}

func (r *actRun) parse(raw []byte) {
	var log strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var l actLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			log.WriteString(sc.Text() + "\n") // not act's: a line of its own or a panic
			continue
		}
		if l.JobID != "" {
			log.WriteString("[" + l.JobID + "] ")
		}
		log.WriteString(strings.TrimRight(l.Msg, "\n") + "\n")
		switch {
		case l.JobResult != "":
			r.Jobs[l.JobID] = l.JobResult
		case l.Command == "set-output" && slices.Equal(l.StepID, []string{"nest"}):
			r.Outputs[l.Name] = l.Arg
		case l.Command == "summary":
			r.Summary += l.Content
		}
	}
	r.Log = log.String()
}
