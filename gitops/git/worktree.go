package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrNoWorktree is returned by CommitWorktree for a bare repository.
var ErrNoWorktree = errors.New("git: the repository has no worktree")

// CommitWorktree commits, on the checked-out branch of a repository with a
// worktree, the files at paths (relative to the worktree root) as they are on
// disk now: written files are added, missing ones removed. It is how a person
// at a terminal commits what nestbot wrote into their checkout; the bot
// itself commits without a worktree (Commit). Files holding a plaintext
// private key are refused before anything is staged.
func (r *Repo) CommitWorktree(ctx context.Context, paths []string, message string, author Signature) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	wt, err := r.repo.Worktree()
	if err != nil {
		return "", ErrNoWorktree
	}
	root := wt.Filesystem.Root()
	files := map[string][]byte{}
	var removed []string
	for i, p := range paths {
		if filepath.IsAbs(p) {
			rel, err := relativeTo(root, p)
			if err != nil {
				return "", err
			}
			p = rel
			paths[i] = p
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			removed = append(removed, p)
		case err != nil:
			return "", fmt.Errorf("git: commit: %w", err)
		default:
			files[p] = data
		}
	}
	if err := checkSecrets(files); err != nil {
		return "", err
	}
	for p := range files {
		if _, err := wt.Add(p); err != nil {
			return "", r.redact.error(fmt.Errorf("git: add %s: %w", p, err))
		}
	}
	for _, p := range removed {
		if _, err := wt.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "entry not found") {
			return "", r.redact.error(fmt.Errorf("git: remove %s: %w", p, err))
		}
	}
	st, err := wt.Status()
	if err != nil {
		return "", r.redact.error(fmt.Errorf("git: status: %w", err))
	}
	staged := false
	for _, s := range st {
		if s.Staging != gogit.Unmodified && s.Staging != gogit.Untracked {
			staged = true
			break
		}
	}
	if !staged {
		return "", ErrNothingToCommit
	}
	sig := &object.Signature{Name: author.Name, Email: author.Email, When: r.now()}
	h, err := wt.Commit(strings.TrimSpace(message)+"\n", &gogit.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		return "", r.redact.error(fmt.Errorf("git: commit: %w", err))
	}
	return h.String(), nil
}

// relativeTo returns p relative to root, as a slash path, refusing one outside it.
func relativeTo(root, p string) (string, error) {
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	if d, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		p = filepath.Join(d, filepath.Base(p))
	}
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("git: %s is outside the worktree %s", p, root)
	}
	return filepath.ToSlash(rel), nil
}
