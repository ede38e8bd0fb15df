package git

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
)

func ageEncrypt(t *testing.T, plaintext []byte) []byte {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plaintext); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ecdsaKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func rsaKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// TestCommitAndPush commits writes, an overwrite of an executable, a new
// nested directory and a directory removal as one commit, pushes it to the
// bare remote, and checks the result with the git CLI.
func TestCommitAndPush(t *testing.T) {
	f := newFixture(t)
	logs := &syncBuffer{}
	r := cloneFixture(t, f, logs)
	ctx := testContext(t)
	parent := f.commits["c4"]

	keyAge := ageEncrypt(t, ecdsaKeyPEM(t))
	crt := []byte("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n")
	msg := "nest: renew 2 certificates, rekey 1\n\n- apiserver (ec2-controlplane)\n- etcd-server (ec2-controlplane)\n- rekey: admin\n"
	sha, err := r.Commit(ctx, CommitRequest{
		Branch:  "main",
		Message: msg,
		Author:  testAuthor,
		Parent:  parent,
		Files: map[string][]byte{
			// Git sorts "certs-index.txt" before the directory "certs" ("certs/"):
			// a tree written in plain name order fails git fsck.
			"certs-index.txt":          []byte("ca.crt\n"),
			"hosts/laptop-firebat.nix": []byte("{ ... }: { networking.hostName = \"laptop-firebat\"; }\n"),
			"infra/nix/secrets/certs/derived/ec2/ca-apiserver.crt":     crt,
			"infra/nix/secrets/certs/derived/ec2/ca-apiserver.key.age": keyAge,
		},
		Remove: []string{"docs"}, // a whole directory (docs/a.md is all that is left)
	})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got, _ := r.Resolve("main"); got != sha {
		t.Errorf("local main = %s, want the new commit %s", got, sha)
	}
	if got := f.remoteHead(t, "main"); got != parent {
		t.Fatalf("the remote moved before Push: %s", got)
	}
	if err := r.Push(ctx, "main"); err != nil {
		t.Fatalf("Push: %v", err)
	}

	if got := f.remoteHead(t, "main"); got != sha {
		t.Fatalf("remote main = %s, want %s", got, sha)
	}
	if got := strings.TrimSpace(gitRun(t, f.remote, "rev-parse", "main^")); got != parent {
		t.Errorf("parent = %s, want %s", got, parent)
	}
	if out, err := gitTry(t, f.remote, "fsck", "--strict", "--no-dangling"); err != nil {
		t.Errorf("git fsck --strict: %v\n%s", err, out)
	}
	stat := gitRun(t, f.remote, "log", "--stat", "-1", "main")
	t.Logf("git log --stat:\n%s", stat)
	if !strings.Contains(stat, "5 files changed") {
		t.Errorf("git log --stat does not say 5 files changed:\n%s", stat)
	}
	got := lines(gitRun(t, f.remote, "show", "--no-renames", "--name-status", "--format=", "main"))
	want := lines("A\tcerts-index.txt\n" +
		"A\tinfra/nix/secrets/certs/derived/ec2/ca-apiserver.crt\n" +
		"A\tinfra/nix/secrets/certs/derived/ec2/ca-apiserver.key.age\n" +
		"D\tdocs/a.md\n" +
		"M\thosts/laptop-firebat.nix\n")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("changed files = %q, want %q", got, want)
	}
	meta := gitRun(t, f.remote, "log", "-1", "--format=%an%n%ae%n%cn%n%ce%n%aI", "main")
	wantMeta := fmt.Sprintf("%s\n%s\n%s\n%s\n%s\n", testAuthor.Name, testAuthor.Email, testAuthor.Name, testAuthor.Email, "2026-03-14T15:09:26+00:00")
	if meta != wantMeta {
		t.Errorf("author/committer/date = %q, want %q", meta, wantMeta)
	}
	if body := gitRun(t, f.remote, "log", "-1", "--format=%B", "main"); strings.TrimSpace(body) != strings.TrimSpace(msg) {
		t.Errorf("message = %q, want %q", body, msg)
	}
	if got := gitRun(t, f.remote, "show", "main:infra/nix/secrets/certs/derived/ec2/ca-apiserver.crt"); got != string(crt) {
		t.Errorf("committed certificate = %q", got)
	}
	if got := gitRun(t, f.remote, "show", "main:infra/nix/secrets/certs/derived/ec2/ca-apiserver.key.age"); got != string(keyAge) {
		t.Errorf("committed .key.age differs from what was given")
	}
	// Everything else is the parent's, entry for entry.
	for _, p := range []string{"hosts/ec2-controlplane.nix", "hosts/ultra/default.nix", "nest.yaml", "README.md", "certs/ca.crt", "scripts/deploy.sh"} {
		a := gitRun(t, f.remote, "rev-parse", parent+":"+p)
		b := gitRun(t, f.remote, "rev-parse", "main:"+p)
		if a != b {
			t.Errorf("%s changed though it was not asked to", p)
		}
	}
	// Pushing again is a no-op.
	if err := r.Push(ctx, "main"); err != nil {
		t.Errorf("second Push: %v", err)
	}
	for _, want := range []string{"git: committed", "git: pushed", sha} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}

	// A branch started at v1 (where deploy.sh is executable): overwriting an
	// executable keeps it executable; a file in a new directory is a regular file.
	v1, _ := r.Resolve("v1")
	sha2, err := r.Commit(ctx, CommitRequest{
		Branch: "nest/certs", Message: "nest: deploy script", Author: testAuthor, Parent: v1,
		Files: map[string][]byte{"scripts/deploy.sh": []byte("#!/bin/sh\necho deploy v2\n"), "a/b/c/d.txt": []byte("deep\n")},
	})
	if err != nil {
		t.Fatalf("Commit on a new branch: %v", err)
	}
	if err := r.Push(ctx, "refs/heads/nest/certs"); err != nil {
		t.Fatalf("Push new branch: %v", err)
	}
	if got := f.remoteHead(t, "nest/certs"); got != sha2 {
		t.Errorf("remote nest/certs = %s, want %s", got, sha2)
	}
	modes := gitRun(t, f.remote, "ls-tree", "-r", "nest/certs", "scripts/deploy.sh", "a/b/c/d.txt")
	if !strings.Contains(modes, "100755 blob") || !strings.Contains(modes, "100644 blob") {
		t.Errorf("modes:\n%s\nwant deploy.sh 100755 and d.txt 100644", modes)
	}
	if out, err := gitTry(t, f.remote, "fsck", "--strict", "--no-dangling"); err != nil {
		t.Errorf("git fsck --strict: %v\n%s", err, out)
	}
}

