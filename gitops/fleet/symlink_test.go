package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadFollowsNoSymlink: a checkout whose nest.yaml, or whose pki.dir
// or a directory on the way to it, is a symbolic link out of it (issue 12
// (4)) does not load: the error names the link, and what it points at is
// read by nothing.
func TestLoadFollowsNoSymlink(t *testing.T) {
	example, err := os.ReadFile("../../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	const canary = "CANARY-fleet-outside-91c2"
	os.WriteFile(filepath.Join(outside, "nest.yaml"), append(example, []byte("# "+canary+"\n")...), 0o600)
	for name, arrange := range map[string]func(dir string){
		"nest.yaml is a link": func(dir string) {
			os.Symlink(filepath.Join(outside, "nest.yaml"), filepath.Join(dir, "nest.yaml"))
		},
		"pki.dir is a link": func(dir string) {
			os.WriteFile(filepath.Join(dir, "nest.yaml"), example, 0o644)
			os.MkdirAll(filepath.Join(dir, "infra/nix/secrets"), 0o755)
			os.Symlink(outside, filepath.Join(dir, "infra/nix/secrets/certs"))
		},
		"a directory above pki.dir is a link": func(dir string) {
			os.WriteFile(filepath.Join(dir, "nest.yaml"), example, 0o644)
			os.MkdirAll(filepath.Join(dir, "infra"), 0o755)
			os.Symlink("../../../../../../../../"+outside, filepath.Join(dir, "infra/nix"))
		},
	} {
		dir := t.TempDir()
		arrange(dir)
		d, err := Load(filepath.Join(dir, "nest.yaml"))
		switch {
		case err == nil:
			t.Errorf("%s: loaded (pki dir %s), want the link refused", name, d.PKIDir())
		case !strings.Contains(err.Error(), "symbolic link"):
			t.Errorf("%s: %v, want the link refused as such", name, err)
		case strings.Contains(err.Error(), canary):
			t.Errorf("%s: the error quotes the file outside: %v", name, err)
		}
	}
}
