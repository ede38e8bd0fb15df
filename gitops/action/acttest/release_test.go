package acttest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// A snapshot release of this repository, as release.yml builds one for a
// tag, and a loopback "github.com" serving it: its assets under
// /ducksnest/nestbot/releases/download/<tag>/, and the repository's tags
// (v1.2.2, v1.2.3, the moving v1 and v1.2, a prerelease) over git's smart
// HTTP (git-http-backend), as github.com serves both.

// snapshot is one goreleaser release --snapshot.
type snapshot struct {
	Version string            // what the binary says: v + metadata.json's version
	Commit  string            // the commit it was built from (the source's HEAD)
	Older   string            // HEAD's parent, which v1.2.2 names
	Git     string            // the source's repository
	Dist    string            // goreleaser's dist
	Assets  map[string][]byte // archives and checksums.txt, by name
	Took    time.Duration
}

// hostTarget is the one target the snapshot builds in the tests.
var hostTarget = runtime.GOOS + "_" + runtime.GOARCH

// buildSnapshot copies the repository's source (as git lists it) into a
// repository of its own with two commits, and runs goreleaser release
// --snapshot there with .goreleaser.yaml as it is but for the targets:
// only this machine's (the full matrix compiles everything four times
// over; bench/install measures it), and no image (no docker here).
func buildSnapshot(ctx context.Context, t testing.TB, dir string) *snapshot {
	t.Helper()
	root := repoRoot(t)
	src := filepath.Join(dir, "nestbot")
	copySource(t, root, src)
	cfgPath := filepath.Join(src, ".goreleaser.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	const targets = "    goos: [linux, darwin]\n    goarch: [amd64, arm64]\n"
	if !bytes.Contains(cfg, []byte(targets)) {
		t.Fatalf(".goreleaser.yaml does not build %q", targets)
	}
	cfg = bytes.Replace(cfg, []byte(targets), fmt.Appendf(nil, "    goos: [%s]\n    goarch: [%s]\n", runtime.GOOS, runtime.GOARCH), 1)
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=release", "GIT_AUTHOR_EMAIL=release@example.com", "GIT_COMMITTER_NAME=release", "GIT_COMMITTER_EMAIL=release@example.com",
			"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	git("remote", "add", "origin", "https://github.com/ducksnest/nestbot.git") // goreleaser reads the commit only with a remote
	git("add", "-A")
	git("commit", "-q", "-m", "the release before")
	if err := os.WriteFile(filepath.Join(src, "RELEASING"), []byte("a commit after v1.2.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "RELEASING")
	git("commit", "-q", "-m", "the release")
	s := &snapshot{Git: src, Commit: git("rev-parse", "HEAD"), Older: git("rev-parse", "HEAD^"), Dist: filepath.Join(src, "dist"), Assets: map[string][]byte{}}

	cmd := exec.CommandContext(ctx, "go", "tool", "-modfile="+filepath.Join(src, "tools", "go.mod"), "goreleaser", "release", "--snapshot", "--clean", "--skip=docker")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	s.Took = time.Since(start)
	if err != nil {
		t.Fatalf("goreleaser release --snapshot: %v\n%s", err, out)
	}
	t.Logf("goreleaser release --snapshot (%s): %s", hostTarget, s.Took.Round(100*time.Millisecond))
	var meta struct{ Version, Commit string }
	data, err := os.ReadFile(filepath.Join(s.Dist, "metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Commit != s.Commit {
		t.Fatalf("goreleaser built commit %q, want the source's HEAD %s", meta.Commit, s.Commit)
	}
	s.Version = "v" + meta.Version
	for _, name := range []string{"checksums.txt", "nestbot_" + hostTarget + ".tar.gz"} {
		data, err := os.ReadFile(filepath.Join(s.Dist, name))
		if err != nil {
			t.Fatalf("the snapshot has no %s (the name action.yml downloads): %v", name, err)
		}
		s.Assets[name] = data
	}
	return s
}

// shared is the one snapshot the package's tests install from, built by
// the first that asks, in a directory TestMain removes.
var shared struct {
	once sync.Once
	dir  string
	s    *snapshot
}

func sharedSnapshot(ctx context.Context, t testing.TB) *snapshot {
	t.Helper()
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "nestbot-snapshot-")
		if err != nil {
			t.Fatal(err)
		}
		shared.dir = dir
		shared.s = buildSnapshot(ctx, t, dir)
	})
	if shared.s == nil {
		t.Fatal("the snapshot release did not build (the first test that built it says why)")
	}
	return shared.s
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// readArchive reads a .tar.gz into its files' contents and modes.
func readArchive(t testing.TB, data []byte) (files map[string][]byte, modes map[string]os.FileMode) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files, modes = map[string][]byte{}, map[string]os.FileMode{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, modes
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], modes[h.Name] = b, h.FileInfo().Mode()
	}
}

