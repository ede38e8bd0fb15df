// Package git is nestbot's access to the infrastructure repository, over
// go-git and without the git binary: open a local repository or clone one,
// read files and trees at any commit, list the paths two commits differ in,
// commit files, and push with a token.
//
// It works without a worktree. Commits are built from objects — blobs, then
// the trees along the changed paths, then the commit — and a branch ref is
// moved with a compare-and-swap, so a bare clone on disk or an in-memory
// clone works and the bot never has a dirty checkout. A clone made by Clone
// is bare and mirrors the remote's branches and tags: Fetch makes every local
// branch equal to the remote's, discarding local commits that were never
// pushed (after a rejected push, that is the point: re-plan from the remote).
//
// Credentials: a token is sent as HTTP basic auth (x-access-token:<token>, as
// GitHub App installation tokens expect), never stored in the repository's
// config, and removed — with the userinfo of any URL — from every error and
// log line this package produces.
//
// file:// remotes are served in-process by go-git's own server code rather
// than by go-git's default file transport, which runs git-upload-pack and
// git-receive-pack. That replacement is installed process-wide in go-git's
// transport table, once, on first use.
//
// A Repo is safe for concurrent use; its operations are serialized.
package git

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ducksnest/nestbot/internal/logs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Options configure Open and Clone. The zero value works for a local
// repository and a file:// remote.
type Options struct {
	// Token authenticates fetch and push over HTTP(S) as basic auth with
	// Username. It is never written to disk nor shown in errors or logs.
	Token string
	// Username goes with Token; default "x-access-token".
	Username string
	// Remote is the remote to fetch from and push to; default "origin".
	Remote string
	// Logger receives one line per network operation and commit; nil
	// discards.
	Logger *slog.Logger
	// Now stamps commits; default time.Now.
	Now func() time.Time
}

// Repo is a git repository opened or cloned by this package.
type Repo struct {
	mu       sync.Mutex
	repo     *gogit.Repository
	remote   string
	username string
	token    string
	redact   *redactor
	log      *slog.Logger
	now      func() time.Time
}

func newRepo(r *gogit.Repository, opts Options) *Repo {
	rp := &Repo{
		repo:     r,
		remote:   opts.Remote,
		username: opts.Username,
		token:    opts.Token,
		log:      opts.Logger,
		now:      opts.Now,
	}
	if rp.remote == "" {
		rp.remote = "origin"
	}
	if rp.username == "" {
		rp.username = "x-access-token"
	}
	rp.log = logs.Or(rp.log)
	if rp.now == nil {
		rp.now = time.Now
	}
	rp.redact = newRedactor()
	rp.redact.addBasic(rp.username, rp.token)
	return rp
}

