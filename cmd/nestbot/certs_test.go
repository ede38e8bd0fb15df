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
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/nest"
)

// TestCertsApplyCommitsATreeOpenSSLAndAgeAccept issues the example's
// certificates in a git checkout of it, against the lab, and checks the
// commit and the files with the real openssl and age.
func TestCertsApplyCommitsATreeOpenSSLAndAgeAccept(t *testing.T) {
	t.Parallel() // boots a lab of its own
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

	// certs status reads the tree, even without nest.yaml, in a table that
	// fits a terminal.
	t.Run("status fits 160 columns", func(t *testing.T) {
		for _, args := range [][]string{
			{"certs", "status", "--dir", dir, "-f", filepath.Join(t.TempDir(), "none.yaml")},
			{"certs", "status", "-f", filepath.Join(repo, "nest.yaml")},
		} {
			code, out, errOut := runCLI(t, nil, args...)
			if code != 0 || !strings.Contains(out, "\nec2-controlplane/\n  admin ") || !strings.HasSuffix(out, "\n23 certificates: 23 ok\n") {
				t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
			}
			if strings.Contains(out, "PRIVATE KEY") {
				t.Fatal("certs status printed a key")
			}
			for _, line := range strings.Split(out, "\n") {
				if n := utf8.RuneCountInString(line); n > 160 {
					t.Errorf("%v: a line of %d columns:\n%s", args, n, line)
				}
			}
			t.Logf("%v:\n%s", args, out)
		}
	})
}

// certs status says what it wants when it finds no tree, or no nest.yaml
// and no --dir, instead of printing an empty table.
func TestCertsStatusSaysWhatItNeeds(t *testing.T) {
	root := t.TempDir()
	certs := filepath.Join(root, "infra", "nix", "secrets", "certs")
	if err := os.MkdirAll(filepath.Join(certs, "derived", "h1"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(certs)
	code, out, errOut := runCLI(t, nil, "certs", "status", "--dir", parent, "-f", filepath.Join(root, "none.yaml"))
	want := "Error: " + parent + ": no certificate tree here (expected ca/ and derived/<host>/, the layout of pki.dir); did you mean " + certs + "?\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("a parent of the tree: exit %d\n%s%s\nwant\n%s", code, out, errOut, want)
	}
	if code, out, errOut := runCLI(t, nil, "certs", "status", "--dir", certs, "-f", filepath.Join(root, "none.yaml")); code != 0 || !strings.HasSuffix(out, "\n0 certificates\n") {
		t.Errorf("an empty tree: exit %d\n%s%s", code, out, errOut)
	}

	t.Chdir(root)
	code, out, errOut = runCLI(t, nil, "certs", "status")
	if code != 1 || out != "" || errOut != "Error: no nest.yaml at "+filepath.Join(root, "nest.yaml")+
		": run nestbot in the repository that holds it, or name it with -f FILE (or NESTBOT_FILE), or read a certificate tree without nest.yaml with --dir DIR\n" {
		t.Errorf("no nest.yaml, no --dir: exit %d\n%s%s", code, out, errOut)
	}
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
