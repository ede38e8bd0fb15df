package certtree

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/ducksnest/nestbot/pki"
)

// Files is a certificate tree rooted at pki.dir: read as an fs.FS, written
// a whole file at a time. Names are slash-separated and relative
// (fs.ValidPath). WriteFile and Remove are called concurrently, for
// different names.
type Files interface {
	fs.FS
	// WriteFile replaces name with data, creating directories as needed. A
	// reader sees the old file or the new one, never a part of either.
	WriteFile(name string, data []byte) error
	// Remove deletes name; a missing file is not an error.
	Remove(name string) error
}

// Dir is a certificate tree in a directory on disk. Everything it reads
// and writes goes through an os.Root opened at the directory, and it
// follows no symbolic link: the directory itself, or anything on the way
// to a name in it, being a link is a *LinkError. (A pull request may hold
// links; through one, a read or a write could reach outside the checkout.)
type Dir string

// LinkError is a symbolic link where Dir reads or writes. It names the link,
// never what it points at.
type LinkError struct {
	Dir  string // the tree
	Path string // the link, relative to Dir ("." for Dir itself)
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("%s: a symbolic link; nestbot reads and writes nothing through a link in pki.dir (it could lead out of the repository): replace it with the file or directory itself",
		filepath.Join(e.Dir, filepath.FromSlash(e.Path)))
}

// ErrSymlink is matched (errors.Is) by a *LinkError.
var ErrSymlink = errors.New("symbolic link")

// Is makes errors.Is(err, ErrSymlink) hold.
func (e *LinkError) Is(target error) bool { return target == ErrSymlink }

// root opens the tree's directory, refusing it when it is a link.
func (d Dir) root() (*os.Root, error) {
	if fi, err := os.Lstat(string(d)); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &LinkError{Dir: string(d), Path: "."}
	}
	return os.OpenRoot(string(d))
}

// noLinks refuses name when it, or a directory on the way to it, is a
// symbolic link; what does not exist yet is no link.
func (d Dir) noLinks(r *os.Root, name string) error {
	p := ""
	for part := range strings.SplitSeq(name, "/") {
		p = path.Join(p, part)
		fi, err := r.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return &LinkError{Dir: string(d), Path: p}
		}
	}
	return nil
}

// Open opens name below the directory (fs.FS), following no link.
func (d Dir) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	r, err := d.root()
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer r.Close()
	if name != "." {
		if err := d.noLinks(r, name); err != nil {
			return nil, err
		}
	}
	f, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// WriteFile writes data to a temporary file beside name, syncs it, and
// renames it into place, so a failure leaves the old file or none. It
// refuses a plaintext private key in anything but an .age file.
func (d Dir) WriteFile(name string, data []byte) error {
	if err := checkWrite(name, data); err != nil {
		return err
	}
	r, err := d.openForWrite()
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer r.Close()
	if err := d.noLinks(r, name); err != nil {
		return err
	}
	if err := r.MkdirAll(path.Dir(name), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err) // directories it made stay: others may be writing beside them
	}
	tmp, err := writeAside(r, name, data)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := r.Rename(tmp, name); err != nil {
		r.Remove(tmp) // only the file: others may be staged beside it
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// openForWrite makes the tree's directory when it is missing and opens it.
func (d Dir) openForWrite() (*os.Root, error) {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return nil, err
	}
	return d.root()
}

// A Stager is a Files that can write the new content of many files aside
// before putting any into place. Apply stages each key and certificate as
// soon as it is issued, so that the disk's work overlaps the issuing of the
// others, and puts them into place only once all are staged.
type Stager interface {
	Files
	// Stage begins a staging, to which the files are added.
	Stage() (Staging, error)
}

// Staging is the files written aside by one Stage.
type Staging interface {
	// Add writes data aside for name, durably, without touching the tree.
	// It is called concurrently, for different names.
	Add(name string, data []byte) error
	// Commit puts the staged file name into place, replacing it at once.
	// It may put other staged files into place with it (those of a
	// directory that is new); Commit of those then does nothing more.
	// It is called concurrently, for different names, once every Add
	// returned.
	Commit(name string) error
	// Discard removes what was staged and not put into place, and
	// releases the tree. It is called once, after the last Add or Commit.
	Discard()
}

