package reconcile

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// noIO are the imports that do I/O (files, processes, the network, the
// terminal). fmt imports os, so a transitive check cannot forbid os; each
// package of the planner's core is checked for what it imports itself.
var noIO = []string{
	"os", "os/exec", "net", "net/http", "crypto/tls", "io/fs", "path/filepath",
	"github.com/mattn/go-isatty", "golang.org/x/crypto/ssh",
}

// noIOPrefixes are module trees that do I/O, whatever the package.
var noIOPrefixes = []string{"tailscale.com/", "github.com/aws/"}

// ioAllowed are the packages of the core still allowed an I/O import, and
// which: each must still need it (so the list only shrinks).
var ioAllowed = map[string][]string{
	"nest": {"io/fs", "os", "path/filepath"},
	// RecipientStanza reads an authorized_keys line as OpenSSH does,
	// with x/crypto/ssh's parser (it dials nothing there).
	"pki": {"golang.org/x/crypto/ssh"},
}

// TestCoreDoesNoIO fails if reconcile, or any package of this module it
// depends on (tests aside), imports a package that does I/O: the planner
// is a pure function of what its callers read for it.
func TestCoreDoesNoIO(t *testing.T) {
	const module = "github.com/ducksnest/nestbot/"
	out, err := exec.Command("go", "list", "-deps",
		"-f", `{{.ImportPath}}{{"\t"}}{{join .Imports " "}}`,
		module+"reconcile").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		pkg, imports, _ := strings.Cut(strings.TrimSpace(line), "\t")
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		checked++
		short := strings.TrimPrefix(pkg, module)
		var bad []string
		for _, imp := range strings.Fields(imports) {
			if doesIO(imp) {
				bad = append(bad, imp)
			}
		}
		allowed := ioAllowed[short]
		for _, imp := range bad {
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s: the planner's core does no I/O; read it in the caller and pass it in", short, imp)
			}
		}
		for _, imp := range allowed {
			if !slices.Contains(bad, imp) {
				t.Errorf("%s no longer imports %s: drop it from ioAllowed", short, imp)
			}
		}
	}
	if checked < 3 {
		t.Fatalf("go list -deps listed only %d packages of the module:\n%s", checked, out)
	}
}

func doesIO(imp string) bool {
	if slices.Contains(noIO, imp) {
		return true
	}
	for _, p := range noIOPrefixes {
		if strings.HasPrefix(imp, p) {
			return true
		}
	}
	return false
}