// writeArchive is the inverse of readArchive, for a tampered release.
func writeArchive(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// releaseServer is the loopback github.com of these tests.
type releaseServer struct {
	URL string // http://127.0.0.1:port/ducksnest/nestbot, the action's releases-url

	mu       sync.Mutex
	releases map[string]map[string][]byte // tag → asset name → bytes
	gets     []string                     // the assets downloaded, as tag/name
}

// startReleaseServer serves s's source repository with its tags, and no
// release until setRelease.
func startReleaseServer(ctx context.Context, t testing.TB, s *snapshot) *releaseServer {
	t.Helper()
	projects := t.TempDir()
	bare := filepath.Join(projects, "ducksnest", "nestbot.git")
	for _, args := range [][]string{
		{"clone", "-q", "--bare", s.Git, bare},
		{"--git-dir", bare, "tag", "-a", "-m", "v1.2.2", "v1.2.2", s.Older},
		{"--git-dir", bare, "tag", "-a", "-m", "v1.2.3", "v1.2.3", s.Commit},
		{"--git-dir", bare, "tag", "-a", "-m", "v1.3.0-rc.1", "v1.3.0-rc.1", s.Commit}, // a prerelease at the same commit
		{"--git-dir", bare, "tag", "v1", s.Commit},                                     // the moving tags, as release.yml makes them
		{"--git-dir", bare, "tag", "v1.2", s.Commit},
	} {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_COMMITTER_NAME=release", "GIT_COMMITTER_EMAIL=release@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	execPath, err := exec.CommandContext(ctx, "git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + projects, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	}
	rs := &releaseServer{releases: map[string]map[string][]byte{}}
	const prefix = "/ducksnest/nestbot/releases/download/"
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, prefix); ok {
			tag, name, _ := strings.Cut(rest, "/")
			rs.mu.Lock()
			data, found := rs.releases[tag][name]
			rs.gets = append(rs.gets, tag+"/"+name)
			rs.mu.Unlock()
			if !found {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(data)
			return
		}
		// git's smart HTTP, at /ducksnest/nestbot(.git)/…, as github.com answers both.
		if rest, ok := strings.CutPrefix(r.URL.Path, "/ducksnest/nestbot"); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/ducksnest/nestbot.git" + strings.TrimPrefix(rest, ".git")
			backend.ServeHTTP(w, r2)
			return
		}
		http.NotFound(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rs.URL = "http://" + ln.Addr().String() + "/ducksnest/nestbot"
	return rs
}

// setRelease publishes assets as the release tag (nil: no such release).
func (rs *releaseServer) setRelease(tag string, assets map[string][]byte) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.releases[tag] = assets
	rs.gets = nil
}

func (rs *releaseServer) downloads() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.gets...)
}

// installRun is an act run of testdata/install.yml: one job that uses
// ducksnest/nestbot@ref (this repository's source) on a watch event,
// which nestbot action skips, so the job is the install step.
type installRun struct {
	act  *actRunner
	ws   string // the job's workspace
	gh   string // a directory holding the gh stand-in, or ""
	vars map[string]string
}

func newInstallRun(t testing.TB, act *actRunner, ref string, vars map[string]string) *installRun {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", "install.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wf := filepath.Join(dir, "install.yml")
	if err := os.WriteFile(wf, bytes.ReplaceAll(tmpl, []byte("ducksnest/nestbot@REF"), []byte("ducksnest/nestbot@"+ref)), 0o644); err != nil {
		t.Fatal(err)
	}
	a := *act
	a.workflow = wf
	// The action's own actions (setup-go) as the stand-in that fails if
	// run, as for the example workflow; the action itself at ref.
	a.locals = nil
	for _, l := range act.locals {
		if !strings.HasPrefix(l, "ducksnest/nestbot@") && !strings.HasPrefix(l, "aws-actions/") {
			a.locals = append(a.locals, l)
		}
	}
	a.locals = append(a.locals, "ducksnest/nestbot@"+ref+"="+filepath.Join(act.dir, "nestbot-src"))
	ws := filepath.Join(dir, "ws")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", ws, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	return &installRun{act: &a, ws: ws, vars: vars}
}

