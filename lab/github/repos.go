package github

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RepoOptions configure CreateRepo.
type RepoOptions struct {
	DefaultBranch string // "main" if empty
	Private       bool
	// Files, if any, are the first commit on the default branch, made by
	// the owner; FromDir adds every file under a directory (.git left
	// out), at its path relative to it.
	Files   map[string][]byte
	FromDir string
	Message string // of that commit; "Initial commit" if empty
}

// CreateRepo creates owner/name (and the user owner, if new) with a bare
// git repository at <Dir>/<owner>/<name>.git. The owner has admin.
func (s *Server) CreateRepo(ctx context.Context, owner, name string, o RepoOptions) error {
	if o.DefaultBranch == "" {
		o.DefaultBranch = "main"
	}
	if !validName(owner) || !validName(name) {
		return fmt.Errorf("labgithub: create repository %q/%q: names are letters, digits, '-', '_' and '.'", owner, name)
	}
	s.mu.Lock()
	if _, err := s.repoLocked(owner, name); err == nil {
		s.mu.Unlock()
		return fmt.Errorf("labgithub: create repository %s/%s: it exists already", owner, name)
	}
	dir := filepath.Join(s.dir, owner, name+".git")
	r := &repo{id: s.st.id(), owner: s.userLocked(owner), name: name, defaultBranch: o.DefaultBranch, private: o.Private,
		dir: dir, created: s.now(), collaborators: map[string]string{}, issues: map[int]*issue{}, labels: map[string]*label{},
		comments: map[int64]*comment{}, deleted: map[int64]*comment{}, checkRuns: map[int64]*checkRun{}}
	s.st.repos[strings.ToLower(owner+"/"+name)] = r
	s.mu.Unlock()
	if _, err := s.git(ctx, s.dir, nil, "init", "--quiet", "--bare", "--initial-branch="+o.DefaultBranch, dir); err != nil {
		return fmt.Errorf("labgithub: create repository %s/%s: %w", owner, name, err)
	}
	if o.FromDir != "" {
		files, err := readTree(o.FromDir)
		if err != nil {
			return fmt.Errorf("labgithub: create repository %s/%s: %w", owner, name, err)
		}
		for p, b := range o.Files {
			files[p] = b
		}
		o.Files = files
	}
	if len(o.Files) == 0 {
		return nil
	}
	msg := o.Message
	if msg == "" {
		msg = "Initial commit"
	}
	_, err := s.Commit(ctx, owner, name, Commit{Branch: o.DefaultBranch, Message: msg, Files: o.Files})
	return err
}