// Stage begins a staging of files in the tree, through its os.Root and
// following no link, as WriteFile does. A file added in a directory that
// exists goes to a temporary file beside it, renamed into place by Commit.
// The files of a directory that does not exist yet are written, under
// their own names, into a hidden directory beside the first missing one
// (derived/.node-7.<random>.tmp for derived/node-7/…), which Commit
// renames into place whole: a new host's directory appears complete or not
// at all, and its files cost no rename each. Add refuses a plaintext
// private key in anything but an .age file, or a link on the way to a
// name, and then writes nothing.
func (d Dir) Stage() (Staging, error) {
	r, err := d.openForWrite()
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", d, err)
	}
	return &dirStaging{d: d, r: r, files: map[string]*stagedFile{}, dirs: map[string]*stagedTree{}}, nil
}

// StageAll stages files (name → content), 8 at a time; when one cannot be,
// it leaves nothing of its own.
func (d Dir) StageAll(files map[string][]byte) (Staging, error) {
	s, err := d.Stage()
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(files))
	if err := errors.Join(inParallel(len(names), func(i int) error { return s.Add(names[i], files[names[i]]) })...); err != nil {
		s.Discard()
		return nil, err
	}
	return s, nil
}

// dirStaging is what one Dir.Stage wrote aside, in the tree r opens.
type dirStaging struct {
	d     Dir
	mu    sync.Mutex // guards what follows
	r     *os.Root   // nil once discarded
	files map[string]*stagedFile
	dirs  map[string]*stagedTree // a file's directory → the tree it is new in (nil: it exists)
	trees []*stagedTree
}

type stagedFile struct {
	name      string
	tmp       string      // written aside in an existing directory
	tree      *stagedTree // or written into a new directory, staged whole
	committed bool
}

// stagedTree is a new directory, top, staged whole as hidden.
type stagedTree struct {
	top, hidden string
	made        map[string]bool // directories made inside it
	once        sync.Once
	err         error
	committed   bool
}

// inside is where name, top or below it, is staged.
func (t *stagedTree) inside(name string) string {
	return t.hidden + strings.TrimPrefix(name, t.top)
}

func (s *dirStaging) Add(name string, data []byte) error {
	if err := checkWrite(name, data); err != nil {
		return err
	}
	f, err := s.place(name)
	if err != nil {
		return err
	}
	if f.tree == nil {
		tmp, err := writeAside(s.r, name, data)
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		s.mu.Lock()
		f.tmp = tmp
		s.mu.Unlock()
		return nil
	}
	if err := writeNew(s.r, f.tree.inside(name), data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// place finds where name is staged: beside it, when its directory exists,
// or in the staged tree its directory is new in, whose directories it
// makes.
func (s *dirStaging) place(name string) (*stagedFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.r == nil:
		return nil, fmt.Errorf("write %s: the staging was discarded", name)
	case s.files[name] != nil:
		return nil, fmt.Errorf("write %s: staged twice", name)
	}
	dir := path.Dir(name)
	tree, seen := s.dirs[dir]
	if !seen {
		var err error
		if tree, err = s.treeOf(dir); err != nil {
			return nil, err
		}
		s.dirs[dir] = tree
	}
	if tree == nil { // name itself, in a directory that exists, must be no link
		if err := s.d.noLinks(s.r, name); err != nil {
			return nil, err
		}
	} else if dir != tree.top && !tree.made[dir] {
		if err := s.r.MkdirAll(tree.inside(dir), 0o755); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
		tree.made[dir] = true
	}
	f := &stagedFile{name: name, tree: tree}
	s.files[name] = f
	return f, nil
}

// treeOf returns the staged tree that dir is new in, making one when dir's
// first missing ancestor has none yet; nil when dir exists. A link on the
// way to dir is a *LinkError. s.mu is held.
func (s *dirStaging) treeOf(dir string) (*stagedTree, error) {
	top, err := s.d.firstMissing(s.r, dir)
	if err != nil || top == "" {
		return nil, err
	}
	for _, t := range s.trees {
		if t.top == top {
			return t, nil
		}
	}
	hidden, err := mkdirTemp(s.r, top)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", top, err)
	}
	t := &stagedTree{top: top, hidden: hidden, made: map[string]bool{}}
	s.trees = append(s.trees, t)
	return t, nil
}

// firstMissing is the first of the directories on the way to name, name
// included, that does not exist ("" when all do), refusing a link among
// those that do.
func (d Dir) firstMissing(r *os.Root, name string) (string, error) {
	if name == "." {
		return "", nil
	}
	p := ""
	for part := range strings.SplitSeq(name, "/") {
		p = path.Join(p, part)
		fi, err := r.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return p, nil
		case err != nil:
			return "", fmt.Errorf("write %s: %w", name, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return "", &LinkError{Dir: string(d), Path: p}
		}
	}
	return "", nil
}