func TestCommitInMemoryClone(t *testing.T) {
	f := newFixture(t)
	ctx := testContext(t)
	r, err := Clone(ctx, f.url(), "", testOptions(nil))
	if err != nil {
		t.Fatalf("Clone into memory: %v", err)
	}
	head, err := r.Head()
	if err != nil || head != f.commits["c4"] {
		t.Fatalf("Head() = %s, %v", head, err)
	}
	sha, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: pin a host key", Author: testAuthor,
		Files: map[string][]byte{"infra/nix/secrets/certs/hosts/laptop-ultra.pub": []byte("ssh-ed25519 AAAAC3Nza laptop-ultra\n")}})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := r.Push(ctx, "main"); err != nil {
		t.Fatalf("Push: %v", err)
	}
	if got := f.remoteHead(t, "main"); got != sha {
		t.Errorf("remote main = %s, want %s", got, sha)
	}
	if got := lines(gitRun(t, f.remote, "show", "--name-only", "--format=", "main")); !reflect.DeepEqual(got, []string{"infra/nix/secrets/certs/hosts/laptop-ultra.pub"}) {
		t.Errorf("changed = %v", got)
	}
}

func TestCommitNothing(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	ctx := testContext(t)
	same := gitRun(t, f.remote, "show", "main:nest.yaml")
	for name, req := range map[string]CommitRequest{
		"no changes":      {},
		"same content":    {Files: map[string][]byte{"nest.yaml": []byte(same)}},
		"same, by parent": {Files: map[string][]byte{"nest.yaml": []byte(same)}, Parent: f.commits["c4"]},
	} {
		req.Branch, req.Message, req.Author = "main", "nest: nothing", testAuthor
		if _, err := r.Commit(ctx, req); !errors.Is(err, ErrNothingToCommit) {
			t.Errorf("%s: Commit = %v, want ErrNothingToCommit", name, err)
		}
	}
	if got, _ := r.Resolve("main"); got != f.commits["c4"] {
		t.Errorf("main moved to %s", got)
	}
}

