package github

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

// gitHTTPBackend finds git's smart-HTTP server, which serveGit runs as a
// CGI program, where git keeps its helper programs: git --exec-path
// (/usr/lib/git-core on Debian, libexec/git-core elsewhere, a store path
// under nix).
func gitHTTPBackend() (string, error) {
	cmd := exec.Command("git", "--exec-path")
	cmd.Env = gitEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git --exec-path: %w (install git)", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return "", fmt.Errorf("git's smart HTTP server is missing from git --exec-path: %w (install git, with git-http-backend)", err)
	}
	return backend, nil
}

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
		Path: s.backend,
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
