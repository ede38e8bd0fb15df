package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ducksnest/nestbot/internal/cli"
)

// TestNotRootSaysTheLabNeedsRoot runs this test binary again as the
// unprivileged user nobody with each of the lab's commands that boot
// hosts: each exits non-zero before it starts anything, saying the lab
// needs root and what to do.
func TestNotRootSaysTheLabNeedsRoot(t *testing.T) {
	if args := os.Getenv("NESTLAB_TEST_ARGS"); args != "" {
		os.Exit(run(cli.StdIO(), strings.Fields(args)))
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a command as nobody")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "nestlab-nobody-") // t.TempDir's parent is root's only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nestlab.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache") // a prepare that got past the check would fill it
	for _, args := range []string{"demo", "up -f nest.yaml", "prepare"} {
		cmd := exec.Command(bin, "-test.run=^TestNotRootSaysTheLabNeedsRoot$")
		cmd.Dir = dir
		cmd.Env = []string{"NESTLAB_TEST_ARGS=" + args, "NESTLAB_CACHE=" + cache, "PATH=/usr/bin:/bin", "HOME=" + dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		var ee *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() <= 0 {
			t.Errorf("nestlab %s as nobody: %v, want a non-zero exit", args, err)
		}
		msg := stderr.String()
		if !strings.Contains(msg, "the lab needs root, and this runs as uid 65534") || !strings.Contains(msg, "run it as root") {
			t.Errorf("nestlab %s as nobody said %q, want that the lab needs root and what to do", args, msg)
		}
		if _, err := os.Stat(cache); !os.IsNotExist(err) {
			t.Errorf("nestlab %s as nobody made %s (%v)", args, cache, err)
		}
	}
}
