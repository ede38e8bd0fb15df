package git

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestResolve(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	c := f.commits
	for _, rev := range []string{"main", "side", "v0", "v1", "refs/heads/main", "refs/tags/v1", "main~1", "main^", "HEAD",
		c["c2"], c["c3"][:7], c["s1"][:10]} {
		want := strings.TrimSpace(gitRun(t, f.work, "rev-parse", rev+"^{commit}"))
		got, err := r.Resolve(rev)
		if err != nil {
			t.Errorf("Resolve(%q): %v", rev, err)
			continue
		}
		if got != want {
			t.Errorf("Resolve(%q) = %s, want %s", rev, got, want)
		}
	}
	head, err := r.Head()
	if err != nil || head != c["c4"] {
		t.Errorf("Head() = %s, %v; want %s", head, err, c["c4"])
	}
	for _, rev := range []string{"nope", "0123456789abcdef0123456789abcdef01234567", "v9", ""} {
		_, err := r.Resolve(rev)
		if !errors.Is(err, ErrUnknownRevision) {
			t.Errorf("Resolve(%q) = %v, want ErrUnknownRevision", rev, err)
		}
	}
}

func TestReadFile(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	for _, tc := range []struct{ rev, path string }{
		{"c1", "hosts/laptop-ultra.nix"},
		{"c2", "hosts/laptop-firebat.nix"},
		{"c3", "hosts/ultra/default.nix"},
		{"c3", "nest.yaml"},
		{"c4", "scripts/deploy.sh"},
		{"s1", "side.txt"},
	} {
		rev := f.commits[tc.rev]
		want := gitRun(t, f.remote, "show", rev+":"+tc.path)
		got, err := r.ReadFile(rev, tc.path)
		if err != nil {
			t.Errorf("ReadFile(%s, %s): %v", tc.rev, tc.path, err)
			continue
		}
		if string(got) != want {
			t.Errorf("ReadFile(%s, %s) = %q, want %q", tc.rev, tc.path, got, want)
		}
	}
	if got, err := r.ReadFile("v1", "nest.yaml"); err != nil || !strings.Contains(string(got), "flake: infra/nix") {
		t.Errorf("ReadFile(v1, nest.yaml) = %q, %v", got, err)
	}
	for _, tc := range []struct{ rev, path string }{
		{"main", "docs/b.md"},              // deleted in c4
		{"main", "hosts/laptop-ultra.nix"}, // renamed in c3
		{"main", "nest.yaml/x"},
		{"main", "no/such/file"},
	} {
		if _, err := r.ReadFile(tc.rev, tc.path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(%s, %s) = %v, want fs.ErrNotExist", tc.rev, tc.path, err)
		}
	}
	if _, err := r.ReadFile("main", "hosts"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a directory = %v, want an is-a-directory error", err)
	}
	if _, err := r.ReadFile("0123456789abcdef0123456789abcdef01234567", "nest.yaml"); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("ReadFile at an unknown commit = %v, want ErrUnknownRevision", err)
	}
}

func TestTree(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	for _, label := range []string{"c1", "c3", "c4", "s1"} {
		rev := f.commits[label]
		fsys, err := r.Tree(rev)
		if err != nil {
			t.Fatalf("Tree(%s): %v", label, err)
		}
		want := lines(gitRun(t, f.remote, "ls-tree", "-r", "--name-only", rev))
		if err := fstest.TestFS(fsys, want...); err != nil {
			t.Errorf("Tree(%s): fstest: %v", label, err)
		}
		var got []string
		err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				got = append(got, p)
				data, err := fs.ReadFile(fsys, p)
				if err != nil {
					return err
				}
				if wantData := gitRun(t, f.remote, "show", rev+":"+p); string(data) != wantData {
					t.Errorf("Tree(%s): %s = %q, want %q", label, p, data, wantData)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Tree(%s): walk: %v", label, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Tree(%s) files = %v, want (git ls-tree) %v", label, got, want)
		}
	}

	fsys, err := r.Tree("v0")
	if err != nil {
		t.Fatal(err)
	}
	info, err := fs.Stat(fsys, "scripts/deploy.sh")
	if err != nil || info.Mode().Perm()&0o111 == 0 {
		t.Errorf("v0 scripts/deploy.sh: %v, %v; want executable", info, err)
	}
	info, err = fs.Stat(fsys, "hosts")
	if err != nil || !info.IsDir() {
		t.Errorf("stat hosts = %v, %v; want a directory", info, err)
	}
	if _, err := fs.Stat(fsys, "side.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat side.txt at v0 = %v, want fs.ErrNotExist", err)
	}
	if _, err := r.Tree("nope"); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("Tree(nope) = %v, want ErrUnknownRevision", err)
	}
}

