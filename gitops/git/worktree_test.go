package git_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/gitops/git"
)

func TestCommitWorktree(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "old.crt"), []byte("old\n"), 0o644)
	run("add", ".")
	run("commit", "-q", "-m", "first")

	repo, err := git.Open(dir, git.Options{})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "certs"), 0o755)
	os.WriteFile(filepath.Join(dir, "certs", "a.crt"), []byte("cert\n"), 0o644)
	os.Remove(filepath.Join(dir, "old.crt"))
	os.WriteFile(filepath.Join(dir, "unrelated.txt"), []byte("not mine\n"), 0o644)
	sha, err := repo.CommitWorktree(context.Background(), []string{"certs/a.crt", "old.crt"}, "nest: issue 1 certificate", git.Signature{Name: "nestbot", Email: "nestbot@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	show := run("show", "--name-status", "--format=%an %s", sha)
	for _, want := range []string{"nestbot nest: issue 1 certificate", "A\tcerts/a.crt", "D\told.crt"} {
		if !strings.Contains(show, want) {
			t.Fatalf("git show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "unrelated.txt") {
		t.Fatal("committed a file it was not given")
	}
	if _, err := repo.CommitWorktree(context.Background(), []string{"certs/a.crt"}, "again", git.Signature{Name: "n", Email: "n@e"}); !errors.Is(err, git.ErrNothingToCommit) {
		t.Fatalf("empty commit: %v", err)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "certs", "a.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	_, err = repo.CommitWorktree(context.Background(), []string{"certs/a.key"}, "leak", git.Signature{Name: "n", Email: "n@e"})
	var pk *git.PlaintextKeyError
	if !errors.As(err, &pk) {
		t.Fatalf("plaintext key committed: %v", err)
	}
	if strings.Contains(run("status", "--porcelain"), "A  certs/a.key") {
		t.Fatal("the key was staged")
	}
}
