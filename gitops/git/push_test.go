package git

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushRejectedWhenRemoteMoved: two clones commit on the same tip; the
// second push is refused as a non-fast-forward, the remote keeps the first;
// after Fetch the second clone re-plans and pushes.
func TestPushRejectedWhenRemoteMoved(t *testing.T) {
	f := newFixture(t)
	a := cloneFixture(t, f, nil)
	b := cloneFixture(t, f, nil)
	ctx := testContext(t)
	tip := f.commits["c4"]

	shaA, err := a.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: from a", Author: testAuthor, Parent: tip,
		Files: map[string][]byte{"a.txt": []byte("a\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, "main"); err != nil {
		t.Fatalf("Push a: %v", err)
	}
	if _, err := b.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: from b", Author: testAuthor, Parent: tip,
		Files: map[string][]byte{"b.txt": []byte("b\n")}}); err != nil {
		t.Fatal(err)
	}
	err = b.Push(ctx, "main")
	var rejected *PushRejectedError
	if !errors.As(err, &rejected) || !rejected.NonFastForward || !errors.Is(err, ErrBranchMoved) {
		t.Fatalf("Push b = %v, want a non-fast-forward *PushRejectedError", err)
	}
	if !strings.Contains(err.Error(), "someone else pushed") || !strings.Contains(err.Error(), "re-plan") {
		t.Errorf("the error does not say what happened and what to do: %v", err)
	}
	if got := f.remoteHead(t, "main"); got != shaA {
		t.Fatalf("remote main = %s, want a's %s", got, shaA)
	}

	// Fetch: b's unpushed commit is dropped, main is the remote's.
	if err := b.Fetch(ctx); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got, _ := b.Resolve("main"); got != shaA {
		t.Fatalf("after Fetch b's main = %s, want %s", got, shaA)
	}
	shaB, err := b.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: from b, re-planned", Author: testAuthor, Parent: shaA,
		Files: map[string][]byte{"b.txt": []byte("b\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, "main"); err != nil {
		t.Fatalf("Push b after re-plan: %v", err)
	}
	log := lines(gitRun(t, f.remote, "log", "--format=%H", tip+"..main"))
	if len(log) != 2 || !strings.Contains(strings.Join(log, " "), shaA) || !strings.Contains(strings.Join(log, " "), shaB) {
		t.Errorf("remote history since c4 = %v, want a's and b's commits", log)
	}
}

// TestFetch: branches, tags and arbitrary refs pushed by someone else arrive.
func TestFetch(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	ctx := testContext(t)

	// Someone pushes with the git CLI; a PR head appears.
	writeFile(t, f.work, "hosts/laptop-firebat.nix", "{ }\n", 0o644)
	gitRun(t, f.work, "commit", "-q", "-am", "someone else")
	gitRun(t, f.work, "tag", "v2")
	gitRun(t, f.work, "push", "-q", f.remote, "main", "v2")
	gitRun(t, f.remote, "update-ref", "refs/pull/7/head", f.commits["s1"])
	newTip := f.remoteHead(t, "main")

	if err := r.Fetch(ctx); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	for rev, want := range map[string]string{"main": newTip, "v2": newTip, "HEAD": newTip} {
		if got, err := r.Resolve(rev); err != nil || got != want {
			t.Errorf("after Fetch Resolve(%s) = %s, %v; want %s", rev, got, err, want)
		}
	}
	if got, err := r.ChangedPaths(f.commits["c4"], "main"); err != nil || len(got) != 1 || got[0] != "hosts/laptop-firebat.nix" {
		t.Errorf("ChangedPaths(c4, main) = %v, %v", got, err)
	}
	if _, err := r.Resolve("refs/pull/7/head"); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("refs/pull/7/head arrived without being asked for: %v", err)
	}
	if err := r.Fetch(ctx, "+refs/pull/7/head:refs/pull/7/head"); err != nil {
		t.Fatalf("Fetch(refs/pull/7/head): %v", err)
	}
	if got, err := r.Resolve("refs/pull/7/head"); err != nil || got != f.commits["s1"] {
		t.Errorf("refs/pull/7/head = %s, %v; want %s", got, err, f.commits["s1"])
	}
	if err := r.Fetch(ctx, "not a refspec"); err == nil {
		t.Error("Fetch with a malformed refspec succeeded")
	}
	// Nothing new: no error.
	if err := r.Fetch(ctx); err != nil {
		t.Errorf("second Fetch: %v", err)
	}
}

func TestCloneFailures(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)

	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Clone(ctx, f.url(), full, Options{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Clone into a non-empty directory = %v", err)
	}
	if _, err := os.Stat(filepath.Join(full, "keep")); err != nil {
		t.Errorf("Clone touched the non-empty directory: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "clone.git")
	if _, err := Clone(ctx, "file://"+filepath.Join(t.TempDir(), "missing.git"), dir, Options{}); err == nil {
		t.Error("Clone of a missing repository succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Clone left %s behind: %v", dir, err)
	}

	// A plain path works as well as a file:// URL.
	r, err := Clone(ctx, f.remote, "", Options{})
	if err != nil {
		t.Fatalf("Clone(path): %v", err)
	}
	if got, _ := r.Resolve("side"); got != f.commits["s1"] {
		t.Errorf("side = %s", got)
	}
}

// TestCloneEmptyRemote: the first commit of an empty repository.
func TestCloneEmptyRemote(t *testing.T) {
	remote := filepath.Join(t.TempDir(), "empty.git")
	gitRun(t, filepath.Dir(remote), "init", "-q", "--bare", "-b", "main", remote)
	ctx := testContext(t)
	r, err := Clone(ctx, "file://"+remote, filepath.Join(t.TempDir(), "clone.git"), testOptions(nil))
	if err != nil {
		t.Fatalf("Clone of an empty repository: %v", err)
	}
	if _, err := r.Head(); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("Head of an empty clone = %v, want ErrUnknownRevision", err)
	}
	if _, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: nothing", Author: testAuthor}); !errors.Is(err, ErrNothingToCommit) {
		t.Errorf("empty root commit = %v, want ErrNothingToCommit", err)
	}
	sha, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: init", Author: testAuthor,
		Files: map[string][]byte{"nest.yaml": []byte("version: 1\n")}})
	if err != nil {
		t.Fatalf("root Commit: %v", err)
	}
	if err := r.Push(ctx, "main"); err != nil {
		t.Fatalf("Push: %v", err)
	}
	if got := strings.TrimSpace(gitRun(t, remote, "rev-parse", "main")); got != sha {
		t.Errorf("remote main = %s, want %s", got, sha)
	}
	if got := strings.TrimSpace(gitRun(t, remote, "rev-list", "--count", "main")); got != "1" {
		t.Errorf("commits on main = %s, want 1", got)
	}
	if _, err := r.Commit(ctx, CommitRequest{Branch: "other", Message: "m", Author: testAuthor,
		Files: map[string][]byte{"x": nil}}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Commit to a missing branch without Parent = %v, want a does-not-exist error", err)
	}
	if err := r.Push(ctx, "nope"); err == nil {
		t.Error("Push of a missing branch succeeded")
	}
}
