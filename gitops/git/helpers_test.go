package git

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fixtures are built, and results checked, with the git CLI: a peer
// nobody here wrote.

var testAuthor = Signature{Name: "nestbot", Email: "nestbot@ducksnest.example"}

var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// gitEnv isolates the git CLI from the machine's configuration.
func gitEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	return append(os.Environ(),
		"HOME="+home,
		"XDG_CONFIG_HOME="+home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Duck Dev", "GIT_AUTHOR_EMAIL=dev@ducksnest.example",
		"GIT_COMMITTER_NAME=Duck Dev", "GIT_COMMITTER_EMAIL=dev@ducksnest.example",
		"GIT_TERMINAL_PROMPT=0",
	)
}

// gitRun runs git in dir and returns its standard output; it fails the test
// when git fails.
func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitTry(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func gitTry(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &gitError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type gitError struct {
	err    error
	stderr string
}

func (e *gitError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// fixture is a history built with the git CLI in a working repository, and
// a bare "remote" cloned from it.
//
//	c1  hosts/{ec2-controlplane,laptop-firebat,laptop-ultra}.nix, nest.yaml,
//	    docs/{a,b}.md, scripts/deploy.sh (executable), README.md   tag v0
//	c2  modify hosts/laptop-firebat.nix, add certs/ca.crt
//	c3  rename hosts/laptop-ultra.nix -> hosts/ultra/default.nix, modify nest.yaml   tag v1 (annotated)
//	c4  delete docs/b.md, scripts/deploy.sh loses its executable bit    = main
//	s1  on branch side from c2: modify README.md, add side.txt
type fixture struct {
	work    string
	remote  string
	commits map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{work: filepath.Join(root, "work"), remote: filepath.Join(root, "remote.git"), commits: map[string]string{}}
	gitRun(t, root, "init", "-q", "-b", "main", f.work)
	w := f.work
	commit := func(label, msg string) {
		gitRun(t, w, "add", "-A")
		gitRun(t, w, "commit", "-q", "-m", msg)
		f.commits[label] = strings.TrimSpace(gitRun(t, w, "rev-parse", "HEAD"))
	}
	writeFile(t, w, "hosts/ec2-controlplane.nix", "{ ... }: { networking.hostName = \"ec2-controlplane\"; }\n", 0o644)
	writeFile(t, w, "hosts/laptop-firebat.nix", "{ ... }: { networking.hostName = \"laptop-firebat\"; }\n", 0o644)
	writeFile(t, w, "hosts/laptop-ultra.nix", "{ ... }: { networking.hostName = \"laptop-ultra\"; }\n", 0o644)
	writeFile(t, w, "nest.yaml", "version: 1\nname: ducksnest\n", 0o644)
	writeFile(t, w, "docs/a.md", "# a\n", 0o644)
	writeFile(t, w, "docs/b.md", "# b\n", 0o644)
	writeFile(t, w, "scripts/deploy.sh", "#!/bin/sh\necho deploy\n", 0o755)
	writeFile(t, w, "README.md", "DucksNest\n", 0o644)
	commit("c1", "c1: the fleet")
	gitRun(t, w, "tag", "v0")

	writeFile(t, w, "hosts/laptop-firebat.nix", "{ ... }: { networking.hostName = \"laptop-firebat\"; time.timeZone = \"Asia/Seoul\"; }\n", 0o644)
	writeFile(t, w, "certs/ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 0o644)
	commit("c2", "c2: firebat timezone, ca")

	if err := os.MkdirAll(filepath.Join(w, "hosts", "ultra"), 0o755); err != nil {
		t.Fatal(err)
	}
	gitRun(t, w, "mv", "hosts/laptop-ultra.nix", "hosts/ultra/default.nix")
	writeFile(t, w, "nest.yaml", "version: 1\nname: ducksnest\nflake: infra/nix\n", 0o644)
	commit("c3", "c3: ultra moves into a directory")
	gitRun(t, w, "tag", "-a", "v1", "-m", "release v1")

	gitRun(t, w, "rm", "-q", "docs/b.md")
	if err := os.Chmod(filepath.Join(w, "scripts", "deploy.sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	commit("c4", "c4: drop b, deploy.sh not executable")

	gitRun(t, w, "checkout", "-q", "-b", "side", f.commits["c2"])
	writeFile(t, w, "README.md", "DucksNest, on the side\n", 0o644)
	writeFile(t, w, "side.txt", "side\n", 0o644)
	commit("s1", "s1: side work")
	gitRun(t, w, "checkout", "-q", "main")

	gitRun(t, root, "clone", "-q", "--bare", f.work, f.remote)
	return f
}

func (f *fixture) url() string { return "file://" + f.remote }

// remoteHead is where the remote's branch is, by the git CLI.
func (f *fixture) remoteHead(t *testing.T, branch string) string {
	t.Helper()
	return strings.TrimSpace(gitRun(t, f.remote, "rev-parse", "refs/heads/"+branch))
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testOptions(logs *syncBuffer) Options {
	opts := Options{Now: func() time.Time { return testNow }}
	if logs != nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return opts
}

func cloneFixture(t *testing.T, f *fixture, logs *syncBuffer) *Repo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Clone(ctx, f.url(), filepath.Join(t.TempDir(), "clone.git"), testOptions(logs))
	if err != nil {
		t.Fatalf("Clone: %v", err)
	}
	return r
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