// TestChangedPaths compares every pair of fixture commits, both ways, with
// `git diff --name-only --no-renames`. --no-renames because a renamed host
// file matters under its old path too; git's default (renames detected)
// lists only the new one.
func TestChangedPaths(t *testing.T) {
	f := newFixture(t)
	r := cloneFixture(t, f, nil)
	labels := []string{"c1", "c2", "c3", "c4", "s1"}
	for _, a := range labels {
		for _, b := range labels {
			from, to := f.commits[a], f.commits[b]
			got, err := r.ChangedPaths(from, to)
			if err != nil {
				t.Errorf("ChangedPaths(%s, %s): %v", a, b, err)
				continue
			}
			want := lines(gitRun(t, f.remote, "diff", "--name-only", "--no-renames", from, to))
			if len(want) == 0 {
				want = []string{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ChangedPaths(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}

	// The same facts, stated without the git CLI.
	for _, tc := range []struct {
		from, to string
		want     []string
	}{
		{"c2", "c3", []string{"hosts/laptop-ultra.nix", "hosts/ultra/default.nix", "nest.yaml"}},
		{"c3", "c4", []string{"docs/b.md", "scripts/deploy.sh"}}, // a delete and a mode change
		{"s1", "c4", []string{"README.md", "docs/b.md", "hosts/laptop-ultra.nix", "hosts/ultra/default.nix",
			"nest.yaml", "scripts/deploy.sh", "side.txt"}}, // s1 is not an ancestor of c4
		{"c4", "c4", []string{}},
	} {
		got, err := r.ChangedPaths(f.commits[tc.from], f.commits[tc.to])
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ChangedPaths(%s, %s) = %v, %v; want %v", tc.from, tc.to, got, err, tc.want)
		}
	}
	// Revisions by name work too.
	if got, err := r.ChangedPaths("v1", "main"); err != nil || len(got) != 2 {
		t.Errorf("ChangedPaths(v1, main) = %v, %v", got, err)
	}

	// A host that reports a revision the repository does not have.
	unknown := "0123456789abcdef0123456789abcdef01234567"
	_, err := r.ChangedPaths(unknown, "main")
	if !errors.Is(err, ErrUnknownRevision) || !strings.Contains(err.Error(), unknown) {
		t.Errorf("ChangedPaths(unknown, main) = %v; want ErrUnknownRevision naming %s", err, unknown)
	}
	if _, err := r.ChangedPaths("main", unknown); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("ChangedPaths(main, unknown) = %v; want ErrUnknownRevision", err)
	}
}

func TestOpen(t *testing.T) {
	f := newFixture(t)
	// From a subdirectory: the repository is found above it.
	r, err := Open(filepath.Join(f.work, "hosts"), testOptions(nil))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	head, err := r.Head()
	if err != nil || head != f.commits["c4"] {
		t.Errorf("Head() = %s, %v; want %s", head, err, f.commits["c4"])
	}
	got, err := r.ReadFile("side", "side.txt")
	if err != nil || string(got) != "side\n" {
		t.Errorf("ReadFile(side, side.txt) = %q, %v", got, err)
	}
	// A bare repository opens too.
	if b, err := Open(f.remote, Options{}); err != nil {
		t.Errorf("Open(bare): %v", err)
	} else if h, err := b.Resolve("side"); err != nil || h != f.commits["s1"] {
		t.Errorf("bare Resolve(side) = %s, %v", h, err)
	}
	if _, err := Open(t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "no git repository") {
		t.Errorf("Open(empty dir) = %v, want a no-repository error", err)
	}
}
