package github

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGitHTTPBackendFollowsGitExecPath: the server runs the
// git-http-backend of the git on PATH, wherever that git keeps its helpers
// (here a git whose exec path is a directory of this test), not a Debian path.
func TestGitHTTPBackendFollowsGitExecPath(t *testing.T) {
	realGit, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	out, err := exec.Command(realGit, "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	helpers := filepath.Join(t.TempDir(), "libexec", "git-core")
	if err := os.MkdirAll(helpers, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"), filepath.Join(helpers, "git-http-backend")); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	wrapper := "#!/bin/sh\nexec " + realGit + " --exec-path=" + helpers + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	got, err := gitHTTPBackend()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(helpers, "git-http-backend"); got != want {
		t.Errorf("git-http-backend at %s, want %s (git --exec-path)", got, want)
	}

	// A git without the helper is an error that says what to install.
	if err := os.Remove(filepath.Join(helpers, "git-http-backend")); err != nil {
		t.Fatal(err)
	}
	if _, err := gitHTTPBackend(); err == nil || !strings.Contains(err.Error(), "install git") {
		t.Errorf("without git-http-backend: %v, want an error saying to install git", err)
	}
}