func TestCommitInvalidRequests(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	ctx := testContext(t)
	ok := CommitRequest{Branch: "main", Message: "m", Author: testAuthor, Files: map[string][]byte{"x": []byte("x")}}
	for name, mutate := range map[string]func(*CommitRequest){
		"bad branch":        func(q *CommitRequest) { q.Branch = "bad..name" },
		"no branch":         func(q *CommitRequest) { q.Branch = "" },
		"empty message":     func(q *CommitRequest) { q.Message = " \n" },
		"no author email":   func(q *CommitRequest) { q.Author.Email = "" },
		"absolute path":     func(q *CommitRequest) { q.Files = map[string][]byte{"/etc/passwd": nil} },
		"dot-dot":           func(q *CommitRequest) { q.Files = map[string][]byte{"a/../b": nil} },
		".git":              func(q *CommitRequest) { q.Files = map[string][]byte{"sub/.GIT/config": nil} },
		"file and below it": func(q *CommitRequest) { q.Files = map[string][]byte{"a": nil, "a/b": nil} },
		"write and remove":  func(q *CommitRequest) { q.Remove = []string{"x"} },
		"remove missing":    func(q *CommitRequest) { q.Remove = []string{"no/such"} },
		"unknown branch":    func(q *CommitRequest) { q.Branch = "feature" },
		"unknown parent":    func(q *CommitRequest) { q.Parent = "0123456789abcdef0123456789abcdef01234567" },
		"remove under file": func(q *CommitRequest) { q.Files = nil; q.Remove = []string{"nest.yaml/x"} },
		"remove dir and below": func(q *CommitRequest) {
			q.Files = nil
			q.Remove = []string{"hosts", "hosts/ultra"}
		},
	} {
		req := ok
		mutate(&req)
		if _, err := r.Commit(ctx, req); err == nil {
			t.Errorf("%s: Commit succeeded, want an error", name)
		} else if name == "unknown parent" && !errors.Is(err, ErrUnknownRevision) {
			t.Errorf("%s: %v, want ErrUnknownRevision", name, err)
		}
	}
	if got, _ := r.Resolve("main"); got != f.commits["c4"] {
		t.Errorf("main moved to %s", got)
	}
}

// TestCommitRefusesPlaintextKeys commits real private keys under several
// names: the commit is refused, the error names exactly the offending files
// and none of their content, and no object holding a key was written.
func TestCommitRefusesPlaintextKeys(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "clone.git")
	r, err := Clone(testContext(t), f.url(), dir, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	ecKey := ecdsaKeyPEM(t)
	rsaKey := rsaKeyPEM(t)
	files := map[string][]byte{
		"infra/nix/secrets/certs/ca/ca.key":          ecKey,
		"notes/runbook.md":                           append([]byte("# how to\nthe key is:\n"), rsaKey...),
		"infra/nix/secrets/certs/ca/etcd-ca.key.age": ecKey,                // named .age, not encrypted
		"infra/nix/secrets/certs/ca/ok.key.age":      ageEncrypt(t, ecKey), // really encrypted: fine
		"infra/nix/secrets/certs/ca/ca.crt":          []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
	}
	_, err = r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: oops", Author: testAuthor, Files: files})
	var keyErr *PlaintextKeyError
	if !errors.As(err, &keyErr) {
		t.Fatalf("Commit = %v, want *PlaintextKeyError", err)
	}
	want := []string{"infra/nix/secrets/certs/ca/ca.key", "infra/nix/secrets/certs/ca/etcd-ca.key.age", "notes/runbook.md"}
	if !reflect.DeepEqual(keyErr.Paths, want) {
		t.Errorf("refused paths = %v, want %v", keyErr.Paths, want)
	}
	msg := err.Error()
	for _, p := range want {
		if !strings.Contains(msg, p) {
			t.Errorf("error does not name %s: %s", p, msg)
		}
	}
	for _, key := range [][]byte{ecKey, rsaKey} {
		for _, line := range strings.Split(string(key), "\n") {
			if len(line) >= 16 && strings.Contains(msg, line[:16]) {
				t.Errorf("error quotes key material %q: %s", line[:16], msg)
			}
		}
	}
	if strings.Contains(msg, "BEGIN") {
		t.Errorf("error quotes a PEM header: %s", msg)
	}
	if got, _ := r.Resolve("main"); got != f.commits["c4"] {
		t.Errorf("main moved to %s", got)
	}
	// No blob holding a key reached the object store.
	for _, key := range [][]byte{ecKey, append([]byte("# how to\nthe key is:\n"), rsaKey...)} {
		cmd := exec.Command("git", "hash-object", "--stdin")
		cmd.Stdin = bytes.NewReader(key)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gitTry(t, dir, "cat-file", "-e", strings.TrimSpace(string(out))); err == nil {
			t.Errorf("a blob holding a private key was written to the repository")
		}
	}

	// Without the offending files, the rest commits.
	delete(files, "infra/nix/secrets/certs/ca/ca.key")
	delete(files, "notes/runbook.md")
	delete(files, "infra/nix/secrets/certs/ca/etcd-ca.key.age")
	if _, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: ca", Author: testAuthor, Files: files}); err != nil {
		t.Errorf("Commit of the age-encrypted key and the certificate: %v", err)
	}
}

