package testkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ducksnest/nestbot/nest"
)

// ExampleFleet copies the example fleet (examples/ducksnest) into dir and
// adds admin, an age recipient, first to its pki.admins as "nestbot" (the
// identity a test's nestbot decrypts and rekeys with). It returns the path
// of the copy's nest.yaml.
func ExampleFleet(t testing.TB, dir, admin string) string {
	t.Helper()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(Root(t), "examples", "ducksnest"))); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "nest.yaml")
	AddAdmin(t, file, admin, "nestbot")
	return file
}

// AddAdmin adds admin, with comment, first to the pki.admins of the
// nest.yaml at file (nest.WithAdmin), failing t if it cannot.
func AddAdmin(t testing.TB, file, admin, comment string) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := nest.WithAdmin(src, admin, comment)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Root is the repository's root: the directory above the test's working
// directory (its package's) that holds go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's working directory")
		}
		dir = parent
	}
}
