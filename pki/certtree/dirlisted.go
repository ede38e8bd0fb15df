package certtree

import (
	"errors"
	"io/fs"
	"os"
	"path"
)

// withListed calls f with the tree as an fs.FS that reads the files
// directly in its directory dir (hosts/ for the pinned keys) with dir
// opened and listed once: a name the listing lacks does not exist, a link
// there is a *LinkError, as Open says; everything else goes to Open.
// Reading the pinned files of 10,000 hosts one Open at a time opens the
// tree's root, and walks to each file, 20,000 times. When dir cannot be
// listed, f gets d itself, so that each read says why.
func (d Dir) withListed(dir string, f func(fs.FS)) {
	r, err := d.root()
	if err != nil {
		f(d)
		return
	}
	defer r.Close()
	if d.noLinks(r, dir) != nil {
		f(d)
		return
	}
	sub, err := r.OpenRoot(dir)
	if err != nil {
		f(d)
		return
	}
	defer sub.Close()
	list, err := sub.Open(".")
	if err != nil {
		f(d)
		return
	}
	entries, err := list.ReadDir(-1)
	list.Close()
	if err != nil {
		f(d)
		return
	}
	l := listedDir{d: d, dir: dir, sub: sub, entries: make(map[string]fs.DirEntry, len(entries))}
	for _, e := range entries {
		l.entries[e.Name()] = e
	}
	f(l)
}

type listedDir struct {
	d       Dir
	dir     string
	sub     *os.Root
	entries map[string]fs.DirEntry
}

func (l listedDir) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) || path.Dir(name) != l.dir {
		return l.d.Open(name)
	}
	base := path.Base(name)
	e, ok := l.entries[base]
	switch {
	case !ok:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case e.Type()&fs.ModeSymlink != 0:
		return nil, &LinkError{Dir: string(l.d), Path: name}
	}
	f, err := l.sub.Open(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, err
}
