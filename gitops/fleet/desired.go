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
package fleet

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki/certtree"
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
	Pins map[string]string
	// Nodes are the tailnet node ids pinned for the hosts
	// (<pki.dir>/hosts/<host>.node): only that node is the host.
	Nodes  map[string]string
	Root   string // the directory holding nest.yaml: paths in it are relative to here
	Source []byte // nest.yaml as read
}

// Load reads nest.yaml and the host keys pinned beside it. A nest.yaml
// with mistakes fails with nest.Errors, every mistake at file:line:col.
//
// Everything is read through an os.Root at nest.yaml's directory, and no
// symbolic link is followed: nest.yaml being one, or pki.dir or a directory
// on the way to it, is an error naming it (a pull request may hold links,
// and through one a read could reach the bot's own files). What is under
// pki.dir, pki.Dir reads and writes the same way.
func Load(file string) (*Desired, error) {
	root, err := os.OpenRoot(filepath.Dir(file))
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return nil, fmt.Errorf("nest: %w", &fs.PathError{Op: "open", Path: file, Err: pe.Err})
	}
	if err != nil {
		return nil, fmt.Errorf("nest: %w", err)
	}
	defer root.Close()
	name := filepath.Base(file)
	if err := noLink(root, file, name); err != nil {
		return nil, err
	}
	src, err := readBounded(root, name, nest.MaxFileSize)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return nil, fmt.Errorf("nest: %w", &fs.PathError{Op: "open", Path: file, Err: pe.Err}) // as os.Open says it
	}
	if err != nil {
		return nil, fmt.Errorf("nest: read %s: %w", file, err)
	}
	if len(src) > nest.MaxFileSize {
		return nil, nest.Errors{{File: file, Msg: fmt.Sprintf("file is larger than %d bytes", nest.MaxFileSize)}}
	}
	f, err := nest.Parse(file, src)
	if err != nil {
		return nil, err
	}
	d := &Desired{File: file, Fleet: f, Root: filepath.Dir(file), Source: src}
	if f.PKI != nil {
		pkiRel := filepath.FromSlash(f.PKI.Dir)
		if err := noLink(root, filepath.Join(d.Root, pkiRel), pkiRel); err != nil {
			return nil, fmt.Errorf("pki.dir: %w", err)
		}
		// The hosts' keys, and those pinned for a directory of the tree no
		// host names (hosts/<dir>.pub), which its adopted keys are encrypted to.
		names := d.HostNames()
		if dir, err := root.Open(filepath.Join(pkiRel, "derived")); err == nil {
			entries, _ := dir.ReadDir(-1)
			dir.Close()
			for _, e := range entries {
				if e.IsDir() && !slices.Contains(names, e.Name()) && !strings.HasPrefix(e.Name(), ".") {
					names = append(names, e.Name())
				}
			}
		}
		d.HostKeys, err = certtree.ReadHostKeys(d.PKIDir(), names)
		if err != nil {
			return nil, err
		}
		if d.Nodes, err = certtree.ReadNodeIDs(d.PKIDir(), d.HostNames()); err != nil {
			return nil, err
		}
	}
	if d.Pins, err = d.readPins(root); err != nil {
		return nil, err
	}
	return d, nil
}

// maxKeyFile bounds a pinned host key's file: one public key line.
const maxKeyFile = 16 << 10

// readPins reads each host's pinned SSH host key from hosts.<name>.host_key,
// or, without one, takes its age recipient from pki.dir (the same file). A
// host without a file is not pinned yet; a file that does not hold an SSH
// public key is an error naming it.
func (d *Desired) readPins(root *os.Root) (map[string]string, error) {
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
		rel := filepath.FromSlash(h.HostKey)
		if err := noLink(root, p, rel); err != nil {
			errs = append(errs, fmt.Errorf("pinned host key of %s: %w", name, err))
			continue
		}
		data, err := readBounded(root, rel, maxKeyFile)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pinned host key of %s: %w", name, err))
			continue
		}
		if len(data) > maxKeyFile {
			errs = append(errs, fmt.Errorf("pinned host key of %s: %s is larger than %d bytes; it should hold one SSH public key", name, p, maxKeyFile))
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

// noLink refuses rel, below root, when it or a directory on the way to it
// is a symbolic link; shown is how errors name rel. What does not exist is
// no link.
func noLink(root *os.Root, shown, rel string) error {
	p := ""
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		p = filepath.Join(p, part)
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s: %s is a symbolic link; nestbot follows no link in the repository (it could lead out of it): replace it with the file or directory itself", shown, p)
		}
	}
	return nil
}

// readBounded reads name below root, at most limit+1 bytes.
func readBounded(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// HostsByNode maps each host's tailnet node name (hosts.<name>.tailnet_name)
// to the host.
func (d *Desired) HostsByNode() map[string]string {
	m := make(map[string]string, len(d.Fleet.Hosts))
	for name, h := range d.Fleet.Hosts {
		m[h.TailnetNode()] = name
	}
	return m
}

// Digest fingerprints the desired state: nest.yaml, the hosts' age
// recipients, their pinned host keys and their pinned nodes.
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
	for _, h := range slices.Sorted(maps.Keys(d.Nodes)) {
		parts = append(parts, []byte("node "+h+" "+d.Nodes[h]))
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
