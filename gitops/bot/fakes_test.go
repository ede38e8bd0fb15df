package bot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/internal/testkit"
)

// The handler tests' doubles: GitHub as a plain struct that answers with
// its fields and keeps what the bot wrote, and the repository as a git
// repository on disk that the job's checkout clones (file://).

// fakeGitHub is GitHub: it answers with its fields and records every call.
type fakeGitHub struct {
	token     string
	install   int64
	pr        nestgh.PR         // PullRequest's answer
	perms     map[string]string // Permission's: user → permission
	pulls     []nestgh.PR       // PullsForCommit's
	approved  bool              // Approved's
	reactErr  error             // React's
	calls     []string          // every method called, in order
	stickies  []sticky          // UpsertSticky's
	comments  []string          // Comment's bodies
	reactions []string          // React's content
	checks    []nestgh.CheckRun // CreateCheckRun's
	deploys   []string          // CreateDeployment's environment: description
	statuses  []string          // DeploymentStatus's state: description
	issues    []syncedIssue     // SyncIssue's
	commented map[int][]string  // Comment's bodies by pull request
}

type sticky struct {
	number int
	marker string
	parts  []string
}

type syncedIssue struct {
	marker, title, body string
	open                bool
}

var _ GitHub = (*fakeGitHub)(nil)

func (f *fakeGitHub) called(name string) { f.calls = append(f.calls, name) }

func (f *fakeGitHub) GitToken(context.Context) (string, error) {
	f.called("GitToken")
	return f.token, nil
}
func (f *fakeGitHub) InstallationID() int64 { return f.install }

func (f *fakeGitHub) PullRequest(_ context.Context, _ nestgh.Repo, number int) (*nestgh.PR, error) {
	f.called("PullRequest")
	pr := f.pr
	pr.Number = number
	return &pr, nil
}

func (f *fakeGitHub) Approved(context.Context, nestgh.Repo, int, string, string) (bool, error) {
	f.called("Approved")
	return f.approved, nil
}

func (f *fakeGitHub) PullsForCommit(context.Context, nestgh.Repo, string) ([]nestgh.PR, error) {
	f.called("PullsForCommit")
	return f.pulls, nil
}

func (f *fakeGitHub) Permission(_ context.Context, _ nestgh.Repo, user string) (string, error) {
	f.called("Permission")
	return f.perms[user], nil
}

func (f *fakeGitHub) UpsertSticky(_ context.Context, _ nestgh.Repo, number int, marker string, parts []string) (nestgh.StickyResult, error) {
	f.called("UpsertSticky")
	f.stickies = append(f.stickies, sticky{number, marker, parts})
	return nestgh.StickyResult{Updated: len(parts)}, nil
}

func (f *fakeGitHub) CreateCheckRun(_ context.Context, _ nestgh.Repo, cr nestgh.CheckRun) (int64, error) {
	f.called("CreateCheckRun")
	f.checks = append(f.checks, cr)
	return int64(len(f.checks)), nil
}

func (f *fakeGitHub) React(_ context.Context, _ nestgh.Repo, _ int64, content string) error {
	f.called("React")
	f.reactions = append(f.reactions, content)
	return f.reactErr
}

func (f *fakeGitHub) Comment(_ context.Context, _ nestgh.Repo, number int, body string) (int64, error) {
	f.called("Comment")
	f.comments = append(f.comments, body)
	if f.commented == nil {
		f.commented = map[int][]string{}
	}
	f.commented[number] = append(f.commented[number], body)
	return int64(len(f.comments)), nil
}

func (f *fakeGitHub) CreateDeployment(_ context.Context, _ nestgh.Repo, _, environment, description string) (int64, error) {
	f.called("CreateDeployment")
	f.deploys = append(f.deploys, environment+": "+description)
	return int64(len(f.deploys)), nil
}

