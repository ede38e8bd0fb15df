package github_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ducksnest/nestbot/internal/fixtures"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// TestSubsetMatchesThePackage re-cuts the OpenAPI subset from the
// @octokit/openapi that .ci/fixtures installs and finds the committed one
// the same, so the lab checks nestbot against the description it claims.
func TestSubsetMatchesThePackage(t *testing.T) {
	node := fixtures.Node(t)
	pkg := fixtures.Package(t, "@octokit/openapi")
	var meta struct {
		Version string `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil || json.Unmarshal(b, &meta) != nil {
		t.Fatalf("read %s/package.json: %v", pkg, err)
	}
	if got := labgithub.SubsetVersion(); got != meta.Version {
		t.Errorf("the subset was cut from @octokit/openapi %s, .ci/fixtures installs %s: run node lab/github/openapi/cut.mjs", got, meta.Version)
	}
	cmd := exec.Command(node, filepath.Join("openapi", "cut.mjs"), "--stdout", "--package", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	fresh, err := cmd.Output()
	if err != nil {
		t.Fatalf("node openapi/cut.mjs: %v\n%s", err, stderr.String())
	}
	committed, err := os.ReadFile(filepath.Join("openapi", "api.github.com.subset.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Errorf("lab/github/openapi/api.github.com.subset.json (%d bytes) differs from a fresh cut of @octokit/openapi %s (%d bytes): run node lab/github/openapi/cut.mjs and commit the result",
			len(committed), meta.Version, len(fresh))
	}
	t.Logf("subset: %d operations, %d bytes, @octokit/openapi %s", len(labgithub.Operations()), len(committed), meta.Version)
}
