package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"

	"github.com/ducksnest/nestbot/pki"
)

// Signature names a commit's author (and committer).
type Signature struct {
	Name  string
	Email string
}

// CommitRequest is one commit: files written and removed on a branch.
type CommitRequest struct {
	// Branch to commit on, "main" or "refs/heads/main".
	Branch string
	// Message is the whole commit message: a subject line, then optionally a
	// blank line and a body. Trailing white space is trimmed.
	Message string
	// Author is also the committer.
	Author Signature
	// Files are written, created or replaced, at their slash-separated paths
	// relative to the repository root. A replaced executable stays
	// executable; everything else is a regular file.
	Files map[string][]byte
	// Remove lists paths to delete: files, or directories with all they hold.
	// Each must exist at the parent.
	Remove []string
	// Parent, if set, is the commit the caller planned against. The commit is
	// refused with a *BranchMovedError when the branch is elsewhere. A branch
	// that does not exist yet is started at Parent.
	Parent string
}

// Commit makes one commit holding every change in req on req.Branch, moves
// the branch to it and returns its sha. It writes objects only: no worktree
// or index is read or changed. It refuses, before writing anything, a file
// that holds a plaintext private key (*PlaintextKeyError), a branch that
// moved (*BranchMovedError) and a commit that would change nothing
// (ErrNothingToCommit).
func (r *Repo) Commit(ctx context.Context, req CommitRequest) (string, error) {
	branch := strings.TrimPrefix(req.Branch, "refs/heads/")
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("git: commit to %s: %w", branch, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sha, err := r.commit(req, branch)
	if err != nil {
		var moved *BranchMovedError
		var key *PlaintextKeyError
		if errors.Is(err, ErrNothingToCommit) || errors.As(err, &moved) || errors.As(err, &key) {
			return "", err
		}
		return "", r.redact.error(fmt.Errorf("git: commit to %s: %w", branch, err))
	}
	r.log.Info("git: committed", "branch", branch, "commit", sha,
		"written", len(req.Files), "removed", len(req.Remove))
	return sha, nil
}

func (r *Repo) commit(req CommitRequest, branch string) (string, error) {
	ref := plumbing.NewBranchReferenceName(branch)
	if err := ref.Validate(); err != nil || branch == "" {
		return "", fmt.Errorf("invalid branch name %q", req.Branch)
	}
	msg := strings.TrimRight(req.Message, " \t\r\n")
	if strings.TrimSpace(msg) == "" {
		return "", errors.New("empty commit message")
	}
	if req.Author.Name == "" || req.Author.Email == "" {
		return "", errors.New("the author needs a name and an email")
	}
	edits, err := buildEdits(req.Files, req.Remove)
	if err != nil {
		return "", err
	}
	if err := checkSecrets(req.Files); err != nil {
		return "", err
	}
	if err := r.refuseCheckedOut(ref); err != nil {
		return "", err
	}

	// Where the branch is, and where the caller expects it.
	current, err := r.repo.Storer.Reference(ref)
	if err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
		return "", err
	}
	var parent *object.Commit
	switch {
	case req.Parent != "":
		parent, err = r.commitAt(req.Parent)
		if err != nil {
			return "", err
		}
		if current != nil && current.Hash() != parent.Hash {
			return "", &BranchMovedError{Branch: branch, Expected: parent.Hash.String(), Actual: current.Hash().String()}
		}
	case current != nil:
		parent, err = r.repo.CommitObject(current.Hash())
		if err != nil {
			return "", fmt.Errorf("branch %s: %w", branch, err)
		}
	default:
		empty, err := r.hasNoBranches()
		if err != nil {
			return "", err
		}
		if !empty {
			return "", fmt.Errorf("branch %s does not exist; set Parent to start it from a commit", branch)
		}
		// The first commit of an empty repository.
	}

	var base *object.Tree
	if parent != nil {
		if base, err = parent.Tree(); err != nil {
			return "", err
		}
	}
	tb := treeBuilder{s: r.repo.Storer}
	treeHash, _, err := tb.apply(base, edits, "")
	if err != nil {
		return "", err
	}
	if (parent != nil && treeHash == parent.TreeHash) || (parent == nil && len(req.Files) == 0) {
		return "", ErrNothingToCommit
	}

	sig := object.Signature{Name: req.Author.Name, Email: req.Author.Email, When: r.now()}
	c := &object.Commit{
		Author:    sig,
		Committer: sig,
		Message:   msg + "\n",
		TreeHash:  treeHash,
	}
	if parent != nil {
		c.ParentHashes = []plumbing.Hash{parent.Hash}
	}
	obj := r.repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", err
	}
	h, err := r.repo.Storer.SetEncodedObject(obj)
	if err != nil {
		return "", err
	}
	if err := r.repo.Storer.CheckAndSetReference(plumbing.NewHashReference(ref, h), current); err != nil {
		if errors.Is(err, storage.ErrReferenceHasChanged) {
			now, _ := r.repo.Storer.Reference(ref)
			moved := &BranchMovedError{Branch: branch, Expected: current.Hash().String()}
			if now != nil {
				moved.Actual = now.Hash().String()
			}
			return "", moved
		}
		return "", fmt.Errorf("move %s to the new commit: %w", branch, err)
	}
	return h.String(), nil
}