func (s *dirStaging) Commit(name string) error {
	s.mu.Lock()
	f := s.files[name]
	s.mu.Unlock()
	if f == nil {
		return fmt.Errorf("write %s: it was not staged", name)
	}
	if t := f.tree; t != nil {
		t.once.Do(func() {
			t.err = s.putTree(t)
			s.mu.Lock()
			t.committed = t.err == nil
			s.mu.Unlock()
		})
		if t.err != nil {
			return fmt.Errorf("write %s: %w", name, t.err)
		}
		return nil
	}
	if err := s.r.Rename(f.tmp, f.name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	s.mu.Lock()
	f.committed = true
	s.mu.Unlock()
	return nil
}

// putTree renames the staged directory into place. Should its directory
// have appeared meanwhile, the staged files are moved into it one by one,
// following no link.
func (s *dirStaging) putTree(t *stagedTree) error {
	err := s.r.Rename(t.hidden, t.top)
	if err == nil || !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	}
	err = fs.WalkDir(s.r.FS(), t.hidden, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		to := t.top + strings.TrimPrefix(p, t.hidden)
		if err := s.d.noLinks(s.r, to); err != nil {
			return err
		}
		if err := s.r.MkdirAll(path.Dir(to), 0o755); err != nil {
			return err
		}
		return s.r.Rename(p, to)
	})
	if err != nil {
		return err
	}
	return s.r.RemoveAll(t.hidden) // only its emptied directories are left
}

// Discard removes the staged files and directories not put into place.
func (s *dirStaging) Discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r == nil {
		return
	}
	for _, f := range s.files {
		if f.tmp != "" && !f.committed {
			s.r.Remove(f.tmp)
		}
	}
	for _, t := range s.trees {
		if !t.committed {
			s.r.RemoveAll(t.hidden) // made by Stage, under a name of its own
		}
	}
	s.r.Close()
	s.r = nil
}

// writeAside writes data to a new temporary file beside name and syncs it;
// it returns the temporary file's name.
func writeAside(r *os.Root, name string, data []byte) (string, error) {
	tmp, f, err := createTemp(r, name)
	if err != nil {
		return "", err
	}
	err = writeSynced(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// writeNew creates the file name, which must not exist, with data, synced.
func writeNew(r *os.Root, name string, data []byte) error {
	f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = writeSynced(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// createTemp creates a new file beside name, "."+base+".<random>.tmp".
func createTemp(r *os.Root, name string) (string, *os.File, error) {
	var f *os.File
	tmp, err := tempName(name, func(tmp string) (err error) {
		f, err = r.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		return err
	})
	return tmp, f, err
}

// mkdirTemp creates a new directory beside name, "."+base+".<random>.tmp".
func mkdirTemp(r *os.Root, name string) (string, error) {
	return tempName(name, func(tmp string) error { return r.Mkdir(tmp, 0o755) })
}

// tempName calls create with a new random name beside name until one is
// free.
func tempName(name string, create func(tmp string) error) (string, error) {
	for range 100 {
		var b [8]byte
		rand.Read(b[:])
		tmp := path.Join(path.Dir(name), "."+path.Base(name)+"."+hex.EncodeToString(b[:])+".tmp")
		err := create(tmp)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return tmp, err
	}
	return "", errors.New("no free temporary name")
}

func writeSynced(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	return f.Sync()
}

// Remove deletes name; a missing file is not an error.
func (d Dir) Remove(name string) error {
	if !fs.ValidPath(name) || name == "." {
		return fmt.Errorf("remove %q: not a relative slash-separated path", name)
	}
	r, err := d.root()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	defer r.Close()
	if err := d.noLinks(r, path.Dir(name)); err != nil {
		return err
	}
	err = r.Remove(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// checkWrite is what every writer of the tree checks first.
func checkWrite(name string, data []byte) error {
	if !fs.ValidPath(name) || name == "." {
		return fmt.Errorf("write %q: not a relative slash-separated path", name)
	}
	if pki.IsAgeFile(name) {
		if !pki.IsAgeData(data) {
			return fmt.Errorf("write %s: refused: an .age file that is not age-encrypted", name)
		}
		return nil
	}
	if pki.ContainsPlaintextKey(data) {
		return fmt.Errorf("write %s: refused: it holds a plaintext private key, which belongs only in an .age file", name)
	}
	return nil
}
