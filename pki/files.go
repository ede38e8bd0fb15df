package pki

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
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
	s, err := d.stage(name, data)
	if err != nil {
		return err // directories it made stay: others may be writing beside them
	}
	if err := s.Commit(); err != nil {
		s.removeTmp() // only the file: others may be staged beside it
		return err
	}
	return nil
}

// A Stager is a Files that can write a file's new content aside before
// putting it into place. Apply stages each file as soon as it is issued,
// so that the file system's work overlaps the issuing of the others, and
// puts them all into place once everything succeeded.
type Stager interface {
	Files
	// Stage writes data aside for name, durably, without touching name.
	// When it fails having made directories, it returns a Staged as well
	// as the error, whose Discard removes them.
	Stage(name string, data []byte) (Staged, error)
}

// Staged is a file written aside by Stage.
type Staged interface {
	Commit() error // puts the file into place, replacing name at once
	// Discard removes the staged file, and what Stage created for it, once
	// nothing else is being staged in the tree. After Commit it does nothing.
	Discard()
}

// Stage writes data to a temporary file beside name and syncs it. It
// refuses a plaintext private key in anything but an .age file.
func (d Dir) Stage(name string, data []byte) (Staged, error) {
	s, err := d.stage(name, data)
	if s == nil {
		return nil, err
	}
	return s, err
}

// stage writes data aside for name. On an error after it made directories,
// it returns them as well, for Discard to remove.
func (d Dir) stage(name string, data []byte) (*dirStaged, error) {
	if err := checkWrite(name, data); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	r, err := d.root()
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	defer r.Close()
	if err := d.noLinks(r, name); err != nil {
		return nil, err
	}
	s := &dirStaged{d: d, name: name}
	if err := r.MkdirAll(path.Dir(name), 0o755); err != nil {
		return s, fmt.Errorf("write %s: %w", name, err)
	}
	tmp, f, err := createTemp(r, name)
	if err != nil {
		return s, fmt.Errorf("write %s: %w", name, err)
	}
	s.tmp = tmp
	err = writeSynced(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Remove(tmp)
		s.tmp = ""
		return s, fmt.Errorf("write %s: %w", name, err)
	}
	return s, nil
}

// createTemp creates a new file beside name, "."+base+".<random>.tmp".
func createTemp(r *os.Root, name string) (string, *os.File, error) {
	for range 100 {
		var b [8]byte
		rand.Read(b[:])
		tmp := path.Join(path.Dir(name), "."+path.Base(name)+"."+hex.EncodeToString(b[:])+".tmp")
		f, err := r.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return tmp, f, err
	}
	return "", nil, errors.New("no free temporary name")
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

type dirStaged struct {
	d         Dir
	name, tmp string
	committed bool
}

// with runs f on the tree's root, opened for it (a staged file holds no
// descriptor: thousands may be staged at once).
func (s *dirStaged) with(f func(r *os.Root) error) error {
	r, err := s.d.root()
	if err != nil {
		return err
	}
	defer r.Close()
	return f(r)
}

func (s *dirStaged) removeTmp() {
	if s.tmp != "" {
		s.with(func(r *os.Root) error { return r.Remove(s.tmp) })
		s.tmp = ""
	}
}

func (s *dirStaged) Commit() error {
	if err := s.with(func(r *os.Root) error { return r.Rename(s.tmp, s.name) }); err != nil {
		return fmt.Errorf("write %s: %w", s.name, err)
	}
	s.tmp = ""
	s.committed = true
	return nil
}

// Discard removes the staged file and then the directories above it that
// are left empty, up to the tree's root: those Stage created.
func (s *dirStaged) Discard() {
	if s.committed {
		return
	}
	s.removeTmp()
	s.with(func(r *os.Root) error {
		for dir := path.Dir(s.name); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if r.Remove(dir) != nil {
				break
			}
		}
		return nil
	})
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
