package certtree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ducksnest/nestbot/pki"
)

// CheckTree returns an error when dir holds neither ca/ nor derived/: it
// is not a certificate tree, most often a parent of one (the repository,
// or the directory above pki.dir). The error names the trees it finds up
// to four levels down, which covers pki.dir from the repository's root.
func CheckTree(dir string) error {
	const expected = "expected ca/ and derived/<host>/, the layout of pki.dir"
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%s: %w (%s)", dir, unwrapPath(err), expected)
	} else if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory (%s)", dir, expected)
	}
	if isTree(dir) {
		return nil
	}
	msg := fmt.Sprintf("%s: no certificate tree here (%s)", dir, expected)
	if found := treesBelow(dir, 4); len(found) > 0 {
		msg += "; did you mean " + strings.Join(found, " or ") + "?"
	}
	return errors.New(msg)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func isTree(dir string) bool {
	for _, sub := range []string{pki.CADirName, pki.DerivedDirName} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// treesBelow lists up to three certificate trees within depth levels
// under dir, nearest first. It skips hidden directories and stops after
// reading a thousand, so a large checkout costs little.
func treesBelow(dir string, depth int) []string {
	const most, budget = 3, 1000
	var found []string
	level, read := []string{dir}, 0
	for range depth {
		var next []string
		for _, d := range level {
			if read++; read > budget {
				return found
			}
			entries, err := os.ReadDir(d)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				p := filepath.Join(d, e.Name())
				if !isTree(p) {
					next = append(next, p)
				} else if found = append(found, p); len(found) == most {
					return found
				}
			}
		}
		level = next
	}
	return found
}