func (f *fakeGitHub) DeploymentStatus(_ context.Context, _ nestgh.Repo, _ int64, state, description, _ string) error {
	f.called("DeploymentStatus")
	f.statuses = append(f.statuses, state+": "+description)
	return nil
}

func (f *fakeGitHub) SyncIssue(_ context.Context, _ nestgh.Repo, marker, title, body string, open bool) (int, error) {
	f.called("SyncIssue")
	f.issues = append(f.issues, syncedIssue{marker, title, body, open})
	if !open {
		return 0, nil
	}
	return 9, nil
}

// written is everything the bot wrote to GitHub, for looking for what must
// not be there.
func (f *fakeGitHub) written() string {
	var all []string
	for _, s := range f.stickies {
		all = append(all, s.parts...)
	}
	for _, c := range f.checks {
		all = append(all, c.Title, c.Summary, c.Text)
		for _, a := range c.Annotations {
			all = append(all, a.Title, a.Message)
		}
	}
	for _, i := range f.issues {
		all = append(all, i.title, i.body)
	}
	all = append(append(append(all, f.comments...), f.deploys...), f.statuses...)
	return fmt.Sprint(all)
}

// remote is the repository a job's checkout clones: a git repository on
// disk, its main branch the example fleet.
type remote struct {
	t    *testing.T
	dir  string
	repo *gogit.Repository
	yaml string // nest.yaml on main, first
}

// newRemote is the example fleet on main; edit, if set, changes its
// nest.yaml.
func newRemote(t *testing.T, edit func(yaml string) string) *remote {
	t.Helper()
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	file := testkit.ExampleFleet(t, dir, id.Recipient().String())
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	yaml := string(data)
	if edit != nil {
		yaml = edit(yaml)
	}
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	repo, err := gogit.PlainInitWithOptions(dir, &gogit.PlainInitOptions{InitOptions: gogit.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		t.Fatal(err)
	}
	r := &remote{t: t, dir: dir, repo: repo, yaml: yaml}
	r.commit("main", "main", nil, nil)
	return r
}

func (r *remote) url() string { return "file://" + r.dir }

// commit commits files (path → content) and symbolic links (path →
// target) on branch, made from from when it is new, and returns the
// commit.
func (r *remote) commit(branch, from string, files, links map[string]string) string {
	r.t.Helper()
	wt, err := r.repo.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	ref := plumbing.NewBranchReferenceName(branch)
	_, err = r.repo.Reference(ref, true)
	switch {
	case err == nil:
		err = wt.Checkout(&gogit.CheckoutOptions{Branch: ref, Force: true})
	case branch != from:
		if err = wt.Checkout(&gogit.CheckoutOptions{Branch: plumbing.NewBranchReferenceName(from), Force: true}); err == nil {
			err = wt.Checkout(&gogit.CheckoutOptions{Branch: ref, Create: true})
		}
	default:
		err = nil // the first commit, on the branch HEAD names
	}
	if err != nil {
		r.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, filepath.FromSlash(name)), []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	for name, target := range links {
		path := filepath.Join(r.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.Symlink(target, path); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := wt.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	h, err := wt.Commit("change "+branch, &gogit.CommitOptions{Author: &object.Signature{Name: "octocat", Email: "octocat@example.com", When: time.Now()}})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
}

// pull opens pull request number from branch, of files and links (see
// commit): refs/pull/<number>/head
// names its head, as on GitHub. It returns the pull request as GitHub
// tells it.
func (r *remote) pull(number int, branch string, files, links map[string]string) nestgh.PR {
	r.t.Helper()
	head := r.commit(branch, "main", files, links)
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.ReferenceName(fmt.Sprintf("refs/pull/%d/head", number)), plumbing.NewHash(head))); err != nil {
		r.t.Fatal(err)
	}
	return nestgh.PR{Number: number, HeadSHA: head, HeadRef: branch, BaseRef: "main", DefaultBranch: "main", State: "open", Author: "octocat"}
}
