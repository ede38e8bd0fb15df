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
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/reconcile"
)

// Desired is nest.yaml plus what the repository holds beside it.
type Desired struct {
	File  string // nest.yaml's path, as given
	Fleet *nest.Fleet
	// HostKeys are the hosts' age recipients (<pki.dir>/hosts/<host>.pub),
	// which the certificates' keys are encrypted to.
	HostKeys map[string]string
	// Pins are the hosts' pinned SSH host keys (hosts.<name>.host_key,
	// by default the same file as the age recipient).
	Pins   map[string]string
	Root   string // the directory holding nest.yaml: paths in it are relative to here
	Source []byte // nest.yaml as read
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
		d.HostKeys, err = pki.ReadHostKeys(d.PKIDir(), d.HostNames())
		if err != nil {
			return nil, err
		}
	}
	if d.Pins, err = d.readPins(); err != nil {
		return nil, err
	}
	return d, nil
}

// readPins reads each host's pinned SSH host key from hosts.<name>.host_key,
// or, without one, takes its age recipient from pki.dir (the same file). A
// host without a file is not pinned yet; a file that does not hold an SSH
// public key is an error naming it.
func (d *Desired) readPins() (map[string]string, error) {
	pins := map[string]string{}
	var errs []error
	for _, name := range d.HostNames() {
		h := d.Fleet.Hosts[name]
		if h.HostKey == "" {
			if k, ok := d.HostKeys[name]; ok {
				pins[name] = k
			}
			continue
		}
		p := d.HostKeyFile(h)
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pinned host key of %s: %w", name, err))
			continue
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			errs = append(errs, fmt.Errorf("pinned host key of %s: %s holds no SSH public key (authorized_keys format, e.g. the host's /etc/ssh/ssh_host_ed25519_key.pub): %w", name, p, err))
			continue
		}
		pins[name] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	}
	return pins, errors.Join(errs...)
}

// HostKeyFile is where the host's pinned SSH host key lives on disk, or ""
// when the fleet keeps none.
func (d *Desired) HostKeyFile(h *nest.Host) string {
	p := d.Fleet.HostKeyPath(h)
	if p == "" {
		return ""
	}
	return filepath.Join(d.Root, filepath.FromSlash(p))
}

// Digest fingerprints the desired state: nest.yaml, the hosts' age
// recipients and their pinned host keys.
func (d *Desired) Digest() string {
	parts := [][]byte{d.Source}
	for _, h := range slices.Sorted(maps.Keys(d.HostKeys)) {
		parts = append(parts, []byte(h+" "+d.HostKeys[h]))
	}
	for _, h := range slices.Sorted(maps.Keys(d.Pins)) {
		if d.Pins[h] != d.HostKeys[h] {
			parts = append(parts, []byte("pin "+h+" "+d.Pins[h]))
		}
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
