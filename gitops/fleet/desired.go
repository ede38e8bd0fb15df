// Package fleet runs nestbot's pipeline over one checkout of an infra
// repository: load the desired state, observe the live fleet, plan, and
// apply plane by plane — cloud, tailnet, certificates (committed), hosts.
// The CLI verbs, the GitHub App server and the Action all go through it.
//
//	d, err := fleet.Load("nest.yaml")
//	s, err := fleet.Observe(ctx, d, fleet.Options{Getenv: os.Getenv})
//	defer s.Close()
//	plan, err := s.Plan("")
//	rep, err := s.Apply(ctx, plan, fleet.ApplyOptions{})
package fleet // import "github.com/ducksnest/nestbot/gitops/fleet"

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/reconcile"
)

// Desired is nest.yaml plus what the repository holds beside it.
type Desired struct {
	File     string // nest.yaml's path, as given
	Fleet    *nest.Fleet
	HostKeys map[string]string
	Root     string // the directory holding nest.yaml: paths in it are relative to here
	Source   []byte // nest.yaml as read
}

// Load reads nest.yaml and the host keys pinned beside it. A nest.yaml
// with mistakes fails with nest.Errors, every mistake at file:line:col.
func Load(file string) (*Desired, error) {
	f, err := nest.Load(file)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	d := &Desired{File: file, Fleet: f, Root: filepath.Dir(file), Source: src}
	if f.PKI != nil {
		// The hosts' keys, and those pinned for a directory of the tree no
		// host names (hosts/<dir>.pub), which its adopted keys are encrypted to.
		names := d.HostNames()
		if entries, err := os.ReadDir(filepath.Join(d.PKIDir(), "derived")); err == nil {
			for _, e := range entries {
				if e.IsDir() && !slices.Contains(names, e.Name()) && !strings.HasPrefix(e.Name(), ".") {
					names = append(names, e.Name())
				}
			}
		}
		d.HostKeys, err = pki.ReadHostKeys(d.PKIDir(), names)
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Digest fingerprints the desired state: nest.yaml and the pinned host keys.
func (d *Desired) Digest() string {
	parts := [][]byte{d.Source}
	hosts := make([]string, 0, len(d.HostKeys))
	for h := range d.HostKeys {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		parts = append(parts, []byte(h+" "+d.HostKeys[h]))
	}
	return reconcile.DigestBytes(parts...)
}

// PKIDir is where the certificate tree lives on disk.
func (d *Desired) PKIDir() string {
	return filepath.Join(d.Root, filepath.FromSlash(d.Fleet.PKI.Dir))
}

// HostNames are the fleet's hosts, sorted.
func (d *Desired) HostNames() []string {
	names := make([]string, 0, len(d.Fleet.Hosts))
	for n := range d.Fleet.Hosts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (d *Desired) reconcileDesired() reconcile.Desired {
	return reconcile.Desired{Fleet: d.Fleet, HostKeys: d.HostKeys}
}
