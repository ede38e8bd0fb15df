package github_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-github/v93/github"

	labgithub "github.com/ducksnest/nestbot/lab/github"
)

func tokenAuth(tok string) *githttp.BasicAuth {
	return &githttp.BasicAuth{Username: "x-access-token", Password: tok}
}

// TestGoGitCloneAndPush clones over smart HTTP with go-git and an
// installation token, commits, pushes, and sees the branch move on the
// server and the open pull request follow it.
func TestGoGitCloneAndPush(t *testing.T) {
	var mu sync.Mutex
	var pushes []labgithub.Pushed
	e := setup(t, func(c *labgithub.Config) {
		c.OnPush = func(p labgithub.Pushed) { mu.Lock(); pushes = append(pushes, p); mu.Unlock() }
	})
	e.pushBranch(t, "feature", map[string][]byte{"f": []byte("1\n")})
	pr, err := e.srv.OpenPR(owner, repo, "feature", labgithub.PROptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := gogit.PlainCloneContext(e.ctx, dir, false, &gogit.CloneOptions{URL: e.srv.CloneURL(owner, repo), Auth: tokenAuth(e.tok), ReferenceName: "refs/heads/feature"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "nest.yaml"))
	if err != nil || !bytes.Equal(got, initialFiles["nest.yaml"]) {
		t.Fatalf("cloned nest.yaml: %v %q", err, got)
	}
	wt, _ := r.Worktree()
	os.WriteFile(filepath.Join(dir, "f"), []byte("2\n"), 0o644)
	wt.Add("f")
	sha, err := wt.Commit("bump f", &gogit.CommitOptions{Author: &object.Signature{Name: "nestbot", Email: "bot@lab", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PushContext(e.ctx, &gogit.PushOptions{Auth: tokenAuth(e.tok), RefSpecs: []config.RefSpec{"refs/heads/feature:refs/heads/feature"}}); err != nil {
		t.Fatal(err)
	}
	tip, _ := e.srv.Branch(owner, repo, "feature")
	if tip != sha.String() {
		t.Errorf("feature on the server is %s, pushed %s", tip, sha)
	}
	mu.Lock()
	if len(pushes) != 1 || pushes[0].Ref != "refs/heads/feature" || pushes[0].After != sha.String() || pushes[0].Before != pr.HeadSHA ||
		pushes[0].Pusher != e.srv.App().BotLogin || pushes[0].Owner != owner {
		t.Errorf("OnPush saw %+v", pushes)
	}
	mu.Unlock()
	held, _ := e.srv.PullRequest(owner, repo, pr.Number)
	if held.HeadSHA != sha.String() {
		t.Errorf("the pull request's head is %s after the push, want %s", held.HeadSHA, sha)
	}
	// GitHub's refs/pull/<n>/head follows too.
	remote := gogit.NewRemote(nil, &config.RemoteConfig{Name: "origin", URLs: []string{e.srv.CloneURL(owner, repo)}})
	refs, err := remote.ListContext(e.ctx, &gogit.ListOptions{Auth: tokenAuth(e.tok)})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ref := range refs {
		if ref.Name() == plumbing.ReferenceName("refs/pull/1/head") && ref.Hash() == sha {
			found = true
		}
	}
	if !found {
		t.Errorf("refs/pull/1/head does not point at %s", sha)
	}
}

// TestGitNeedsAToken: no token, a wrong one, and a reader pushing are all
// refused as GitHub refuses them.
func TestGitNeedsAToken(t *testing.T) {
	e := setup(t)
	url := e.srv.CloneURL(owner, repo)
	for name, auth := range map[string]transport.AuthMethod{"no token": nil, "wrong token": tokenAuth("ghs_wrong")} {
		_, err := gogit.PlainCloneContext(e.ctx, t.TempDir(), false, &gogit.CloneOptions{URL: url, Auth: auth})
		if !errors.Is(err, transport.ErrAuthenticationRequired) {
			t.Errorf("%s: want authentication required, got %v", name, err)
		}
	}
	reader := e.srv.Token("eve")
	dir := t.TempDir()
	r, err := gogit.PlainCloneContext(e.ctx, dir, false, &gogit.CloneOptions{URL: url, Auth: tokenAuth(reader)})
	if err != nil {
		t.Fatalf("a reader clones a public repository: %v", err)
	}
	wt, _ := r.Worktree()
	os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644)
	wt.Add("x")
	wt.Commit("x", &gogit.CommitOptions{Author: &object.Signature{Name: "eve", Email: "eve@lab", When: time.Now()}})
	err = r.PushContext(e.ctx, &gogit.PushOptions{Auth: tokenAuth(reader)})
	if err == nil {
		t.Fatal("a reader pushed")
	}
	if !errors.Is(err, transport.ErrAuthorizationFailed) && !strings.Contains(err.Error(), "403") {
		t.Errorf("reader push: %v", err)
	}
	if strings.Contains(e.logs.String(), reader) || strings.Contains(e.logs.String(), e.tok) {
		t.Error("a token reached the server's log")
	}
}

// TestGitCLICloneAndPush uses the real git client, with the token sent as
// GitHub Actions sends it (an extra Authorization header).
func TestGitCLICloneAndPush(t *testing.T) {
	e := setup(t)
	header := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+e.tok))
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(e.ctx, "git", append([]string{"-c", "http.extraHeader=" + header}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@lab", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@lab")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("clone", "--quiet", e.srv.CloneURL(owner, repo), ".")
	os.WriteFile(filepath.Join(dir, "cli.txt"), bytes.Repeat([]byte("big enough to need a pack\n"), 50000), 0o644)
	git("add", "cli.txt")
	git("commit", "--quiet", "-m", "from the git CLI")
	git("push", "--quiet", "origin", "HEAD:refs/heads/cli")
	want := git("rev-parse", "HEAD")
	if tip, err := e.srv.Branch(owner, repo, "cli"); err != nil || tip != want {
		t.Errorf("cli branch on the server: %v %s, want %s", err, tip, want)
	}
	fc, _, _, err := e.gh.Repositories.GetContents(e.ctx, owner, repo, "cli.txt", &github.RepositoryContentGetOptions{Ref: "cli"})
	if err != nil || fc.GetSize() != 26*50000 {
		t.Errorf("pushed file through the API: %v size %d", err, fc.GetSize())
	}
	noViolations(t, e.srv)
}

// TestMergeMakesAMergeCommit merges with git and finds the pull request
// from its merge commit, as nestbot does after a push to main.
func TestMergeMakesAMergeCommit(t *testing.T) {
	e := setup(t)
	branch := e.pushBranch(t, "feature", map[string][]byte{"f": []byte("1\n")})
	pr, _ := e.srv.OpenPR(owner, repo, "feature", labgithub.PROptions{Title: "f"})
	before, _ := e.srv.Branch(owner, repo, "main")
	pushed, err := e.srv.Merge(e.ctx, owner, repo, pr.Number, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Before != before || pushed.Ref != "refs/heads/main" {
		t.Errorf("pushed %+v, main was %s", pushed, before)
	}
	dir, _ := e.srv.GitDir(owner, repo)
	out, err := exec.Command("git", "-C", dir, "rev-list", "--parents", "-n", "1", pushed.After).Output()
	if parents := strings.Fields(string(out)); err != nil || len(parents) != 3 || parents[1] != before || parents[2] != branch.After {
		t.Errorf("merge commit's parents: %v %q", err, parents)
	}
	got, _, err := e.gh.PullRequests.Get(e.ctx, owner, repo, pr.Number)
	if err != nil || !got.GetMerged() || got.GetMergeCommitSHA() != pushed.After || got.GetState() != "closed" || got.GetMergedBy().GetLogin() != "alice" {
		t.Errorf("merged pull request: %v merged %v sha %s", err, got.GetMerged(), got.GetMergeCommitSHA())
	}
	prs, _, err := e.gh.PullRequests.ListPullRequestsWithCommit(e.ctx, owner, repo, pushed.After, nil)
	if err != nil || len(prs) != 1 || prs[0].GetNumber() != pr.Number {
		t.Errorf("pull request of the merge commit: %v %d", err, len(prs))
	}
	noViolations(t, e.srv)
}

// TestForkPullRequest: a pull request from a fork says so, and its head is
// fetchable from the base repository as refs/pull/<n>/head.
func TestForkPullRequest(t *testing.T) {
	e := setup(t)
	if err := e.srv.Fork(e.ctx, owner, repo, "mallory"); err != nil {
		t.Fatal(err)
	}
	p, err := e.srv.Commit(e.ctx, "mallory", repo, labgithub.Commit{Branch: "evil", Files: map[string][]byte{"nest.yaml": []byte("evil\n")}})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := e.srv.OpenPR(owner, repo, "evil", labgithub.PROptions{Fork: "mallory"})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := e.gh.PullRequests.Get(e.ctx, owner, repo, pr.Number)
	if err != nil || !got.GetHead().GetRepo().GetFork() || got.GetHead().GetRepo().GetFullName() != "mallory/infra" || got.GetHead().GetSHA() != p.After ||
		got.GetUser().GetLogin() != "mallory" {
		t.Errorf("fork pull request: %v fork %v repo %s", err, got.GetHead().GetRepo().GetFork(), got.GetHead().GetRepo().GetFullName())
	}
	dir, _ := e.srv.GitDir(owner, repo)
	out, err := exec.Command("git", "-C", dir, "rev-parse", "refs/pull/1/head").Output()
	if err != nil || strings.TrimSpace(string(out)) != p.After {
		t.Errorf("refs/pull/1/head in the base: %v %s", err, out)
	}
	perm, _, _ := e.gh.Repositories.GetPermissionLevel(e.ctx, owner, repo, "mallory")
	if perm.GetPermission() != "read" {
		t.Errorf("mallory's permission %q", perm.GetPermission())
	}
	noViolations(t, e.srv)
}

// TestCreateRepoFromDir seeds a repository from a directory, as the demo
// seeds the example fleet, and serves its files.
func TestCreateRepoFromDir(t *testing.T) {
	e := setup(t)
	src := filepath.Join("..", "..", "examples", "ducksnest")
	if err := e.srv.CreateRepo(e.ctx, owner, "fleet", labgithub.RepoOptions{FromDir: src}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(src, "nest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fc, _, _, err := e.gh.Repositories.GetContents(e.ctx, owner, "fleet", "nest.yaml", nil)
	if got, _ := fc.GetContent(); err != nil || got != string(want) {
		t.Errorf("nest.yaml through the API: %v (%d bytes, want %d)", err, len(got), len(want))
	}
	noViolations(t, e.srv)
}