func validName(n string) bool {
	if n == "" || n == "." || n == ".." {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Fork makes forkOwner/<name> a fork of owner/name: a copy of its
// branches, marked as a fork. Push a branch to it (Commit) and open a pull
// request from it (PROptions.Fork).
func (s *Server) Fork(ctx context.Context, owner, name, forkOwner string) error {
	s.mu.Lock()
	parent, err := s.repoLocked(owner, name)
	if err == nil {
		if _, e := s.repoLocked(forkOwner, name); e == nil {
			err = fmt.Errorf("labgithub: fork %s/%s to %s: %s/%s exists already", owner, name, forkOwner, forkOwner, name)
		}
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	dir := filepath.Join(s.dir, forkOwner, name+".git")
	r := &repo{id: s.st.id(), owner: s.userLocked(forkOwner), name: parent.name, defaultBranch: parent.defaultBranch,
		parent: parent, dir: dir, created: s.now(), collaborators: map[string]string{}, issues: map[int]*issue{},
		labels: map[string]*label{}, comments: map[int64]*comment{}, deleted: map[int64]*comment{}, checkRuns: map[int64]*checkRun{}}
	s.st.repos[strings.ToLower(forkOwner+"/"+name)] = r
	s.mu.Unlock()
	if _, err := s.git(ctx, s.dir, nil, "clone", "--quiet", "--bare", parent.dir, dir); err != nil {
		return fmt.Errorf("labgithub: fork %s/%s to %s: %w", owner, name, forkOwner, err)
	}
	return nil
}

// Commit is one commit Server.Commit makes and pushes.
type Commit struct {
	// Branch is committed to; a new branch starts at From.
	Branch string
	// From is the branch or commit a new branch starts at; the default
	// branch if empty.
	From    string
	Message string
	// Author is a login; the repository's owner if empty.
	Author string
	// Files are written (created or replaced) at their slash-separated
	// paths; Remove lists paths (files or directories) to delete.
	Files  map[string][]byte
	Remove []string
	// Symlinks are symbolic links to commit, by path: their targets, as
	// git stores a link (what a pull request may hold).
	Symlinks map[string]string
}

// Pushed is a branch that moved, as a push event reports it.
type Pushed struct {
	Owner, Repo string
	Ref         string // refs/heads/<branch>
	Before      string // the previous tip; 40 zeros for a new branch
	After       string
	Pusher      string // login
}

// Commit commits c in a temporary clone with the git CLI and pushes it to
// owner/repo, as a person pushing would. Make the push event with
// PushEvent.
func (s *Server) Commit(ctx context.Context, owner, repoName string, c Commit) (Pushed, error) {
	s.mu.Lock()
	r, err := s.repoLocked(owner, repoName)
	var author string
	if err == nil {
		author = c.Author
		if author == "" {
			author = r.owner.login
		}
		s.userLocked(author)
	}
	s.mu.Unlock()
	if err != nil {
		return Pushed{}, err
	}
	if c.Branch == "" {
		return Pushed{}, fmt.Errorf("labgithub: commit to %s/%s: no branch", owner, repoName)
	}
	what := fmt.Sprintf("labgithub: commit to %s/%s %s", owner, repoName, c.Branch)
	tmp, err := os.MkdirTemp("", "nestbot-lab-commit-")
	if err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	defer os.RemoveAll(tmp)
	env := s.authorEnv(author)
	run := func(args ...string) ([]byte, error) { return s.git(ctx, tmp, env, args...) }
	if _, err := s.git(ctx, s.dir, nil, "clone", "--quiet", "--no-checkout", r.dir, tmp); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	before := s.resolve(r.dir, "refs/heads/"+c.Branch)
	start := before
	if start == "" {
		from := c.From
		if from == "" {
			from = r.defaultBranch
		}
		start = s.resolve(r.dir, "refs/heads/"+from)
		if start == "" {
			start = s.resolve(r.dir, from)
		}
		if start == "" && s.resolve(r.dir, "HEAD") != "" {
			return Pushed{}, fmt.Errorf("%s: no branch or commit %q to start it from", what, from)
		}
	}
	if start == "" {
		_, err = run("checkout", "--quiet", "--orphan", c.Branch)
	} else {
		_, err = run("checkout", "--quiet", "-B", c.Branch, start)
	}
	if err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	for _, p := range c.Remove {
		if _, err := run("rm", "-r", "--quiet", "--", p); err != nil {
			return Pushed{}, fmt.Errorf("%s: remove %s: %w", what, p, err)
		}
	}
	for p, data := range c.Files {
		full := filepath.Join(tmp, filepath.FromSlash(p))
		if !strings.HasPrefix(full, tmp+string(filepath.Separator)) {
			return Pushed{}, fmt.Errorf("%s: path %q leaves the repository", what, p)
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return Pushed{}, fmt.Errorf("%s: %w", what, err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			return Pushed{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	for p, target := range c.Symlinks {
		full := filepath.Join(tmp, filepath.FromSlash(p))
		if !strings.HasPrefix(full, tmp+string(filepath.Separator)) {
			return Pushed{}, fmt.Errorf("%s: path %q leaves the repository", what, p)
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return Pushed{}, fmt.Errorf("%s: %w", what, err)
		}
		os.RemoveAll(full)
		if err := os.Symlink(target, full); err != nil {
			return Pushed{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	if _, err := run("add", "--all"); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	msg := c.Message
	if msg == "" {
		msg = "Update " + c.Branch
	}
	if _, err := run("commit", "--quiet", "--message", msg); err != nil {
		return Pushed{}, fmt.Errorf("%s: nothing to commit? %w", what, err)
	}
	if _, err := run("push", "--quiet", "origin", "HEAD:refs/heads/"+c.Branch); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	after := s.resolve(r.dir, "refs/heads/"+c.Branch)
	if before == "" {
		before = zeroSHA
	}
	s.mu.Lock()
	r.pushed = s.now()
	s.refreshPullsLocked(r)
	s.mu.Unlock()
	return Pushed{Owner: r.owner.login, Repo: r.name, Ref: "refs/heads/" + c.Branch, Before: before, After: after, Pusher: author}, nil
}

// authorEnv makes commits by login at the server's clock, so that a fixed
// clock makes the same commits.
func (s *Server) authorEnv(login string) []string {
	date := strconv.FormatInt(s.now().Unix(), 10) + " +0000"
	email := strings.NewReplacer("[", "", "]", "").Replace(login) + "@users.noreply.lab"
	return []string{
		"GIT_AUTHOR_NAME=" + login, "GIT_AUTHOR_EMAIL=" + email, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + login, "GIT_COMMITTER_EMAIL=" + email, "GIT_COMMITTER_DATE=" + date,
	}
}

// Branch is the tip of owner/repo's branch, or an error if there is none.
func (s *Server) Branch(owner, repoName, branch string) (string, error) {
	s.mu.Lock()
	r, err := s.repoLocked(owner, repoName)
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	sha := s.resolve(r.dir, "refs/heads/"+branch)
	if sha == "" {
		return "", fmt.Errorf("labgithub: %s/%s has no branch %s", owner, repoName, branch)
	}
	return sha, nil
}

// GitDir is the bare repository of owner/repo on disk.
func (s *Server) GitDir(owner, repoName string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return "", err
	}
	return r.dir, nil
}

// readTree reads every regular file under dir, by slash-separated path
// relative to it; .git is left out.
func readTree(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	return files, nil
}
