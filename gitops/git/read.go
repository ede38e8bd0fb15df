package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"github.com/go-git/go-git/v5/plumbing/object"
)

// ReadFile returns the content of the file at path (slash-separated, relative
// to the repository root) in the commit rev names. A path that is not a file
// there matches fs.ErrNotExist.
func (r *Repo) ReadFile(rev, path string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commitAt(rev)
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, r.redact.error(fmt.Errorf("git: read %s at %s: %w", path, rev, err))
	}
	fsys := &treeFS{repo: r, tree: tree, commit: c}
	data, err := fsys.readFile(path)
	if err != nil {
		return nil, r.redact.error(fmt.Errorf("git: read %s at %s: %w", path, rev, err))
	}
	return data, nil
}

// Tree returns the tree of the commit rev names as a read-only file system
// (it also implements fs.ReadFileFS, fs.ReadDirFS and fs.StatFS). Every
// file's modification time is the commit's committer time. Symbolic links
// are files whose content is the link target, with fs.ModeSymlink; they are
// not followed. Submodules are empty entries with fs.ModeIrregular.
func (r *Repo) Tree(rev string) (fs.FS, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commitAt(rev)
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, r.redact.error(fmt.Errorf("git: tree at %s: %w", rev, err))
	}
	return &treeFS{repo: r, tree: tree, commit: c}, nil
}

// ChangedPaths returns, sorted, the paths of the files that differ between
// the commits from and to name: added, removed, modified, or changed in mode.
// A renamed file appears under both its old and its new path (as `git diff
// --name-only --no-renames` lists it), because both may matter to whoever
// reads the list. from need not be an ancestor of to. A from or to the
// repository does not hold matches ErrUnknownRevision.
func (r *Repo) ChangedPaths(from, to string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, err := r.commitAt(from)
	if err != nil {
		return nil, fmt.Errorf("git: changed paths from %s to %s: %w", from, to, err)
	}
	b, err := r.commitAt(to)
	if err != nil {
		return nil, fmt.Errorf("git: changed paths from %s to %s: %w", from, to, err)
	}
	paths := []string{}
	if a.TreeHash == b.TreeHash {
		return paths, nil
	}
	fail := func(err error) error {
		return r.redact.error(fmt.Errorf("git: changed paths from %s to %s: %w", from, to, err))
	}
	ta, err := a.Tree()
	if err != nil {
		return nil, fail(err)
	}
	tb, err := b.Tree()
	if err != nil {
		return nil, fail(err)
	}
	changes, err := object.DiffTreeWithOptions(context.Background(), ta, tb, &object.DiffTreeOptions{})
	if err != nil {
		return nil, fail(err)
	}
	seen := map[string]bool{}
	for _, ch := range changes {
		for _, name := range []string{ch.From.Name, ch.To.Name} {
			if name != "" && !seen[name] {
				seen[name] = true
				paths = append(paths, name)
			}
		}
	}
	sort.Strings(paths)
	return paths, nil
}

// errIsDir is returned when a file was asked for and a directory found.
var errIsDir = errors.New("is a directory")
