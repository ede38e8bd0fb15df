package git

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"sort"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// treeFS is a commit's tree as an fs.FS. Every call takes the repository's
// lock while it reads objects; an open file holds its content in memory and
// needs no lock after Open.
type treeFS struct {
	repo   *Repo
	tree   *object.Tree
	commit *object.Commit
}

var (
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
)

// locked runs f holding the repository's lock.
func (t *treeFS) locked(f func() error) error {
	t.repo.mu.Lock()
	defer t.repo.mu.Unlock()
	return f()
}

func (t *treeFS) Open(name string) (fs.File, error) {
	var f fs.File
	err := t.locked(func() error {
		var err error
		f, err = t.open(name)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return f, nil
}

func (t *treeFS) ReadFile(name string) ([]byte, error) {
	var data []byte
	err := t.locked(func() error {
		var err error
		data, err = t.readFile(name)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

func (t *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	var entries []fs.DirEntry
	err := t.locked(func() error {
		sub, err := t.subtree(name)
		if err != nil {
			return err
		}
		entries, err = t.dirEntries(sub)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return entries, nil
}

func (t *treeFS) Stat(name string) (fs.FileInfo, error) {
	var info fs.FileInfo
	err := t.locked(func() error {
		if name == "." {
			info = t.dirInfo(".")
			return nil
		}
		if !fs.ValidPath(name) {
			return fs.ErrInvalid
		}
		e, err := t.entry(name)
		if err != nil {
			return err
		}
		info, err = t.entryInfo(e)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return info, nil
}

// open, readFile, subtree and the rest expect the lock to be held.

func (t *treeFS) open(name string) (fs.File, error) {
	if name == "." {
		entries, err := t.dirEntries(t.tree)
		if err != nil {
			return nil, err
		}
		return &dirFile{info: t.dirInfo("."), entries: entries}, nil
	}
	if !fs.ValidPath(name) {
		return nil, fs.ErrInvalid
	}
	e, err := t.entry(name)
	if err != nil {
		return nil, err
	}
	info, err := t.entryInfo(e)
	if err != nil {
		return nil, err
	}
	if e.Mode == filemode.Dir {
		sub, err := t.repo.repo.TreeObject(e.Hash)
		if err != nil {
			return nil, err
		}
		entries, err := t.dirEntries(sub)
		if err != nil {
			return nil, err
		}
		return &dirFile{info: info, entries: entries}, nil
	}
	data, err := t.blob(e)
	if err != nil {
		return nil, err
	}
	return &file{Reader: bytes.NewReader(data), info: info}, nil
}

func (t *treeFS) readFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) || name == "." {
		if name == "." {
			return nil, errIsDir
		}
		return nil, fs.ErrInvalid
	}
	e, err := t.entry(name)
	if err != nil {
		return nil, err
	}
	if e.Mode == filemode.Dir {
		return nil, errIsDir
	}
	return t.blob(e)
}

func (t *treeFS) entry(name string) (*object.TreeEntry, error) {
	e, err := t.tree.FindEntry(name)
	if err != nil {
		if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) ||
			errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fs.ErrNotExist
		}
		return nil, err
	}
	return e, nil
}

func (t *treeFS) subtree(name string) (*object.Tree, error) {
	if name == "." {
		return t.tree, nil
	}
	if !fs.ValidPath(name) {
		return nil, fs.ErrInvalid
	}
	e, err := t.entry(name)
	if err != nil {
		return nil, err
	}
	if e.Mode != filemode.Dir {
		return nil, errors.New("not a directory")
	}
	return t.repo.repo.TreeObject(e.Hash)
}

func (t *treeFS) blob(e *object.TreeEntry) ([]byte, error) {
	if e.Mode == filemode.Submodule {
		return nil, nil
	}
	b, err := t.repo.repo.BlobObject(e.Hash)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

func (t *treeFS) modTime() time.Time { return t.commit.Committer.When }

func (t *treeFS) dirInfo(name string) *fileInfo {
	return &fileInfo{name: name, mode: fs.ModeDir | 0o755, mod: t.modTime()}
}

func (t *treeFS) entryInfo(e *object.TreeEntry) (*fileInfo, error) {
	info := &fileInfo{name: e.Name, mod: t.modTime()}
	switch e.Mode {
	case filemode.Dir:
		info.mode = fs.ModeDir | 0o755
		return info, nil
	case filemode.Submodule:
		info.mode = fs.ModeIrregular
		return info, nil
	case filemode.Executable:
		info.mode = 0o755
	case filemode.Symlink:
		info.mode = fs.ModeSymlink | 0o777
	default:
		info.mode = 0o644
	}
	b, err := t.repo.repo.BlobObject(e.Hash)
	if err != nil {
		return nil, err
	}
	info.size = b.Size
	return info, nil
}

func (t *treeFS) dirEntries(tree *object.Tree) ([]fs.DirEntry, error) {
	entries := make([]fs.DirEntry, 0, len(tree.Entries))
	for i := range tree.Entries {
		info, err := t.entryInfo(&tree.Entries[i])
		if err != nil {
			return nil, err
		}
		entries = append(entries, fs.FileInfoToDirEntry(info))
	}
	// Git orders a directory "a" as "a/"; fs.ReadDir wants plain name order.
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	return entries, nil
}

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
	mod  time.Time
}

func (i *fileInfo) Name() string       { return path.Base(i.name) }
func (i *fileInfo) Size() int64        { return i.size }
func (i *fileInfo) Mode() fs.FileMode  { return i.mode }
func (i *fileInfo) ModTime() time.Time { return i.mod }
func (i *fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *fileInfo) Sys() any           { return nil }

type file struct {
	*bytes.Reader
	info *fileInfo
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Close() error               { return nil }

type dirFile struct {
	info    *fileInfo
	entries []fs.DirEntry
	offset  int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errIsDir}
}

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.offset:]
	if n <= 0 {
		d.offset = len(d.entries)
		return append([]fs.DirEntry(nil), rest...), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	d.offset += n
	return append([]fs.DirEntry(nil), rest[:n]...), nil
}