// refuseCheckedOut refuses the branch a worktree has checked out: moving it
// without updating the worktree and index would leave that checkout showing
// the commit's changes reverted.
func (r *Repo) refuseCheckedOut(ref plumbing.ReferenceName) error {
	wt, err := r.repo.Worktree()
	if errors.Is(err, gogit.ErrIsBareRepository) {
		return nil
	}
	if err != nil {
		return err
	}
	head, err := r.repo.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return nil
	}
	if head.Type() == plumbing.SymbolicReference && head.Target() == ref {
		return fmt.Errorf("branch %s is checked out in %s, and nestbot commits without touching a worktree; "+
			"commit to another branch, or work in a clone (Clone)", ref.Short(), wt.Filesystem.Root())
	}
	return nil
}

func (r *Repo) hasNoBranches() (bool, error) {
	iter, err := r.repo.Branches()
	if err != nil {
		return false, err
	}
	defer iter.Close()
	_, err = iter.Next()
	if err != nil {
		return true, nil
	}
	return false, nil
}

// checkSecrets refuses files that hold a plaintext private key, and .age
// files that are not age-encrypted, naming every such file.
func checkSecrets(files map[string][]byte) error {
	var bad []string
	for name, data := range files {
		if strings.HasSuffix(name, ".age") {
			if !pki.IsAgeData(data) {
				bad = append(bad, name)
			}
			continue
		}
		if pki.ContainsPlaintextKey(data) {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return &PlaintextKeyError{Paths: bad}
	}
	return nil
}

// edit is a node of the tree of changes: a file to write, a path to
// remove, or a directory with changes below it.
type edit struct {
	path     string
	write    []byte
	isWrite  bool
	remove   bool
	children map[string]*edit
}

func buildEdits(files map[string][]byte, remove []string) (*edit, error) {
	root := &edit{children: map[string]*edit{}}
	add := func(p string, leaf func(*edit)) error {
		if !validPath(p) {
			return fmt.Errorf("path %q: not a relative slash-separated path inside the repository", p)
		}
		n := root
		parts := strings.Split(p, "/")
		for i, part := range parts {
			if n.isWrite || n.remove {
				return fmt.Errorf("paths %q and %q overlap", n.path, p)
			}
			child := n.children[part]
			if child == nil {
				child = &edit{path: strings.Join(parts[:i+1], "/")}
				n.children[part] = child
			}
			n = child
			if i < len(parts)-1 && n.children == nil {
				n.children = map[string]*edit{}
			}
		}
		if n.isWrite || n.remove || len(n.children) > 0 {
			return fmt.Errorf("path %q is given twice, or overlaps another", p)
		}
		leaf(n)
		return nil
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		data := files[p]
		if err := add(p, func(e *edit) { e.isWrite, e.write = true, data }); err != nil {
			return nil, err
		}
	}
	for _, p := range remove {
		if err := add(p, func(e *edit) { e.remove = true }); err != nil {
			return nil, err
		}
	}
	return root, nil
}

// validPath accepts what fs.ValidPath accepts, except the root and any
// ".git" component.
func validPath(p string) bool {
	if p == "." || !fs.ValidPath(p) {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if strings.EqualFold(part, ".git") {
			return false
		}
	}
	return true
}

// treeBuilder writes the trees along the changed paths, reusing every
// unchanged subtree as it is.
type treeBuilder struct {
	s storer.EncodedObjectStorer
}

// apply returns the hash of base with e applied, and how many entries that
// tree has (0: it is empty, and its parent should drop it).
func (b treeBuilder) apply(base *object.Tree, e *edit, dir string) (plumbing.Hash, int, error) {
	entries := map[string]object.TreeEntry{}
	if base != nil {
		for _, te := range base.Entries {
			entries[te.Name] = te
		}
	}
	names := make([]string, 0, len(e.children))
	for name := range e.children {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		child := e.children[name]
		old, exists := entries[name]
		switch {
		case child.remove:
			if !exists {
				return plumbing.ZeroHash, 0, fmt.Errorf("remove %s: no such file or directory at the parent commit", child.path)
			}
			delete(entries, name)
		case child.isWrite:
			h, err := b.blob(child.write)
			if err != nil {
				return plumbing.ZeroHash, 0, fmt.Errorf("write %s: %w", child.path, err)
			}
			mode := filemode.Regular
			if exists && old.Mode == filemode.Executable {
				mode = filemode.Executable
			}
			entries[name] = object.TreeEntry{Name: name, Mode: mode, Hash: h}
		default:
			var sub *object.Tree
			if exists && old.Mode == filemode.Dir {
				t, err := object.GetTree(b.s, old.Hash)
				if err != nil {
					return plumbing.ZeroHash, 0, fmt.Errorf("read %s: %w", child.path, err)
				}
				sub = t
			}
			h, n, err := b.apply(sub, child, child.path)
			if err != nil {
				return plumbing.ZeroHash, 0, err
			}
			if n == 0 {
				delete(entries, name)
			} else {
				entries[name] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h}
			}
		}
	}
	list := make([]object.TreeEntry, 0, len(entries))
	for _, te := range entries {
		list = append(list, te)
	}
	// Git's order: a directory sorts as if its name ended in "/".
	key := func(te object.TreeEntry) string {
		if te.Mode == filemode.Dir {
			return te.Name + "/"
		}
		return te.Name
	}
	sort.Slice(list, func(i, j int) bool { return key(list[i]) < key(list[j]) })
	tree := &object.Tree{Entries: list}
	obj := b.s.NewEncodedObject()
	if err := tree.Encode(obj); err != nil {
		return plumbing.ZeroHash, 0, err
	}
	h, err := b.s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, 0, fmt.Errorf("write tree %s: %w", dir, err)
	}
	return h, len(list), nil
}

func (b treeBuilder) blob(data []byte) (plumbing.Hash, error) {
	obj := b.s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return b.s.SetEncodedObject(obj)
}
