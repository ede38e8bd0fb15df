package git

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// TestWritePackIsAShallowCommit checks the pack with the real git: unpacked
// into an empty repository and marked shallow, the commit is complete
// (git fsck), its tree is the original's, and its history is not there.
func TestWritePackIsAShallowCommit(t *testing.T) {
	fixtures.Require(t, "git")
	dir := t.TempDir()
	run := func(dir string, stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run(dir, nil, "init", "-q")
	os.MkdirAll(filepath.Join(dir, "infra/nix/hosts"), 0o755)
	os.WriteFile(filepath.Join(dir, "infra/nix/flake.nix"), []byte("{ }\n"), 0o644)
	run(dir, nil, "add", "-A")
	run(dir, nil, "commit", "-qm", "one")
	os.WriteFile(filepath.Join(dir, "infra/nix/hosts/a.nix"), []byte("{ a = 1; }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("infra/nix/flake.nix", filepath.Join(dir, "link"))
	run(dir, nil, "add", "-A")
	run(dir, nil, "commit", "-qm", "two")
	rev := run(dir, nil, "rev-parse", "HEAD")

	repo, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pack bytes.Buffer
	if err := repo.WritePack(&pack, rev); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	run(dst, nil, "init", "-q")
	run(dst, pack.Bytes(), "unpack-objects", "-q")
	os.WriteFile(filepath.Join(dst, ".git", "shallow"), []byte(rev+"\n"), 0o644)
	run(dst, nil, "update-ref", "refs/heads/main", rev)
	run(dst, nil, "fsck", "--strict", "--no-dangling")
	if got, want := run(dst, nil, "ls-tree", "-r", rev), run(dir, nil, "ls-tree", "-r", rev); got != want {
		t.Errorf("tree:\n%s\nwant:\n%s", got, want)
	}
	if n := run(dst, nil, "rev-list", "--count", rev); n != "1" {
		t.Errorf("history: %s commits, want only the one", n)
	}
}
