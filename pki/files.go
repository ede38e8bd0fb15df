package pki

import (
	"bytes"
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

// Dir is a certificate tree in a directory on disk.
type Dir string

// Open opens name below the directory.
func (d Dir) Open(name string) (fs.File, error) { return os.DirFS(string(d)).Open(name) }

// WriteFile writes data to a temporary file beside name, syncs it, and
// renames it into place, so a failure leaves the old file or none. It
// refuses a plaintext private key in anything but an .age file.
func (d Dir) WriteFile(name string, data []byte) error {
	if err := checkWrite(name, data); err != nil {
		return err
	}
	full := filepath.Join(filepath.Clean(string(d)), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err) // directories it made stay: others may be writing beside them
	}
	tmp, err := writeAside(full, data)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, full); err != nil {
		os.Remove(tmp) // only the file: others may be staged beside it
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// A Stager is a Files that can write the new content of many files aside
// before putting any into place. Apply stages every key and certificate
// once all are issued, and puts them into place only once all are staged.
type Stager interface {
	Files
	// Stage writes every file aside, durably, without touching the tree
	// (name → content). When it fails it leaves nothing of its own.
	Stage(files map[string][]byte) (Staging, error)
}

// Staging is the files written aside by one Stage.
type Staging interface {
	// Commit puts the staged file name into place, replacing it at once.
	// It may put other staged files into place with it (those of a
	// directory that is new); Commit of those then does nothing more.
	// It is called concurrently, for different names.
	Commit(name string) error
	// Discard removes what was staged and not put into place.
	Discard()
}

// Stage writes files aside and syncs each. A file in a directory that
// exists goes to a temporary file beside it, renamed into place by Commit.
// The files of a directory that does not exist yet are written, under
// their own names, into a hidden directory beside the first missing one
// (derived/.node-7.*.tmp for derived/node-7/…), which Commit renames into
// place whole: a new host's directory appears complete or not at all, and
// its files cost no rename each. It refuses a plaintext private key in
// anything but an .age file, and then writes nothing.
func (d Dir) Stage(files map[string][]byte) (Staging, error) {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := checkWrite(name, files[name]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	root := filepath.Clean(string(d))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("write %s: %w", root, err)
	}
	s := &dirStaging{root: root, files: map[string]*stagedFile{}}
	fail := func(err error) (Staging, error) {
		s.Discard()
		return nil, err
	}
	// Where each file's directory is: there already, or below a new one.
	dirs := map[string]*stagedTree{} // a file's directory → the tree it is new in (nil: it exists)
	var made []string                // directories to make inside the trees
	for name := range files {
		full := filepath.Join(root, filepath.FromSlash(name))
		dir := filepath.Dir(full)
		if _, seen := dirs[dir]; seen {
			s.files[name] = &stagedFile{name: name, full: full, tree: dirs[dir]}
			continue
		}
		tree, err := s.treeOf(dir)
		if err != nil {
			return fail(fmt.Errorf("write %s: %w", name, err))
		}
		dirs[dir] = tree
		if tree != nil && dir != tree.full {
			made = append(made, tree.inside(dir))
		}
		s.files[name] = &stagedFile{name: name, full: full, tree: tree}
	}
	if err := errors.Join(inParallel(len(made), func(i int) error { return os.MkdirAll(made[i], 0o755) })...); err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	staged := slices.Collect(maps.Values(s.files))
	errs = inParallel(len(staged), func(i int) (err error) {
		f := staged[i]
		if f.tree == nil {
			f.tmp, err = writeAside(f.full, files[f.name])
		} else {
			err = writeNew(f.tree.inside(f.full), files[f.name])
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	return s, nil
}

// dirStaging is what one Dir.Stage wrote aside.
type dirStaging struct {
	root  string
	files map[string]*stagedFile
	mu    sync.Mutex
	trees []*stagedTree
}

type stagedFile struct {
	name, full string
	tmp        string      // written aside in an existing directory
	tree       *stagedTree // or written into a new directory, staged whole
	committed  bool
}

// stagedTree is a new directory, full, staged whole as hidden.
type stagedTree struct {
	full, hidden string
	once         sync.Once
	err          error
	committed    bool
}

// inside is where path, below t.full, is staged.
func (t *stagedTree) inside(path string) string {
	return filepath.Join(t.hidden, strings.TrimPrefix(path, t.full))
}

// treeOf returns the staged tree that dir is new in, making one when dir's
// first missing ancestor has none yet; nil when dir exists.
func (s *dirStaging) treeOf(dir string) (*stagedTree, error) {
	top := ""
	for p := dir; p != s.root && strings.HasPrefix(p, s.root+string(filepath.Separator)); p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		top = p
	}
	if top == "" {
		return nil, nil
	}
	for _, t := range s.trees {
		if t.full == top {
			return t, nil
		}
	}
	hidden, err := os.MkdirTemp(filepath.Dir(top), "."+filepath.Base(top)+".*.tmp")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(hidden, 0o755); err != nil {
		os.Remove(hidden)
		return nil, err
	}
	t := &stagedTree{full: top, hidden: hidden}
	s.trees = append(s.trees, t)
	return t, nil
}

func (s *dirStaging) Commit(name string) error {
	f := s.files[name]
	if f == nil {
		return fmt.Errorf("write %s: it was not staged", name)
	}
	if t := f.tree; t != nil {
		t.once.Do(func() {
			t.err = putTree(t.hidden, t.full)
			s.mu.Lock()
			t.committed = t.err == nil
			s.mu.Unlock()
		})
		if t.err != nil {
			return fmt.Errorf("write %s: %w", name, t.err)
		}
		return nil
	}
	if err := os.Rename(f.tmp, f.full); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	s.mu.Lock()
	f.committed = true
	s.mu.Unlock()
	return nil
}

// putTree renames the staged directory hidden to full. Should full have
// appeared meanwhile, the staged files are moved into it one by one.
func putTree(hidden, full string) error {
	err := os.Rename(hidden, full)
	if err == nil || !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	}
	err = filepath.WalkDir(hidden, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		to := filepath.Join(full, strings.TrimPrefix(p, hidden))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		return os.Rename(p, to)
	})
	if err != nil {
		return err
	}
	return os.RemoveAll(hidden) // only its emptied directories are left
}

// Discard removes the staged files and directories not put into place.
func (s *dirStaging) Discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		if f.tmp != "" && !f.committed {
			os.Remove(f.tmp)
		}
	}
	for _, t := range s.trees {
		if !t.committed {
			os.RemoveAll(t.hidden) // made by Stage, under a name of its own
		}
	}
}

