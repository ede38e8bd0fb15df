package labgithub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// gitHTTPBackend is git's smart-HTTP server, run as a CGI program.
const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

// zeroSHA is the "before" of a branch that did not exist.
const zeroSHA = "0000000000000000000000000000000000000000"

var gitPathRE = regexp.MustCompile(`^/([^/]+)/([^/]+)\.git(/.*)?$`)

func gitRepoPath(p string) (owner, name string, ok bool) {
	m := gitPathRE.FindStringSubmatch(p)
	if m == nil || m[1] == "api" || m[1] == "raw" {
		return "", "", false
	}
	return m[1], m[2], true
}

// gitEnv is the environment every git command of the server runs with:
// no system or user configuration, no prompts.
func gitEnv() []string {
	env := []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return env
}

// git runs git in dir and returns its standard output.
func (s *Server) git(ctx context.Context, dir string, extraEnv []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &gitError{args: args, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

type gitError struct {
	args   []string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	return fmt.Sprintf("git %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }

// exitCode is git's exit status, or -1.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// resolve returns the commit rev names in the bare repository dir, or ""
// when there is none.
func (s *Server) resolve(dir, rev string) string {
	if rev == "" || strings.HasPrefix(rev, "-") {
		return ""
	}
	out, err := s.git(context.Background(), dir, nil, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// resolveRef resolves a ref as the API takes it: a sha, a branch or tag
// name, "heads/x" or "refs/heads/x".
func (s *Server) resolveRef(r *repo, ref string) string {
	if strings.HasPrefix(ref, "heads/") || strings.HasPrefix(ref, "tags/") {
		ref = "refs/" + ref
	}
	return s.resolve(r.dir, ref)
}

func (s *Server) isAncestor(dir, a, b string) bool {
	_, err := s.git(context.Background(), dir, nil, "merge-base", "--is-ancestor", a, b)
	return err == nil
}

// serveGit serves git's smart HTTP protocol for owner/name through
// git-http-backend. A token is required, as the password of HTTP basic
// auth (GitHub's x-access-token:<token>); pushing takes write access.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request, owner, name string) {
	user, pass, ok := r.BasicAuth()
	cred := pass
	if cred == "" || cred == "x-oauth-basic" {
		cred = user
	}
	push := strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack"
	s.mu.Lock()
	t, known := s.st.tokens[cred]
	if known && !t.expires.IsZero() && !s.now().Before(t.expires) {
		known = false
	}
	rp, err := s.repoLocked(owner, name)
	var login, perm string
	if known {
		login = t.user.login
		if err == nil {
			perm = rp.permission(login)
			if t.app != nil {
				perm = "write"
			}
		}
	}
	s.mu.Unlock()
	if !ok || !known {
		s.logf("github: git %s %s: no valid token", r.Method, r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
		http.Error(w, "Invalid username or token. Password authentication is not supported for Git operations.", http.StatusUnauthorized)
		return
	}
	if err != nil || permissionRank(perm) < permissionRank("read") {
		http.Error(w, "Repository not found.", http.StatusNotFound)
		return
	}
	if push && permissionRank(perm) < permissionRank("write") {
		http.Error(w, fmt.Sprintf("Permission to %s/%s.git denied to %s.", owner, name, login), http.StatusForbidden)
		return
	}
	h := &cgi.Handler{
		Path: gitHTTPBackend,
		Dir:  s.dir,
		Env: append(gitEnv(),
			"GIT_PROJECT_ROOT="+s.dir,
			"GIT_HTTP_EXPORT_ALL=1",
			"REMOTE_USER="+login,
		),
		Stderr: logWriter{s, "git-http-backend: "},
	}
	// The repository on disk is named as created; GitHub matches names
	// without regard to case.
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + rp.owner.login + "/" + rp.name + ".git" + r.URL.Path[len("/"+owner+"/"+name+".git"):]
	r2.URL.RawPath = ""
	receive := push && r.Method == http.MethodPost
	var before map[string]string
	if receive {
		before = s.branches(rp.dir)
	}
	h.ServeHTTP(w, r2)
	if !receive {
		return
	}
	after := s.branches(rp.dir)
	s.mu.Lock()
	rp.pushed = s.now()
	s.refreshPullsLocked(rp)
	s.mu.Unlock()
	for _, p := range movedBranches(before, after) {
		p.Owner, p.Repo, p.Pusher = rp.owner.login, rp.name, login
		s.logf("github: push %s/%s %s %s..%s by %s", p.Owner, p.Repo, p.Ref, p.Before, p.After, login)
		if s.cfg.OnPush != nil {
			s.cfg.OnPush(p)
		}
	}
}

// branches maps each branch of the bare repository dir to its tip.
func (s *Server) branches(dir string) map[string]string {
	out, err := s.git(context.Background(), dir, nil, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/")
	m := map[string]string{}
	if err != nil {
		s.logf("github: list branches of %s: %v", dir, err)
		return m
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if ref, sha, ok := strings.Cut(line, " "); ok {
			m[ref] = sha
		}
	}
	return m
}

// movedBranches are the branches that differ between two listings, by
// name.
func movedBranches(before, after map[string]string) []Pushed {
	var out []Pushed
	for ref, sha := range after {
		if before[ref] != sha {
			out = append(out, Pushed{Ref: ref, Before: nonEmptyOr(before[ref], zeroSHA), After: sha})
		}
	}
	for ref, sha := range before {
		if _, ok := after[ref]; !ok {
			out = append(out, Pushed{Ref: ref, Before: sha, After: zeroSHA})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
}

type logWriter struct {
	s      *Server
	prefix string
}

func (l logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.s.logf("github: %s%s", l.prefix, line)
	}
	return len(p), nil
}

// RepoOptions configure CreateRepo.
type RepoOptions struct {
	DefaultBranch string // "main" if empty
	Private       bool
	// Files, if any, are the first commit on the default branch, made by
	// the owner.
	Files   map[string][]byte
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

// refreshPullsLocked moves the open pull requests whose head or base is in
// r to their branches' tips, and keeps refs/pull/<n>/head in the base
// repository, as GitHub does.
func (s *Server) refreshPullsLocked(r *repo) {
	for _, base := range s.st.repos {
		for _, is := range base.issues {
			p := is.pr
			if p == nil || is.state != "open" || (base != r && p.headRepo != r) {
				continue
			}
			head := s.resolve(p.headRepo.dir, "refs/heads/"+p.headRef)
			if b := s.resolve(base.dir, "refs/heads/"+p.baseRef); b != "" {
				p.baseSHA = b
			}
			if head == "" || head == p.headSHA {
				continue
			}
			p.prevHeadSHA, p.headSHA = p.headSHA, head
			is.updated = s.now()
			s.updatePullRef(base, is)
		}
	}
}

// updatePullRef points refs/pull/<n>/head of base at the pull request's
// head, fetching it from a fork.
func (s *Server) updatePullRef(base *repo, is *issue) {
	ref := "refs/pull/" + strconv.Itoa(is.number) + "/head"
	p := is.pr
	var err error
	if p.headRepo == base {
		_, err = s.git(context.Background(), base.dir, nil, "update-ref", ref, p.headSHA)
	} else {
		_, err = s.git(context.Background(), base.dir, nil, "fetch", "--quiet", p.headRepo.dir, "+"+p.headSHA+":"+ref)
	}
	if err != nil {
		s.logf("github: %s#%d: update %s: %v", base.fullName(), is.number, ref, err)
	}
}

// prSHAs are a pull request's head and base commits.
func (s *Server) prSHAs(_ *repo, is *issue) (head, base string) {
	return is.pr.headSHA, is.pr.baseSHA
}

// prMergeable says whether the pull request merges cleanly (git
// merge-tree), unless SetMergeable overrode it; nil once merged or closed.
func (s *Server) prMergeable(r *repo, is *issue) *bool {
	p := is.pr
	if p.mergeable != nil {
		v := *p.mergeable
		return &v
	}
	if is.state != "open" {
		return nil
	}
	key := p.baseSHA + ".." + p.headSHA
	if p.mergeKey != key {
		_, err := s.git(context.Background(), r.dir, nil, "merge-tree", "--write-tree", "--no-messages", p.baseSHA, p.headSHA)
		switch exitCode(err) {
		case 0:
			p.mergeClean = true
		case 1:
			p.mergeClean = false
		default:
			s.logf("github: %s#%d: merge-tree: %v", r.fullName(), is.number, err)
			return nil
		}
		p.mergeKey = key
	}
	v := p.mergeClean
	return &v
}

type prStats struct{ commits, additions, deletions, files int }

func (s *Server) prStats(r *repo, is *issue) prStats {
	p := is.pr
	var st prStats
	if out, err := s.git(context.Background(), r.dir, nil, "rev-list", "--count", p.baseSHA+".."+p.headSHA); err == nil {
		st.commits, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	for _, f := range s.diffFiles(r, p.baseSHA, p.headSHA) {
		st.files++
		st.additions += f.additions
		st.deletions += f.deletions
	}
	return st
}

type diffFile struct {
	status               string
	path, previous       string
	additions, deletions int
}

// diffFiles is what changed between the merge base of base and head, and
// head, as a pull request's files.
func (s *Server) diffFiles(r *repo, base, head string) []diffFile {
	if base == "" || head == "" {
		return nil
	}
	names, err := s.git(context.Background(), r.dir, nil, "diff", "--name-status", "-z", "-M", base+"..."+head)
	if err != nil {
		s.logf("github: %s: diff %s...%s: %v", r.fullName(), base, head, err)
		return nil
	}
	nums, _ := s.git(context.Background(), r.dir, nil, "diff", "--numstat", "-z", "-M", base+"..."+head)
	var files []diffFile
	f := strings.Split(strings.TrimSuffix(string(names), "\x00"), "\x00")
	for i := 0; i < len(f); {
		code := f[i]
		if code == "" {
			break
		}
		d := diffFile{}
		switch code[0] {
		case 'R', 'C':
			if i+2 >= len(f) {
				i = len(f)
				continue
			}
			d.previous, d.path = f[i+1], f[i+2]
			d.status = map[byte]string{'R': "renamed", 'C': "copied"}[code[0]]
			i += 3
		default:
			if i+1 >= len(f) {
				i = len(f)
				continue
			}
			d.path = f[i+1]
			d.status = map[byte]string{'A': "added", 'D': "removed", 'M': "modified", 'T': "changed"}[code[0]]
			if d.status == "" {
				d.status = "modified"
			}
			i += 2
		}
		files = append(files, d)
	}
	// numstat -z: "add\tdel\tpath\0", or for a rename "add\tdel\t\0old\0new\0".
	counts := map[string][2]int{}
	n := strings.Split(string(nums), "\x00")
	for i := 0; i < len(n); i++ {
		parts := strings.SplitN(n[i], "\t", 3)
		if len(parts) != 3 {
			continue
		}
		a, _ := strconv.Atoi(parts[0])
		d, _ := strconv.Atoi(parts[1])
		path := parts[2]
		if path == "" && i+2 < len(n) {
			path = n[i+2]
			i += 2
		}
		counts[path] = [2]int{a, d}
	}
	for i := range files {
		c := counts[files[i].path]
		files[i].additions, files[i].deletions = c[0], c[1]
	}
	return files
}

// treeEntry is one line of git ls-tree -l.
type treeEntry struct {
	mode, kind, sha string
	size            int64
	name            string
}

func (s *Server) lsTree(dir, treeish string) ([]treeEntry, error) {
	out, err := s.git(context.Background(), dir, nil, "ls-tree", "-l", "-z", treeish)
	if err != nil {
		return nil, err
	}
	var es []treeEntry
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		meta, name, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		f := strings.Fields(meta)
		if len(f) != 4 {
			continue
		}
		size, _ := strconv.ParseInt(f[3], 10, 64)
		es = append(es, treeEntry{mode: f[0], kind: f[1], sha: f[2], size: size, name: name})
	}
	return es, nil
}

// entryAt is the tree entry at path in commit; ok is false when there is
// none.
func (s *Server) entryAt(dir, commit, path string) (treeEntry, bool) {
	parent, name := "", path
	if i := strings.LastIndex(path, "/"); i >= 0 {
		parent, name = path[:i], path[i+1:]
	}
	es, err := s.lsTree(dir, commit+":"+parent)
	if err != nil {
		return treeEntry{}, false
	}
	for _, e := range es {
		if e.name == name {
			return e, true
		}
	}
	return treeEntry{}, false
}

func (s *Server) catBlob(dir, sha string) ([]byte, error) {
	return s.git(context.Background(), dir, nil, "cat-file", "blob", sha)
}

// serveRaw answers the download_url of a file:
// /raw/<owner>/<repo>/<commit>/<path>.
func (s *Server) serveRaw(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/raw/"), "/", 4)
	if len(parts) != 4 {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	rp, err := s.repoLocked(parts[0], parts[1])
	s.mu.Unlock()
	if err != nil {
		http.NotFound(w, r)
		return
	}
	commit := s.resolve(rp.dir, parts[2])
	e, ok := s.entryAt(rp.dir, commit, parts[3])
	if commit == "" || !ok || e.kind != "blob" {
		http.NotFound(w, r)
		return
	}
	b, err := s.catBlob(rp.dir, e.sha)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.Copy(w, bytes.NewReader(b))
}

// PROptions configure OpenPR.
type PROptions struct {
	Base  string // the default branch if empty
	Title string // "Update <head>" if empty
	Body  string
	// User opens it; the head repository's owner if empty.
	User  string
	Draft bool
	// Fork is the owner of the fork (made with Fork) the head branch is
	// in; empty means the branch is in owner/repo itself.
	Fork string
}

// PullRequest is a pull request as the server holds it.
type PullRequest struct {
	Number         int
	Title          string
	Body           string
	User           string
	State          string // open or closed
	Draft          bool
	HeadRepo       string // owner/name
	Fork           bool   // the head is in a fork
	HeadRef        string
	HeadSHA        string
	BaseRef        string
	BaseSHA        string
	Merged         bool
	MergeCommitSHA string
	Reviews        []Review
}

// Review is one review of a pull request.
type Review struct {
	ID       int64
	User     string
	State    string // APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
	Body     string
	CommitID string
}

func (s *Server) pullSnapshot(r *repo, is *issue) PullRequest {
	p := is.pr
	out := PullRequest{Number: is.number, Title: is.title, Body: deref(is.body), User: is.user.login, State: is.state,
		Draft: p.draft, HeadRepo: p.headRepo.fullName(), Fork: p.headRepo != r, HeadRef: p.headRef, HeadSHA: p.headSHA,
		BaseRef: p.baseRef, BaseSHA: p.baseSHA, Merged: p.merged, MergeCommitSHA: p.mergeSHA}
	for _, rv := range p.reviews {
		out.Reviews = append(out.Reviews, Review{ID: rv.id, User: rv.user.login, State: rv.state, Body: rv.body, CommitID: rv.commitID})
	}
	return out
}

// OpenPR opens a pull request from branch head (pushed already, to
// owner/repo or to the fork o.Fork) into o.Base. Make the webhook event
// with PullRequestEvent(owner, repo, n, "opened").
func (s *Server) OpenPR(owner, repoName, head string, o PROptions) (PullRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return PullRequest{}, err
	}
	headRepo := r
	if o.Fork != "" {
		if headRepo, err = s.repoLocked(o.Fork, r.name); err != nil {
			return PullRequest{}, err
		}
		if headRepo.parent != r {
			return PullRequest{}, fmt.Errorf("labgithub: open a pull request from %s: it is not a fork of %s", headRepo.fullName(), r.fullName())
		}
	}
	if o.Base == "" {
		o.Base = r.defaultBranch
	}
	what := fmt.Sprintf("labgithub: open a pull request %s:%s into %s:%s", headRepo.fullName(), head, r.fullName(), o.Base)
	headSHA := s.resolve(headRepo.dir, "refs/heads/"+head)
	if headSHA == "" {
		return PullRequest{}, fmt.Errorf("%s: no branch %s; push it first (Commit)", what, head)
	}
	baseSHA := s.resolve(r.dir, "refs/heads/"+o.Base)
	if baseSHA == "" {
		return PullRequest{}, fmt.Errorf("%s: no base branch %s", what, o.Base)
	}
	for _, is := range r.issues {
		if is.pr != nil && is.state == "open" && is.pr.headRepo == headRepo && is.pr.headRef == head && is.pr.baseRef == o.Base {
			return PullRequest{}, fmt.Errorf("%s: #%d is open already", what, is.number)
		}
	}
	if o.User == "" {
		o.User = headRepo.owner.login
	}
	if o.Title == "" {
		o.Title = "Update " + head
	}
	now := s.now()
	r.nextNumber++
	body := o.Body
	is := &issue{id: s.st.id(), number: r.nextNumber, title: o.Title, body: &body, user: s.userLocked(o.User), state: "open",
		created: now, updated: now,
		pr: &pull{headRepo: headRepo, headRef: head, baseRef: o.Base, headSHA: headSHA, baseSHA: baseSHA, draft: o.Draft}}
	r.issues[is.number] = is
	s.updatePullRef(r, is)
	return s.pullSnapshot(r, is), nil
}

// PullRequest returns pull request number of owner/repo.
func (s *Server) PullRequest(owner, repoName string, number int) (PullRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return PullRequest{}, err
	}
	is, ok := r.issues[number]
	if !ok || is.pr == nil {
		return PullRequest{}, fmt.Errorf("labgithub: %s has no pull request #%d", r.fullName(), number)
	}
	return s.pullSnapshot(r, is), nil
}

// AddReview records a review of pull request number by login on its
// current head: state is APPROVED, CHANGES_REQUESTED or COMMENTED.
func (s *Server) AddReview(owner, repoName string, number int, login, state, body string) (Review, error) {
	switch state {
	case "APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED":
	default:
		return Review{}, fmt.Errorf("labgithub: review state %q: want APPROVED, CHANGES_REQUESTED, COMMENTED or DISMISSED", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return Review{}, err
	}
	is, ok := r.issues[number]
	if !ok || is.pr == nil {
		return Review{}, fmt.Errorf("labgithub: %s has no pull request #%d", r.fullName(), number)
	}
	rv := &review{id: s.st.id(), user: s.userLocked(login), state: state, body: body, commitID: is.pr.headSHA, at: s.now()}
	is.pr.reviews = append(is.pr.reviews, rv)
	return Review{ID: rv.id, User: login, State: state, Body: body, CommitID: rv.commitID}, nil
}

// SetMergeable overrides what the server says about whether pull request
// number merges cleanly; nil goes back to asking git.
func (s *Server) SetMergeable(owner, repoName string, number int, mergeable *bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return err
	}
	is, ok := r.issues[number]
	if !ok || is.pr == nil {
		return fmt.Errorf("labgithub: %s has no pull request #%d", r.fullName(), number)
	}
	is.pr.mergeable = mergeable
	return nil
}

// Merge merges pull request number as login with a real merge commit
// (git merge --no-ff, in a temporary clone, pushed to the base branch),
// and marks it merged and closed. The push event of the base branch is
// PushEvent(pushed); the pull request event is
// PullRequestEvent(owner, repo, number, "closed").
func (s *Server) Merge(ctx context.Context, owner, repoName string, number int, login string) (Pushed, error) {
	s.mu.Lock()
	r, err := s.repoLocked(owner, repoName)
	var is *issue
	if err == nil {
		var ok bool
		is, ok = r.issues[number]
		switch {
		case !ok || is.pr == nil:
			err = fmt.Errorf("labgithub: merge %s#%d: no such pull request", r.fullName(), number)
		case is.state != "open":
			err = fmt.Errorf("labgithub: merge %s#%d: it is %s", r.fullName(), number, is.state)
		case is.pr.draft:
			err = fmt.Errorf("labgithub: merge %s#%d: it is a draft", r.fullName(), number)
		}
	}
	if err != nil {
		s.mu.Unlock()
		return Pushed{}, err
	}
	if login == "" {
		login = r.owner.login
	}
	s.userLocked(login)
	p := is.pr
	headDir, headRef, baseRef, title := p.headRepo.dir, p.headRef, p.baseRef, is.title
	from := p.headRepo.owner.login + "/" + headRef
	s.mu.Unlock()

	what := fmt.Sprintf("labgithub: merge %s#%d", r.fullName(), number)
	tmp, err := os.MkdirTemp("", "nestbot-lab-merge-")
	if err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	defer os.RemoveAll(tmp)
	env := s.authorEnv(login)
	run := func(args ...string) ([]byte, error) { return s.git(ctx, tmp, env, args...) }
	if _, err := s.git(ctx, s.dir, nil, "clone", "--quiet", "--branch", baseRef, r.dir, tmp); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	before := s.resolve(r.dir, "refs/heads/"+baseRef)
	if _, err := run("fetch", "--quiet", headDir, "refs/heads/"+headRef); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	msg := fmt.Sprintf("Merge pull request #%d from %s\n\n%s", number, from, title)
	if _, err := run("merge", "--quiet", "--no-ff", "--message", msg, "FETCH_HEAD"); err != nil {
		return Pushed{}, fmt.Errorf("%s: it does not merge cleanly: %w", what, err)
	}
	if _, err := run("push", "--quiet", "origin", "HEAD:refs/heads/"+baseRef); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	after := s.resolve(r.dir, "refs/heads/"+baseRef)
	headSHA := s.resolve(tmp, "FETCH_HEAD")

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	p.merged, p.mergedAt, p.mergedBy, p.mergeSHA = true, now, s.userLocked(login), after
	if headSHA != "" {
		p.headSHA = headSHA
	}
	p.baseSHA = before
	is.state, is.closed, is.closedBy, is.updated = "closed", now, s.userLocked(login), now
	r.pushed = now
	s.refreshPullsLocked(r)
	return Pushed{Owner: r.owner.login, Repo: r.name, Ref: "refs/heads/" + baseRef, Before: before, After: after, Pusher: login}, nil
}

// commitInfo is one commit of a push, for its event.
type commitInfo struct {
	sha, tree, message, authorName, authorEmail string
	date                                        time.Time
	added, removed, modified                    []string
}

// commitsBetween lists the commits reachable from after and not from
// before, oldest first (at most 20, as GitHub's push event carries).
func (s *Server) commitsBetween(dir, before, after string) []commitInfo {
	rng := after
	if before != "" && before != zeroSHA {
		rng = before + ".." + after
	}
	out, err := s.git(context.Background(), dir, nil, "log", "--reverse", "--max-count=20", "--format=%H%x00%T%x00%an%x00%ae%x00%at%x00%B%x1e", rng)
	if err != nil {
		s.logf("github: log %s: %v", rng, err)
		return nil
	}
	var cs []commitInfo
	for _, rec := range strings.Split(string(out), "\x1e") {
		f := strings.SplitN(strings.TrimLeft(rec, "\n"), "\x00", 6)
		if len(f) != 6 {
			continue
		}
		at, _ := strconv.ParseInt(f[4], 10, 64)
		c := commitInfo{sha: f[0], tree: f[1], authorName: f[2], authorEmail: f[3], date: time.Unix(at, 0).UTC(), message: strings.TrimRight(f[5], "\n")}
		if st, err := s.git(context.Background(), dir, nil, "diff-tree", "--no-commit-id", "--name-status", "-r", "-z", "--root", c.sha); err == nil {
			parts := strings.Split(strings.TrimSuffix(string(st), "\x00"), "\x00")
			for i := 0; i+1 < len(parts); i += 2 {
				switch parts[i] {
				case "A":
					c.added = append(c.added, parts[i+1])
				case "D":
					c.removed = append(c.removed, parts[i+1])
				default:
					c.modified = append(c.modified, parts[i+1])
				}
			}
		}
		cs = append(cs, c)
	}
	return cs
}