// Open opens the repository at path or at the nearest parent directory that
// holds one (bare or not). Commits never touch a worktree; so that a person's
// checkout is never left behind its branch, Commit refuses the branch checked
// out there.
func Open(path string, opts Options) (*Repo, error) {
	// A bare repository is only found at path itself; a worktree's .git is
	// also looked for in the parents.
	r, err := gogit.PlainOpenWithOptions(path, &gogit.PlainOpenOptions{EnableDotGitCommonDir: true})
	if errors.Is(err, gogit.ErrRepositoryNotExists) {
		r, err = gogit.PlainOpenWithOptions(path, &gogit.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	}
	if err != nil {
		if errors.Is(err, gogit.ErrRepositoryNotExists) {
			return nil, fmt.Errorf("git: open %s: no git repository here or in any parent directory", path)
		}
		rd := newRedactor(opts.Token)
		return nil, rd.error(fmt.Errorf("git: open %s: %w", path, err))
	}
	rp := newRepo(r, opts)
	// A remote URL in the config may carry credentials: keep them out of errors.
	if cfg, err := r.Config(); err == nil {
		for _, rc := range cfg.Remotes {
			for _, u := range rc.URLs {
				if pu, err := url.Parse(u); err == nil && pu.User != nil {
					pw, _ := pu.User.Password()
					rp.redact.addBasic(pu.User.Username(), pw)
				}
			}
		}
	}
	return rp, nil
}

// Clone clones the repository at rawURL (file://, a local path, http:// or
// https://) into dir as a bare repository mirroring the remote's branches and
// tags, or into memory when dir is "". dir must be absent or empty. A URL
// with credentials in it (https://user:token@host/…) is accepted: they are
// used as Options.Username and Options.Token and not stored.
func Clone(ctx context.Context, rawURL, dir string, opts Options) (*Repo, error) {
	cleanURL, user, pass, err := splitCredentials(rawURL)
	if err != nil {
		return nil, fmt.Errorf("git: clone: %w", err)
	}
	if opts.Token == "" && pass != "" {
		opts.Token = pass
		if opts.Username == "" {
			opts.Username = user
		}
	}
	op := "git: clone " + cleanURL
	if dir != "" {
		op += " into " + dir
	}
	fail := func(err error) error {
		rd := newRedactor()
		rd.addBasic(opts.Username, opts.Token)
		rd.addBasic(user, pass)
		return rd.error(fmt.Errorf("%s: %w", op, err))
	}

	var r *gogit.Repository
	cleanup := func() {}
	if dir == "" {
		r, err = gogit.Init(memory.NewStorage(), nil)
	} else {
		cleanup, err = prepareDir(dir)
		if err != nil {
			return nil, fail(err)
		}
		r, err = gogit.PlainInit(dir, true)
	}
	if err != nil {
		cleanup()
		return nil, fail(err)
	}
	rp := newRepo(r, opts)
	rp.redact.addBasic(user, pass)
	if err := rp.cloneInto(ctx, cleanURL); err != nil {
		cleanup()
		return nil, rp.redact.error(fmt.Errorf("%s: %w", op, err))
	}
	rp.log.Info("git: cloned", "url", rp.redact.string(cleanURL), "dir", dir)
	return rp, nil
}

func (r *Repo) cloneInto(ctx context.Context, cleanURL string) error {
	rem, err := r.repo.CreateRemote(&config.RemoteConfig{
		Name: r.remote,
		URLs: []string{cleanURL},
		Fetch: []config.RefSpec{
			"+refs/heads/*:refs/heads/*",
			"+refs/tags/*:refs/tags/*",
		},
	})
	if err != nil {
		return err
	}
	auth, err := r.authFor(cleanURL)
	if err != nil {
		return err
	}
	useTransport()
	refs, err := rem.ListContext(ctx, &gogit.ListOptions{Auth: auth})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return r.setHead(plumbing.NewBranchReferenceName("main"))
	}
	if err != nil {
		return err
	}
	err = rem.FetchContext(ctx, &gogit.FetchOptions{RemoteName: r.remote, Auth: auth, Tags: gogit.NoTags})
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return err
	}
	return r.setHead(remoteHead(refs))
}

// remoteHead is the branch the remote's HEAD names, else main or master if
// the remote has one, else the first branch.
func remoteHead(refs []*plumbing.Reference) plumbing.ReferenceName {
	var branches []plumbing.ReferenceName
	for _, ref := range refs {
		if ref.Name() == plumbing.HEAD && ref.Type() == plumbing.SymbolicReference {
			return ref.Target()
		}
		if ref.Name().IsBranch() {
			branches = append(branches, ref.Name())
		}
	}
	for _, want := range []string{"main", "master"} {
		for _, b := range branches {
			if b.Short() == want {
				return b
			}
		}
	}
	if len(branches) > 0 {
		return branches[0]
	}
	return plumbing.NewBranchReferenceName("main")
}

func (r *Repo) setHead(branch plumbing.ReferenceName) error {
	return r.repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, branch))
}

// prepareDir makes sure dir is absent or empty and returns a function that
// undoes what a failed clone left there.
func prepareDir(dir string) (func(), error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return func() { _ = os.RemoveAll(dir) }, nil
	case err != nil:
		return nil, err
	case len(entries) > 0:
		return nil, fmt.Errorf("directory %s is not empty", dir)
	}
	return func() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			_ = os.RemoveAll(dir + string(os.PathSeparator) + e.Name())
		}
	}, nil
}

