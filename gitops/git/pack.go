package git

import (
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// WritePack writes a git packfile holding the commit rev names, its tree
// and every tree and blob under it, but none of its history: what a
// shallow clone of depth 1 receives. `git unpack-objects` reads it;
// submodules (gitlinks) are left out, as a shallow fetch leaves them.
func (r *Repo) WritePack(w io.Writer, rev string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commitAt(rev)
	if err != nil {
		return err
	}
	hashes := []plumbing.Hash{c.Hash}
	seen := map[plumbing.Hash]bool{c.Hash: true}
	var walk func(h plumbing.Hash) error
	walk = func(h plumbing.Hash) error {
		if seen[h] {
			return nil
		}
		seen[h] = true
		hashes = append(hashes, h)
		t, err := object.GetTree(r.repo.Storer, h)
		if err != nil {
			return err
		}
		for _, e := range t.Entries {
			switch e.Mode {
			case filemode.Dir:
				if err := walk(e.Hash); err != nil {
					return err
				}
			case filemode.Submodule:
			default:
				if !seen[e.Hash] {
					seen[e.Hash] = true
					hashes = append(hashes, e.Hash)
				}
			}
		}
		return nil
	}
	if err := walk(c.TreeHash); err != nil {
		return r.redact.error(fmt.Errorf("git: pack %s: %w", rev, err))
	}
	if _, err := packfile.NewEncoder(w, r.repo.Storer, false).Encode(hashes, 10); err != nil {
		return r.redact.error(fmt.Errorf("git: pack %s: %w", rev, err))
	}
	return nil
}
