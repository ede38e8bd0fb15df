package git

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckoutBranchCommitAndPush(t *testing.T) {
	ctx := context.Background()
	remote := t.TempDir()
	gitRun(t, remote, "init", "-q", "--bare", "-b", "main")
	work := t.TempDir()
	gitRun(t, work, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "nest.yaml"), []byte("name: x\n"), 0o644)
	gitRun(t, work, "add", ".")
	gitRun(t, work, "commit", "-qm", "one")
	gitRun(t, work, "push", "-q", remote, "main")
	gitRun(t, work, "push", "-q", remote, "main:refs/pull/7/head")

	dir := filepath.Join(t.TempDir(), "co")
	r, err := Checkout(ctx, "file://"+remote, dir, "main", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "nest.yaml")); err != nil || string(b) != "name: x\n" {
		t.Fatalf("nest.yaml in the checkout: %q, %v", b, err)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("public\n"), 0o644)
	sha, err := r.CommitWorktree(ctx, []string{filepath.Join(dir, "cert.pem")}, "certs", Signature{Name: "nestbot", Email: "n@b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(gitRun(t, remote, "rev-parse", "main")); got != sha {
		t.Errorf("remote main at %s, want the pushed commit %s", got, sha)
	}

	pr := filepath.Join(t.TempDir(), "pr")
	r2, err := Checkout(ctx, "file://"+remote, pr, "refs/pull/7/head", Options{})
	if err != nil {
		t.Fatal(err)
	}
	head, err := r2.Head()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(gitRun(t, remote, "rev-parse", "refs/pull/7/head")); head != want {
		t.Errorf("checked out %s, want refs/pull/7/head at %s", head, want)
	}
}

func TestCheckoutRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
	if _, err := Checkout(context.Background(), "file:///nonexistent", dir, "main", Options{}); err == nil {
		t.Fatal("checked out into a directory that was not empty")
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err != nil {
		t.Errorf("the directory's file is gone: %v", err)
	}
}