// TestCommitBranchMoved: a commit whose expected parent is no longer the
// branch's tip is refused.
func TestCommitBranchMoved(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	ctx := testContext(t)
	planned := f.commits["c4"]
	first, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: first", Author: testAuthor, Parent: planned,
		Files: map[string][]byte{"first.txt": []byte("1\n")}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: second, planned at c4", Author: testAuthor, Parent: planned,
		Files: map[string][]byte{"second.txt": []byte("2\n")}})
	var moved *BranchMovedError
	if !errors.As(err, &moved) || !errors.Is(err, ErrBranchMoved) {
		t.Fatalf("Commit with a stale parent = %v, want *BranchMovedError", err)
	}
	if moved.Expected != planned || moved.Actual != first || moved.Branch != "main" {
		t.Errorf("BranchMovedError = %+v", moved)
	}
	if got, _ := r.Resolve("main"); got != first {
		t.Errorf("main = %s, want %s", got, first)
	}
	// Re-planned against the new tip, it goes through.
	if _, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: "nest: second", Author: testAuthor, Parent: first,
		Files: map[string][]byte{"second.txt": []byte("2\n")}}); err != nil {
		t.Errorf("Commit with the right parent: %v", err)
	}
}

// TestCommitRefusesCheckedOutBranch: in a person's checkout, the checked-out
// branch is left alone; another branch can be committed to, and the
// worktree stays clean.
func TestCommitRefusesCheckedOutBranch(t *testing.T) {
	f := newFixture(t)
	r, err := Open(f.work, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	files := map[string][]byte{"certs/new.crt": []byte("crt\n")}
	_, err = r.Commit(ctx, CommitRequest{Branch: "main", Message: "m", Author: testAuthor, Files: files})
	if err == nil || !strings.Contains(err.Error(), "checked out") {
		t.Fatalf("Commit to the checked-out branch = %v, want a refusal", err)
	}
	sha, err := r.Commit(ctx, CommitRequest{Branch: "nest/certs", Message: "nest: certs", Author: testAuthor, Parent: "main", Files: files})
	if err != nil {
		t.Fatalf("Commit to a new branch: %v", err)
	}
	if got := strings.TrimSpace(gitRun(t, f.work, "rev-parse", "nest/certs")); got != sha {
		t.Errorf("nest/certs = %s, want %s", got, sha)
	}
	if st := gitRun(t, f.work, "status", "--porcelain"); st != "" {
		t.Errorf("the worktree changed:\n%s", st)
	}
	if got := strings.TrimSpace(gitRun(t, f.work, "rev-parse", "main")); got != f.commits["c4"] {
		t.Errorf("main moved")
	}
}

// TestConcurrentUse reads and commits from several goroutines at once (run
// with -race).
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if _, err := r.ReadFile("main", "nest.yaml"); err != nil {
					errs <- err
				}
				if _, err := r.ChangedPaths(f.commits["c1"], "main"); err != nil {
					errs <- err
				}
				fsys, err := r.Tree("main")
				if err != nil {
					errs <- err
					continue
				}
				if err := fs.WalkDir(fsys, ".", func(string, fs.DirEntry, error) error { return nil }); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := 0; j < 10; j++ {
			if _, err := r.Commit(ctx, CommitRequest{Branch: "main", Message: fmt.Sprintf("nest: %d", j), Author: testAuthor,
				Files: map[string][]byte{"counter": []byte(fmt.Sprint(j))}}); err != nil {
				errs <- err
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, err := r.ReadFile("main", "counter"); err != nil || string(got) != "9" {
		t.Errorf("counter = %q, %v", got, err)
	}
}