// splitCredentials removes user:password@ from an http(s) URL.
func splitCredentials(raw string) (clean, user, pass string, err error) {
	if !strings.Contains(raw, "://") {
		return raw, "", "", nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL; say only what is wrong.
		return "", "", "", errors.New("the remote URL does not parse")
	}
	if u.User == nil {
		return raw, "", "", nil
	}
	user = u.User.Username()
	pass, _ = u.User.Password()
	if pass == "" { // https://token@host/… carries the token as the user name
		pass, user = user, ""
	}
	u.User = nil
	return u.String(), user, pass, nil
}

// authFor returns the credentials to send to the remote at rawURL: basic
// auth over HTTP(S) when a token is set, nothing otherwise. It refuses to
// send a token in the clear over http:// to anything but a loopback address.
func (r *Repo) authFor(rawURL string) (transport.AuthMethod, error) {
	if r.token == "" {
		return nil, nil
	}
	ep, err := transport.NewEndpoint(rawURL)
	if err != nil {
		return nil, err
	}
	switch ep.Protocol {
	case "https":
	case "http":
		host := ep.Host
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			return nil, fmt.Errorf("refusing to send the token over plain http to %s; use https", host)
		}
	default:
		return nil, nil
	}
	return &githttp.BasicAuth{Username: r.username, Password: r.token}, nil
}

func (r *Repo) remoteURL() (string, error) {
	rem, err := r.repo.Remote(r.remote)
	if err != nil {
		return "", fmt.Errorf("remote %q: %w", r.remote, err)
	}
	urls := rem.Config().URLs
	if len(urls) == 0 {
		return "", fmt.Errorf("remote %q has no URL", r.remote)
	}
	return urls[len(urls)-1], nil
}

// Fetch updates the repository from the remote. Without refspecs it fetches
// what the remote is configured to fetch — for a Clone, every branch and tag,
// forced over the local ones. With refspecs (for example
// "+refs/pull/7/head:refs/pull/7/head") it fetches exactly those.
func (r *Repo) Fetch(ctx context.Context, refspecs ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.fetch(ctx, refspecs)
	if err != nil {
		return r.redact.error(fmt.Errorf("git: fetch from %s: %w", r.remote, err))
	}
	return nil
}

func (r *Repo) fetch(ctx context.Context, refspecs []string) error {
	u, err := r.remoteURL()
	if err != nil {
		return err
	}
	auth, err := r.authFor(u)
	if err != nil {
		return err
	}
	opts := &gogit.FetchOptions{RemoteName: r.remote, Auth: auth}
	for _, s := range refspecs {
		rs := config.RefSpec(s)
		if err := rs.Validate(); err != nil {
			return fmt.Errorf("refspec %q: %w", s, err)
		}
		opts.RefSpecs = append(opts.RefSpecs, rs)
		opts.Tags = gogit.NoTags
	}
	useTransport()
	start := time.Now()
	err = r.repo.FetchContext(ctx, opts)
	if errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		err = nil
	}
	if err != nil {
		return err
	}
	r.log.Info("git: fetched", "remote", r.remote, "url", r.redact.string(u), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Head returns the commit HEAD points at.
func (r *Repo) Head() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commitAt("HEAD")
	if err != nil {
		return "", err
	}
	return c.Hash.String(), nil
}

// Resolve returns the full sha of the commit rev names: a branch, a tag
// (annotated tags are peeled), a full or abbreviated sha, or any of these
// followed by ~n or ^n. An unknown rev matches ErrUnknownRevision.
func (r *Repo) Resolve(rev string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commitAt(rev)
	if err != nil {
		return "", err
	}
	return c.Hash.String(), nil
}

// commitAt resolves rev to its commit. The caller holds r.mu.
func (r *Repo) commitAt(rev string) (*object.Commit, error) {
	if rev == "" {
		return nil, fmt.Errorf("git: resolve: empty revision: %w", ErrUnknownRevision)
	}
	h, err := r.repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		if errors.Is(err, plumbing.ErrReferenceNotFound) || errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("git: revision %q: %w (fetch it first, or it was never pushed here)", rev, ErrUnknownRevision)
		}
		return nil, r.redact.error(fmt.Errorf("git: revision %q: %w", rev, err))
	}
	c, err := r.repo.CommitObject(*h)
	if err != nil {
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("git: revision %q: %w", rev, ErrUnknownRevision)
		}
		return nil, r.redact.error(fmt.Errorf("git: revision %q: %w", rev, err))
	}
	return c, nil
}
