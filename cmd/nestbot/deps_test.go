package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestShippedBinaryLinksNoLabOrTestCode fails if nestbot's dependency graph
// holds the lab, tailscale's test control server, or Go's testing package:
// the serve image and the Action's binary must carry no stand-in.
func TestShippedBinaryLinksNoLabOrTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ducksnest/nestbot/cmd/nestbot").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed only %d packages: %s", len(deps), out)
	}
	forbidden := regexp.MustCompile(`^github\.com/ducksnest/nestbot/(lab|internal/fixtures)(/|$)|^tailscale\.com/tstest(/|$)|^testing$|^net/http/httptest$`)
	var linked []string
	for _, p := range deps {
		if forbidden.MatchString(p) {
			linked = append(linked, p)
		}
	}
	if len(linked) > 0 {
		t.Fatalf("cmd/nestbot links test-only code: %s", strings.Join(linked, " "))
	}
}
