package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

// layoutAdmin stands in for pki.admins in the nest.yaml LayoutSpecs writes:
// recipients are not judged without nest.yaml.
const layoutAdmin = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

// LayoutSpecs is the certificate set a tree implies without nest.yaml, in
// its layout (DetectLayout): a host for every derived/<host>/, a control
// plane when it holds a control-plane certificate (apiserver, etcd-*, …),
// a worker otherwise. It is Set of a nest.yaml written for those hosts,
// with the defaults nest.yaml gets (and for K8Nix, the CA's O=); the
// recipients, IPs, cluster domain and tailnet names in it are
// placeholders, not facts. Nil when the tree's host names do not make a
// valid fleet.
func LayoutSpecs(obs map[string]ObservedCert) []Spec {
	layout := DetectLayout(obs)
	var nodeCerts []string // every host's; any other leaf of the layout makes a control plane
	known := map[string]bool{}
	if layout == nest.LayoutK8Nix {
		for _, l := range k8nixLeaves("", "") {
			known[caDir(K8sCA)+"-"+l.name] = true
			if l.everyHost {
				nodeCerts = append(nodeCerts, caDir(K8sCA)+"-"+l.name)
			}
		}
	} else {
		for name := range leafSigners() {
			known[name] = true
		}
		nodeCerts = []string{"kubelet", "kubelet-serving", "kube-proxy"}
	}
	controlPlane := map[string]bool{}
	for id := range obs {
		host, name, ok := strings.Cut(id, "/")
		if !ok {
			continue
		}
		controlPlane[host] = controlPlane[host] || known[name] && !slices.Contains(nodeCerts, name)
	}
	// The set needs a control plane; a tree of workers alone borrows one
	// under a name none of its hosts has, whose certificates are never looked up.
	if !slices.Contains(slices.Collect(maps.Values(controlPlane)), true) {
		cp := "layout-control-plane"
		for i := 2; ; i++ {
			if _, taken := controlPlane[cp]; !taken {
				break
			}
			cp = fmt.Sprintf("layout-control-plane-%d", i)
		}
		controlPlane[cp] = true
	}
	var y strings.Builder
	fmt.Fprintf(&y, "version: 1\nname: tree\npki:\n  dir: .\n  layout: %s\n  admins: [%s]\n", layout, layoutAdmin)
	if ca := obs[K8sCA]; layout == nest.LayoutK8Nix && len(ca.Organization) > 0 {
		fmt.Fprintf(&y, "  organization: %s\n", strconv.Quote(ca.Organization[0]))
	}
	y.WriteString("hosts:\n")
	for _, host := range slices.Sorted(maps.Keys(controlPlane)) {
		role := "worker"
		if controlPlane[host] {
			role = "control-plane"
		}
		fmt.Fprintf(&y, "  %s: {roles: [%s]}\n", strconv.Quote(host), role)
	}
	f, err := nest.Parse("the tree's layout", []byte(y.String()))
	if err != nil {
		return nil
	}
	return Set(f, nil, nil)
}

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
	for _, sub := range []string{caDirName, derivedDirName} {
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
