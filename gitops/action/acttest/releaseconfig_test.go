package acttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// TestGoReleaserCheck: GoReleaser accepts .goreleaser.yaml (the tool as
// tools/go.mod pins it).
func TestGoReleaserCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds GoReleaser")
	}
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "tool", "-modfile="+filepath.Join(root, "tools", "go.mod"), "goreleaser", "check")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "1 configuration file(s) validated") {
		t.Fatalf("goreleaser check: %v\n%s", err, out)
	}
}

// TestReleaseMovesOnlyTheNewestTags: release.yml moves vX and vX.Y to a
// release only when it is the newest of each, and never to a prerelease.
func TestReleaseMovesOnlyTheNewestTags(t *testing.T) {
	git := fixtures.Require(t, "git")
	script := filepath.Join(repoRoot(t), ".ci", "release-moving-tags")
	dir := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=r", "GIT_AUTHOR_EMAIL=r@example.com", "GIT_COMMITTER_NAME=r", "GIT_COMMITTER_EMAIL=r@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(git, "init", "-q")
	run(git, "commit", "-q", "--allow-empty", "-m", "one")
	for _, tag := range []string{"v1.1.0", "v1.2.0", "v1.2.1", "v1", "v1.2"} {
		run(git, "tag", tag)
	}
	moves := func(tag string) []string { return strings.Fields(run("bash", script, tag)) }
	for _, c := range []struct {
		add, tag string
		want     []string
	}{
		{"", "v1.2.1", []string{"v1", "v1.2"}},
		{"", "v1.2.0", nil},                             // v1.2.1 is newer
		{"v1.1.5", "v1.1.5", []string{"v1.1"}},          // a patch to an older minor
		{"v1.10.0", "v1.10.0", []string{"v1", "v1.10"}}, // 1.10 sorts after 1.2
		{"", "v1.2.1", []string{"v1.2"}},                // v1.10.0 holds v1 now
		{"v2.0.0-rc.1", "v2.0.0-rc.1", nil},             // a prerelease moves nothing
		{"v2.0.0", "v2.0.0", []string{"v2", "v2.0"}},
	} {
		if c.add != "" {
			run(git, "tag", c.add)
		}
		if got := moves(c.tag); !slices.Equal(got, c.want) {
			t.Errorf("release %s moves %v, want %v", c.tag, got, c.want)
		}
	}
}

// TestDockerfilesPinTheSameRuntime: every base image of the Dockerfile and
// release.Dockerfile is pinned by digest, and both images run on the same
// base, as the same user, with the same state volume and entry point.
func TestDockerfilesPinTheSameRuntime(t *testing.T) {
	root := repoRoot(t)
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`)
	pinned := regexp.MustCompile(`^[a-z0-9./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}$`)
	runtime := func(file string) (base string, tail []string) {
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		froms := from.FindAllStringSubmatch(string(data), -1)
		if len(froms) == 0 {
			t.Fatalf("%s has no FROM", file)
		}
		for _, m := range froms {
			if !pinned.MatchString(m[1]) {
				t.Errorf("%s: FROM %s is not pinned by digest (name:tag@sha256:…)", file, m[1])
			}
		}
		last := string(data)[strings.LastIndex(string(data), "\nFROM "):]
		for _, l := range strings.Split(last, "\n") {
			for _, kw := range []string{"ENV ", "VOLUME ", "USER ", "EXPOSE ", "ENTRYPOINT ", "CMD "} {
				if strings.HasPrefix(l, kw) {
					tail = append(tail, l)
				}
			}
		}
		return froms[len(froms)-1][1], tail
	}
	srcBase, srcTail := runtime("Dockerfile")
	relBase, relTail := runtime("release.Dockerfile")
	if srcBase != relBase {
		t.Errorf("the Dockerfile runs on %s, release.Dockerfile on %s", srcBase, relBase)
	}
	if !slices.Equal(srcTail, relTail) || len(srcTail) < 5 {
		t.Errorf("the images differ:\nDockerfile:\n%s\nrelease.Dockerfile:\n%s", strings.Join(srcTail, "\n"), strings.Join(relTail, "\n"))
	}
}
