package pki

import (
	"bytes"
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

// Dir is a certificate tree in a directory on disk.
type Dir string

// Open opens name below the directory.
func (d Dir) Open(name string) (fs.File, error) { return os.DirFS(string(d)).Open(name) }

// WriteFile writes data to a temporary file beside name, syncs it, and
// renames it into place, so a failure leaves the old file or none. It
// refuses a plaintext private key in anything but an .age file.
func (d Dir) WriteFile(name string, data []byte) error {
	s, err := d.stage(name, data)
	if err != nil {
		return err // directories it made stay: others may be writing beside them
	}
	if err := s.Commit(); err != nil {
		os.Remove(s.tmp) // only the file: others may be staged beside it
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
	root := filepath.Clean(string(d))
	full := filepath.Join(root, filepath.FromSlash(name))
	s := &dirStaged{root: root, name: name, full: full}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return s, fmt.Errorf("write %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(full), "."+filepath.Base(full)+".*.tmp")
	if err != nil {
		return s, fmt.Errorf("write %s: %w", name, err)
	}
	s.tmp = tmp.Name()
	err = writeSynced(tmp, data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(s.tmp)
		s.tmp = ""
		return s, fmt.Errorf("write %s: %w", name, err)
	}
	return s, nil
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
	root, name, tmp, full string
	committed             bool
}

func (s *dirStaged) Commit() error {
	if err := os.Rename(s.tmp, s.full); err != nil {
		return fmt.Errorf("write %s: %w", s.name, err)
	}
	s.committed = true
	return nil
}

// Discard removes the staged file and then the directories above it that
// are left empty, up to the tree's root: those Stage created.
func (s *dirStaged) Discard() {
	if s.committed {
		return
	}
	if s.tmp != "" {
		os.Remove(s.tmp)
	}
	for dir := filepath.Dir(s.full); dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
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
