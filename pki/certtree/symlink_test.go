package certtree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDirFollowsNoSymlink: a tree whose files or directories are symbolic
// links out of it (issue 12 (4)) is neither read nor written through them:
// each use is an error that names the link and says what to do, and the
// canary it points at is in no error and unchanged.
func TestDirFollowsNoSymlink(t *testing.T) {
	outside := t.TempDir()
	const canary = "CANARY-outside-the-tree-7f3a"
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "hosts"), 0o755)
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(tree, "secrets.nix")))       // a file
	must(t, os.Symlink("../../../../../../../../../../"+outside, filepath.Join(tree, "derived")))   // a directory, relative
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(tree, "hosts", "web.pub")))  // a pinned key
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(tree, "hosts", "web.node"))) // a pinned node
	d := Dir(tree)

	refused := func(what string, err error) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s: no error, want the link refused", what)
		case !strings.Contains(err.Error(), "symbolic link"):
			t.Errorf("%s: %v, want the link refused as such", what, err)
		case strings.Contains(err.Error(), canary):
			t.Errorf("%s: the error quotes what the link points at: %v", what, err)
		}
	}
	_, err := d.Open("secrets.nix")
	refused("open secrets.nix", err)
	_, err = d.Open("derived/secret")
	refused("open through a linked directory", err)
	refused("write through a linked directory", d.WriteFile("derived/secret", []byte("overwritten\n")))
	refused("write over a linked file", d.WriteFile("secrets.nix", []byte("{ }\n")))
	_, err = d.StageAll(map[string][]byte{"derived/secret": []byte("overwritten\n")})
	refused("stage through a linked directory", err)
	_, err = d.StageAll(map[string][]byte{"derived/new-host/k8s-kubelet.crt": []byte("new\n")})
	refused("stage a new directory below a linked one", err)
	_, err = d.StageAll(map[string][]byte{"hosts/web.pub": []byte("overwritten\n"), "hosts/new.pub": []byte("new\n")})
	refused("stage over a linked file", err)
	_, err = Observe(tree, time.Now())
	refused("observe", err)
	_, err = ReadHostKeys(tree, []string{"web"})
	refused("read the pinned keys", err)
	_, err = ReadNodeIDs(tree, []string{"web"})
	refused("read the pinned nodes", err)
	linkedHosts := t.TempDir()
	must(t, os.Symlink(filepath.Join(tree, "hosts"), filepath.Join(linkedHosts, "hosts"))) // hosts/ itself
	_, err = ReadHostKeys(linkedHosts, []string{"web"})
	refused("read the pinned keys through a linked hosts/", err)

	linked := filepath.Join(t.TempDir(), "certs")
	must(t, os.Symlink(outside, linked))
	refused("write into a linked pki.dir", Dir(linked).WriteFile("ca/new.crt", []byte("x\n")))
	_, err = Dir(linked).StageAll(map[string][]byte{"ca/new.crt": []byte("x\n")})
	refused("stage into a linked pki.dir", err)
	_, err = Observe(linked, time.Now())
	refused("observe a linked pki.dir", err)

	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != canary+"\n" {
		t.Errorf("the file outside the tree was changed: %q", b)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("files were written outside the tree: %v", entries)
	}
	if entries, _ := os.ReadDir(filepath.Join(tree, "hosts")); len(entries) != 2 {
		t.Errorf("a refused Stage left files in the tree: %v", entries)
	}
}

// TestDirStagedDirectoryReplacedByALink: a new directory staged whole that
// appears, before Commit, as a symbolic link out of the tree is refused at
// Commit; nothing is written through the link, and the staged files go.
func TestDirStagedDirectoryReplacedByALink(t *testing.T) {
	outside := t.TempDir()
	tree := t.TempDir()
	d := Dir(tree)
	st, err := d.StageAll(map[string][]byte{"derived/new-host/k8s-kubelet.crt": []byte("kubelet\n")})
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink("../../../../../../../../../../"+outside, filepath.Join(tree, "derived")))
	err = st.Commit("derived/new-host/k8s-kubelet.crt")
	st.Discard()
	if err == nil {
		t.Error("Commit through a link: no error")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("files were written through the link: %v", entries)
	}
	if entries, _ := os.ReadDir(tree); len(entries) != 1 || entries[0].Name() != "derived" {
		t.Errorf("the tree holds %v, want only the link", entries)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
