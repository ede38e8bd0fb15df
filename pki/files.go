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
	if err := checkWrite(name, data); err != nil {
		return err
	}
	full := filepath.Join(string(d), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(full), "."+filepath.Base(full)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing left to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), full); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
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
