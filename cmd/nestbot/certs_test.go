package main

import (
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/nest"
)

// TestCertsApplyCommitsATreeOpenSSLAndAgeAccept issues the example's
// certificates in a git checkout of it, against the lab, and checks the
// commit and the files with the real openssl and age.
func TestCertsApplyCommitsATreeOpenSSLAndAgeAccept(t *testing.T) {
	for _, tool := range []string{"git", "openssl", "age"} {
		fixtures.Require(t, tool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	repo := copyExample(t)
	git := gitIn(ctx, t, repo)
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "the fleet")

	f, l := labFor(t, repo)
	env := l.Env()
	out, err := nestbotCmd(ctx, env, "apply", "-f", filepath.Join(repo, "nest.yaml"), "--auto-approve").CombinedOutput()
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Committed ") {
		t.Fatalf("apply did not commit the certificates:\n%s", out)
	}
	log := git("log", "-1", "--format=%an %s", "--name-only")
	if !strings.HasPrefix(log, "nestbot nest: issue 23 certificates") || !strings.Contains(log, "infra/nix/secrets/certs/secrets.nix") {
		t.Fatalf("the commit:\n%s", log)
	}
	if status := git("status", "--porcelain"); status != "" {
		t.Fatalf("left uncommitted changes:\n%s", status)
	}

	dir := filepath.Join(repo, f.PKI.Dir)
	for _, c := range []struct{ ca, leaf, purpose string }{
		{"ca/kubernetes.crt", "derived/ec2-controlplane/kubernetes-apiserver.crt", "sslserver"},
		{"ca/etcd.crt", "derived/ec2-controlplane/etcd-server.crt", "sslserver"},
		{"ca/kubernetes.crt", "derived/laptop-ultra/kubernetes-kubelet.crt", "sslclient"},
		{"ca/front-proxy.crt", "derived/ec2-controlplane/front-proxy-client.crt", "sslclient"},
	} {
		cmd := exec.CommandContext(ctx, "openssl", "verify", "-purpose", c.purpose, "-CAfile", c.ca, c.leaf)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("openssl verify %s: %v\n%s", c.leaf, err, out)
		}
	}
	// The laptop's key decrypts with the laptop's SSH host key, as agenix on it would.
	block, err := ssh.MarshalPrivateKey(lab.HostKey("laptop-ultra"), "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "ssh_host_ed25519_key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "age", "-d", "-i", keyFile, filepath.Join(dir, "derived/laptop-ultra/kubernetes-kubelet.key.age"))
	key, err := cmd.Output()
	if err != nil || !strings.Contains(string(key), "PRIVATE KEY") {
		t.Fatalf("age -d with the host's key: %v", err)
	}
	cmd = exec.CommandContext(ctx, "age", "-d", "-i", keyFile, filepath.Join(dir, "derived/ec2-controlplane/kubernetes-apiserver.key.age"))
	if err := cmd.Run(); err == nil {
		t.Fatal("one host's key decrypts another host's certificate key")
	}

	// certs status reads the tree, even without nest.yaml.
	out, err = nestbotCmd(ctx, nil, "certs", "status", "--dir", dir, "-f", filepath.Join(t.TempDir(), "none.yaml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kubernetes-apiserver") && !strings.Contains(string(out), "apiserver") {
		t.Fatalf("certs status: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "PRIVATE KEY") {
		t.Fatal("certs status printed a key")
	}
	t.Logf("certs status:\n%s", out)
}

// gitIn returns a function that runs git in dir, failing the test on error,
// with a fixed author.
func gitIn(ctx context.Context, t *testing.T, dir string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

// labFor loads the repository's nest.yaml and starts a lab seeded with it.
func labFor(t *testing.T, repo string) (*nest.Fleet, *lab.Lab) {
	t.Helper()
	f, err := nest.Load(filepath.Join(repo, "nest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.Up(lab.Options{Fleet: f, PendingDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return f, l
}