func (ir *installRun) run(ctx context.Context, t testing.TB) *actRun {
	t.Helper()
	a := *ir.act
	if ir.gh != "" {
		a.env = append([]string(nil), a.env...)
		for i, kv := range a.env {
			if path, ok := strings.CutPrefix(kv, "PATH="); ok {
				a.env[i] = "PATH=" + ir.gh + string(os.PathListSeparator) + path
			}
		}
	}
	return a.run(ctx, t, actOptions{
		Event: "watch", Payload: []byte(`{"action":"started"}`), Workspace: ir.ws,
		Env:     map[string]string{"GITHUB_REPOSITORY": "ducksnest/infra"},
		Secrets: map[string]string{"GITHUB_TOKEN": "not-a-real-token"},
		Vars:    ir.vars,
	})
}

// ghStandIn writes a gh that answers gh attestation verify as gh does for
// an artifact (cli/cli pkg/cmd/attestation/verify): it looks the
// attestations up by the artifact's sha256 digest and accepts only one
// attested by the named repository's signer workflow. Here the attested
// digests are the genuine release's; it records its command lines.
// A stand-in: the real gh needs github.com's attestations API and Sigstore.
func ghStandIn(t testing.TB, attested map[string]bool) (dir, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "gh.log")
	var digests strings.Builder
	for d := range attested {
		digests.WriteString(d + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "attested"), []byte(digests.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `#!/usr/bin/env bash
set -euo pipefail
echo "$*" >>` + log + `
[[ "$1 $2" == "attestation verify" ]] || { echo "gh stand-in: only attestation verify" >&2; exit 2; }
[[ "${3:-}" == --help ]] && exit 0
file=$3; shift 3
repo="" workflow=""
while (($#)); do
  case "$1" in
    --repo) repo=$2; shift 2 ;;
    --signer-workflow) workflow=$2; shift 2 ;;
    *) echo "gh stand-in: unknown flag $1" >&2; exit 2 ;;
  esac
done
digest=$(sha256sum "$file" | cut -d' ' -f1)
if [[ "$repo" == ducksnest/nestbot && "$workflow" == ducksnest/nestbot/.github/workflows/release.yml ]] && grep -qx "$digest" ` + filepath.Join(dir, "attested") + `; then
  echo "Loaded digest sha256:$digest for file://$file"
  echo "✓ Verification succeeded!"
  exit 0
fi
echo "Loaded digest sha256:$digest for file://$file"
echo "✗ Loading attestations from GitHub API failed" >&2
echo "Error: failed to fetch attestations from $repo: HTTP 404: Not Found" >&2
exit 1
`
	if err := os.WriteFile(filepath.Join(dir, "gh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, log
}

// TestSnapshotReleaseAndTheActionInstallingIt builds the release's assets
// with goreleaser release --snapshot, checks what the archive holds, and
// runs the action under act against a loopback github.com serving them:
// @v1 installs the release the moving tag names, checked; a tampered
// archive, a release replaced whole, and a runner without gh where the
// attestation is required are refused, and the job fails before nestbot runs.
func TestSnapshotReleaseAndTheActionInstallingIt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release and runs act")
	}
	fixtures.Require(t, "git")
	actBin := fixtures.Require(t, "act")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s := sharedSnapshot(ctx, t)
	archiveName := "nestbot_" + hostTarget + ".tar.gz"
	files, modes := readArchive(t, s.Assets[archiveName])

	t.Run("the archive holds a static nestbot of the snapshot's version and commit", func(t *testing.T) {
		for _, name := range []string{"nestbot", "README.md", "man/man1/nestbot.1", "man/man1/nestbot-plan.1", "completions/nestbot.bash"} {
			if _, ok := files[name]; !ok {
				t.Errorf("%s lacks %s", archiveName, name)
			}
		}
		if modes["nestbot"]&0o111 == 0 {
			t.Errorf("nestbot in %s is not executable: %s", archiveName, modes["nestbot"])
		}
		sums := string(s.Assets["checksums.txt"])
		if !strings.Contains(sums, sha256Hex(s.Assets[archiveName])+"  "+archiveName+"\n") {
			t.Errorf("checksums.txt does not list %s with its sha256:\n%s", archiveName, sums)
		}
		bin := filepath.Join(t.TempDir(), "nestbot")
		if err := os.WriteFile(bin, files["nestbot"], 0o755); err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS == "linux" {
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			libs, _ := f.ImportedLibraries()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("nestbot has a dynamic loader (PT_INTERP): not static")
				}
			}
			if len(libs) > 0 {
				t.Errorf("nestbot links %v: not static", libs)
			}
			f.Close()
		}
		out, err := exec.CommandContext(ctx, bin, "version", "--json").Output()
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Version, Commit, Date, Go string }
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("version --json: %v\n%s", err, out)
		}
		if v.Version != s.Version || v.Commit != s.Commit || v.Date != "2026-01-02T03:04:05Z" || v.Go != runtime.Version() {
			t.Errorf("nestbot version --json = %+v, want version %s, commit %s, the commit's date, %s", v, s.Version, s.Commit, runtime.Version())
		}
		text, err := exec.CommandContext(ctx, bin, "--version").Output()
		if err != nil || !strings.HasPrefix(string(text), "nestbot "+s.Version+"\n  commit  "+s.Commit+"\n") {
			t.Errorf("nestbot --version: %v\n%s", err, text)
		}
	})
	if t.Failed() {
		return
	}

	rs := startReleaseServer(ctx, t, s)
	act := newActRunner(t, actBin)
	vars := map[string]string{"NESTBOT_RELEASES_URL": rs.URL}
	genuine := map[string][]byte{archiveName: s.Assets[archiveName], "checksums.txt": s.Assets["checksums.txt"]}
	installed := "nestbot " + s.Version + "\n"

	t.Run("@v1 installs the release the moving tag names, checked", func(t *testing.T) {
		rs.setRelease("v1.2.3", genuine)
		r := newInstallRun(t, act, "v1", vars).run(ctx, t)
		t.Logf("act, @v1 (download): %s", r.Took.Round(100*time.Millisecond))
		if r.Err != nil || r.Jobs["install"] != "success" {
			t.Fatalf("act: %v, jobs %v\n%s", r.Err, r.Jobs, r.Log)
		}
		for _, want := range []string{
			"Installing nestbot v1.2.3 (" + archiveName + ") from " + rs.URL,
			"sha256 " + sha256Hex(s.Assets[archiveName]) + " matches checksums.txt",
			"gh attestation verify is not available on this runner",
			installed, "commit  " + s.Commit,
			"nestbot: watch events are not handled; nothing to do",
		} {
			if !strings.Contains(r.Log, want) {
				t.Errorf("the job's log lacks %q:\n%s", want, r.Log)
			}
		}
		if strings.Contains(r.Log, "Building nestbot from source") {
			t.Errorf("@v1 built nestbot from source:\n%s", r.Log)
		}
		if got := rs.downloads(); len(got) != 2 || got[0] != "v1.2.3/"+archiveName || got[1] != "v1.2.3/checksums.txt" {
			t.Errorf("downloads %v, want v1.2.3's archive and checksums.txt", got)
		}
	})

	t.Run("@v1.2 with gh: the provenance is checked", func(t *testing.T) {
		rs.setRelease("v1.2.3", genuine)
		ir := newInstallRun(t, act, "v1.2", map[string]string{"NESTBOT_RELEASES_URL": rs.URL, "NESTBOT_ATTESTATION": "required"})
		var ghLog string
		ir.gh, ghLog = ghStandIn(t, map[string]bool{sha256Hex(s.Assets[archiveName]): true})
		r := ir.run(ctx, t)
		if r.Err != nil || r.Jobs["install"] != "success" || !strings.Contains(r.Log, installed) {
			t.Fatalf("act: %v, jobs %v\n%s", r.Err, r.Jobs, r.Log)
		}
		if !strings.Contains(r.Log, "gh attestation verify: "+archiveName+" was built by ducksnest/nestbot/.github/workflows/release.yml") {
			t.Errorf("no attestation check in the log:\n%s", r.Log)
		}
		calls, _ := os.ReadFile(ghLog)
		if !strings.Contains(string(calls), archiveName+" --repo ducksnest/nestbot --signer-workflow ducksnest/nestbot/.github/workflows/release.yml\n") {
			t.Errorf("gh was run as:\n%s", calls)
		}
	})

	// refused runs the action against a release and wants the job to fail
	// in the install step with msg, nestbot never run.
	refused := func(t *testing.T, ir *installRun, msg string) {
		t.Helper()
		r := ir.run(ctx, t)
		if r.Jobs["install"] != "failure" {
			t.Fatalf("jobs %v, want the install job to fail\n%s", r.Jobs, r.Log)
		}
		if !strings.Contains(r.Log, msg) {
			t.Errorf("the log does not say %q:\n%s", msg, r.Log)
		}
		if strings.Contains(r.Log, "watch events are not handled") || strings.Contains(r.Log, "TAMPERED") {
			t.Errorf("the refused binary ran:\n%s", r.Log)
		}
	}
	// A nestbot that is not the release's: it says it is, and would run anything.
	evil := maps.Clone(files)
	evil["nestbot"] = []byte("#!/bin/sh\necho TAMPERED >&2\nprintf '{\"version\": \"v1.2.3\", \"commit\": \"" + s.Commit + "\"}\\n'\n")
	evilArchive := writeArchive(t, evil)

	t.Run("a tampered archive is refused: its checksum", func(t *testing.T) {
		rs.setRelease("v1.2.3", map[string][]byte{archiveName: evilArchive, "checksums.txt": s.Assets["checksums.txt"]})
		refused(t, newInstallRun(t, act, "v1", vars), archiveName+" of nestbot v1.2.3 does not match checksums.txt")
	})

	t.Run("a release replaced whole is refused: its provenance", func(t *testing.T) {
		sums := strings.ReplaceAll(string(s.Assets["checksums.txt"]), sha256Hex(s.Assets[archiveName]), sha256Hex(evilArchive))
		rs.setRelease("v1.2.3", map[string][]byte{archiveName: evilArchive, "checksums.txt": []byte(sums)})
		ir := newInstallRun(t, act, "v1.2.3", vars)
		ir.gh, _ = ghStandIn(t, map[string]bool{sha256Hex(s.Assets[archiveName]): true})
		refused(t, ir, "has no valid build provenance from ducksnest/nestbot's release workflow")
	})

	t.Run("another release's assets are refused: their commit", func(t *testing.T) {
		rs.setRelease("v1.2.2", genuine) // v1.2.3's assets, served as v1.2.2 (at the commit before)
		refused(t, newInstallRun(t, act, "v1.2.2", vars), "nestbot v1.2.2 says it was built from commit "+s.Commit+", but v1.2.2 is at "+s.Older)
	})

	t.Run("attestation required, a runner without gh is refused", func(t *testing.T) {
		rs.setRelease("v1.2.3", genuine)
		refused(t, newInstallRun(t, act, "v1", map[string]string{"NESTBOT_RELEASES_URL": rs.URL, "NESTBOT_ATTESTATION": "required"}),
			"attestation: required, but gh attestation verify is not available on this runner")
	})

	t.Run("a branch builds from source", func(t *testing.T) {
		rs.setRelease("v1.2.3", genuine)
		r := newInstallRun(t, act, "main", vars).run(ctx, t)
		t.Logf("act, @main (build from source, warm build cache): %s", r.Took.Round(100*time.Millisecond))
		if r.Err != nil || r.Jobs["install"] != "success" {
			t.Fatalf("act: %v, jobs %v\n%s", r.Err, r.Jobs, r.Log)
		}
		if !strings.Contains(r.Log, "Building nestbot from source (main)") || !strings.Contains(r.Log, "nestbot devel-main\n") {
			t.Errorf("@main did not build from source:\n%s", r.Log)
		}
		if got := rs.downloads(); len(got) != 0 {
			t.Errorf("@main downloaded %v", got)
		}
	})
}

