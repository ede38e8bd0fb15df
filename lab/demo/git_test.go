package demo_test

import (
	"os/exec"
	"testing"
)

// gitShow lists the files commit changed, with the git CLI.
func gitShow(t *testing.T, dir, commit string) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", dir, "show", "--name-only", "--format=%s", commit).CombinedOutput()
	if err != nil {
		t.Fatalf("git show %s: %v\n%s", commit, err, out)
	}
	return string(out)
}