// writeAside writes data to a new temporary file beside full and syncs
// it; it returns the temporary file's name.
func writeAside(full string, data []byte) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(full), "."+filepath.Base(full)+".*.tmp")
	if err != nil {
		return "", err
	}
	err = writeSynced(tmp, data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// writeNew creates the file at path, which must not exist, with data, synced.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = writeSynced(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
	err := os.Remove(filepath.Join(string(d), filepath.FromSlash(name)))
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
	if IsAgeFile(name) {
		if !IsAgeData(data) {
			return fmt.Errorf("write %s: refused: an .age file that is not age-encrypted", name)
		}
		return nil
	}
	if ContainsPlaintextKey(data) {
		return fmt.Errorf("write %s: refused: it holds a plaintext private key, which belongs only in an .age file", name)
	}
	return nil
}

// IsAgeData reports whether data begins as an age file does, armored or binary.
func IsAgeData(data []byte) bool {
	d := bytes.TrimLeft(data, " \t\r\n")
	return bytes.HasPrefix(d, []byte(armorHeader)) || bytes.HasPrefix(data, []byte("age-encryption.org/v1\n"))
}

// IsAgeFile reports whether name is an age-encrypted file by its name.
func IsAgeFile(name string) bool { return strings.HasSuffix(path.Base(name), ".age") }
