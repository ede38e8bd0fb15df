package main

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
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

// TestShippedBinaryKeepsDeadCodeElimination fails if nestbot links a
// function that calls reflect's Method or MethodByName (text/template's
// field lookups do): with one, the linker keeps every exported method of
// every type put in an interface, and the EC2 client's 600 doubled the
// binary (87 MB stripped; 39 MB without). The linker's -dumpdep names the
// function.
func TestShippedBinaryKeepsDeadCodeElimination(t *testing.T) {
	if testing.Short() {
		t.Skip("links nestbot")
	}
	cmd := exec.Command("go", "build", "-ldflags=-dumpdep", "-o", os.DevNull, "github.com/ducksnest/nestbot/cmd/nestbot")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build -ldflags=-dumpdep: %v\n%.2000s", err, out)
	}
	var reflecting []string
	edges := 0
	for _, line := range strings.Split(string(out), "\n") {
		edges++
		if from, _, ok := strings.Cut(line, " <ReflectMethod> ->"); ok && !slices.Contains(reflecting, from) {
			reflecting = append(reflecting, from)
		}
	}
	if edges < 10000 {
		t.Fatalf("-dumpdep printed only %d lines: %.2000s", edges, out)
	}
	if len(reflecting) > 0 {
		t.Errorf("nestbot links functions that look methods up by reflection, which keeps every exported method of every type in an interface: %s", strings.Join(reflecting, ", "))
	}
}