// BenchmarkInstall measures, under act, the action's job with the install
// step on each path, in the same run: @v1 downloading the release, and
// @main building nestbot from source with the build cache warm (a runner
// whose setup-go cache holds it) and cold (a fresh runner; the module
// cache stays warm, as nothing can be downloaded here). bench/install
// prints them as a table.
func BenchmarkInstall(b *testing.B) {
	actBin := fixtures.Require(b, "act")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	dir := b.TempDir()
	s := buildSnapshot(ctx, b, dir)
	rs := startReleaseServer(ctx, b, s)
	rs.setRelease("v1.2.3", s.Assets)
	act := newActRunner(b, actBin)
	vars := map[string]string{"NESTBOT_RELEASES_URL": rs.URL}
	for _, c := range []struct {
		name, ref string
		coldCache bool
	}{
		{"download@v1", "v1", false},
		{"build@main/warm-cache", "main", false},
		{"build@main/cold-cache", "main", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				ir := newInstallRun(b, act, c.ref, vars)
				if c.coldCache {
					ir.act.env = slices.Clone(ir.act.env)
					for i, kv := range ir.act.env {
						if strings.HasPrefix(kv, "GOCACHE=") {
							ir.act.env[i] = "GOCACHE=" + b.TempDir()
						}
					}
				}
				b.StartTimer()
				r := ir.run(ctx, b)
				b.StopTimer()
				if r.Err != nil || r.Jobs["install"] != "success" {
					b.Fatalf("act: %v, jobs %v\n%s", r.Err, r.Jobs, r.Log)
				}
				b.ReportMetric(installStep(r.Log), "install-s/op")
				b.StartTimer()
			}
		})
	}
}

// installStep is how long act says the install step took, in seconds.
func installStep(log string) float64 {
	m := regexp.MustCompile(`Success - Main Install nestbot \[([^\]]+)\]`).FindStringSubmatch(log)
	if m == nil {
		return 0
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		return 0
	}
	return d.Seconds()
}
