package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestApplyThenRolloutOneChangedHost plays the fleet's life from a git
// checkout against the lab: apply creates the instance, waits for it to
// join, issues and commits the certificates and rolls every host to that
// commit; then a change to one host's configuration rolls only that host.
func TestApplyThenRolloutOneChangedHost(t *testing.T) {
	t.Parallel() // boots a lab of its own
	if testing.Short() {
		t.Skip("starts a lab")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// nestbot's own identity is one of the admins, so it can sign with the CAs later.
	repo, git, id := exampleRepoWithBot(ctx, t)
	f, l := labFor(t, repo)
	env := append(l.Env(), "NESTBOT_STATE_DIR="+t.TempDir(), "NEST_AGE_IDENTITY="+id.String())
	nestbot := func(args ...string) (string, int) {
		t.Helper()
		out, err := nestbotCmd(ctx, env, args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	file := filepath.Join(repo, "nest.yaml")
	out, code := nestbot("apply", "-f", file, "--auto-approve")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	head := git("rev-parse", "HEAD")
	if !strings.HasPrefix(git("log", "-1", "--format=%s"), "nest: issue 23 certificates") {
		t.Fatalf("no certificate commit:\n%s", out)
	}
	for _, h := range []string{"ec2-controlplane", "laptop-firebat", "laptop-ultra"} {
		lh, ok := l.Host(h)
		if !ok {
			t.Fatalf("lab has no host %s", h)
		}
		if st, err := lh.State(); err != nil || st.Commit() != head {
			rev := st.Commit()
			t.Fatalf("%s runs %q after apply (%v), want the certificate commit %s\n%s", h, rev, err, head, out)
		}
	}
	if out, code := nestbot("plan", "-f", file, "--detailed-exitcode"); code != 0 {
		t.Fatalf("plan after apply: exit %d\n%s", code, out)
	}

	// One host's configuration changes.
	cfg := filepath.Join(repo, "infra/nix/hosts/laptop-ultra/configuration.nix")
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "{\n", "{\n  services.openssh.settings.ClientAliveInterval = 60;\n", 1)), 0o644)
	git("commit", "-q", "-am", "laptop-ultra: keep idle SSH sessions alive")
	next := git("rev-parse", "HEAD")
	out, code = nestbot("hosts", "-f", file)
	if code != 0 || strings.Count(out, "its system changes (nix eval)") != 1 {
		t.Fatalf("hosts: exit %d\n%s", code, out)
	}
	if out, code = nestbot("rollout", "-f", file, "--dry-run"); code != 0 || strings.Count(out, "batch ") != 1 {
		t.Fatalf("rollout --dry-run: exit %d\n%s", code, out)
	}
	if out, code = nestbot("rollout", "-f", file); code != 0 {
		t.Fatalf("rollout: exit %d\n%s", code, out)
	}
	want := map[string]string{"laptop-ultra": next, "laptop-firebat": head, "ec2-controlplane": head}
	for h, rev := range want {
		lh, _ := l.Host(h)
		if st, _ := lh.State(); st.Commit() != rev {
			got := st.Commit()
			t.Errorf("%s runs %.7s, want %.7s", h, got, rev)
		}
	}
	t.Logf("rollout:\n%s", out)

	// A certificate is reissued: until its host rolls, it serves the old one.
	serving := filepath.Join(repo, f.PKI.Dir, "derived/laptop-firebat/kubernetes-kubelet-serving.crt")
	if err := os.Remove(serving); err != nil {
		t.Fatal(err)
	}
	if out, code = nestbot("certs", "apply", "-f", file); code != 0 || !strings.Contains(out, "Committed") {
		t.Fatalf("certs apply: exit %d\n%s", code, out)
	}
	if out, _ = nestbot("plan", "-f", file); !strings.Contains(out, "not yet rolled: laptop-firebat:10250") {
		t.Fatalf("plan does not see the old certificate still served:\n%s", out)
	}
	if out, code = nestbot("rollout", "-f", file); code != 0 {
		t.Fatalf("rollout: exit %d\n%s", code, out)
	}
	if out, _ = nestbot("plan", "-f", file); strings.Contains(out, "not yet rolled") {
		t.Fatalf("still not rolled after the rollout:\n%s", out)
	}

	// An apply that reissues a host's certificate also rolls that host,
	// though its configuration did not change: it serves the new one at once.
	serving = filepath.Join(repo, f.PKI.Dir, "derived/laptop-ultra/kubernetes-kubelet-serving.crt")
	if err := os.Remove(serving); err != nil {
		t.Fatal(err)
	}
	before := git("rev-parse", "HEAD")
	if out, code = nestbot("apply", "-f", file, "--auto-approve"); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	certs := git("rev-parse", "HEAD")
	if certs == before {
		t.Fatalf("apply committed no certificate:\n%s", out)
	}
	ultra, _ := l.Host("laptop-ultra")
	if st, _ := ultra.State(); st.Commit() != certs {
		t.Errorf("laptop-ultra runs %.7s after the apply, want the certificates' commit %.7s\n%s", st.Commit(), certs, out)
	}
	firebat, _ := l.Host("laptop-firebat")
	if st, _ := firebat.State(); st.Commit() == certs {
		t.Errorf("laptop-firebat rolled, though none of its certificates changed\n%s", out)
	}
	if out, _ = nestbot("plan", "-f", file); strings.Contains(out, "not yet rolled") {
		t.Fatalf("a reissued certificate is not rolled after the apply:\n%s", out)
	}
}
