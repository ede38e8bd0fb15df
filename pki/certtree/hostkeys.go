package certtree

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"golang.org/x/crypto/ssh"
)

// HostKeyPath is where a host's pinned SSH ed25519 public key lives, relative to pki.dir.
func HostKeyPath(host string) string { return filepath.Join("hosts", host+".pub") }

// ReadHostKeys reads the pinned host keys of hosts from dir/hosts/<host>.pub.
// A host without a file is simply not pinned yet; a file that does not hold
// an ssh-ed25519 key is an error naming the file.
//
// The files are read by GOMAXPROCS goroutines, each a run of the hosts in
// order (a fleet of 10,000 hosts has as many files); the errors come in
// the order of the hosts, as ReadHostKeysFS gives them.
func ReadHostKeys(dir string, hosts []string) (keys map[string]string, err error) {
	Dir(dir).withListed("hosts", func(fsys fs.FS) {
		hosts = slices.Sorted(slices.Values(hosts))
		n := min(runtime.GOMAXPROCS(0), len(hosts)/hostKeysPerReader+1)
		parts := make([]map[string]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				parts[i], errs[i] = ReadHostKeysFS(fsys, dir, hosts[i*len(hosts)/n:(i+1)*len(hosts)/n])
			})
		}
		wg.Wait()
		keys = parts[0]
		for _, p := range parts[1:] {
			maps.Copy(keys, p)
		}
		err = errors.Join(errs...)
	})
	return keys, err
}

// hostKeysPerReader is the fewest hosts worth a goroutine of ReadHostKeys.
const hostKeysPerReader = 500

// ReadHostKeysFS is ReadHostKeys for the tree in fsys (a Dir, a commit's
// tree); name is the tree as errors name it.
func ReadHostKeysFS(fsys fs.FS, name string, hosts []string) (map[string]string, error) {
	keys := map[string]string{}
	var errs []error
	hosts = slices.Sorted(slices.Values(hosts))
	for _, h := range hosts {
		p := filepath.Join(name, HostKeyPath(h))
		data, err := fs.ReadFile(fsys, path.Join("hosts", h+".pub"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pinned host key: %w", err))
			continue
		}
		key := pki.NormalizeRecipient(firstLine(string(data)))
		if err := nest.CheckRecipient(key); err != nil || !strings.HasPrefix(key, "ssh-ed25519 ") {
			errs = append(errs, fmt.Errorf("%s:1:1: not an ssh-ed25519 public key; write the host's /etc/ssh/ssh_host_ed25519_key.pub here, or delete the file to learn it again", p))
			continue
		}
		keys[h] = key
	}
	return keys, errors.Join(errs...)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// ErrHostKeyChanged is matched (errors.Is) by a *HostKeyChangedError.
var ErrHostKeyChanged = errors.New("host key changed")

// HostKeyChangedError is a host whose learned SSH host key differs from the
// one pinned in the repository. It stops the apply for that host: either
// the host was reinstalled (delete the pinned file to learn the key again)
// or something else answers in its name.
type HostKeyChangedError struct {
	Host    string
	Pinned  string // SHA256 fingerprint of the pinned key
	Learned string // SHA256 fingerprint of the key the host presented
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host %s: its SSH host key changed: pinned %s, the host presented %s; if the host was reinstalled, delete %s to learn the new key, otherwise find out who answers in its name",
		e.Host, e.Pinned, e.Learned, HostKeyPath(e.Host))
}

// Is makes errors.Is(err, ErrHostKeyChanged) hold.
func (e *HostKeyChangedError) Is(target error) bool { return target == ErrHostKeyChanged }

// CheckHostKey compares the key learned from host with the pinned one. Not
// pinned yet ("") is fine: the caller pins learned. A learned key that is not
// ssh-ed25519 is an error; one that differs from the pin is a
// *HostKeyChangedError.
func CheckHostKey(host, pinned, learned string) error {
	learned = pki.NormalizeRecipient(firstLine(learned))
	if err := nest.CheckRecipient(learned); err != nil || !strings.HasPrefix(learned, "ssh-ed25519 ") {
		return fmt.Errorf("host %s: the key it presented is not an ssh-ed25519 public key", host)
	}
	pinned = pki.NormalizeRecipient(pinned)
	if pinned == "" || pinned == learned {
		return nil
	}
	return &HostKeyChangedError{Host: host, Pinned: Fingerprint(pinned), Learned: Fingerprint(learned)}
}

// Fingerprint is an SSH public key's SHA256 fingerprint as ssh-keygen -l
// prints it, or "(unparsable key)".
func Fingerprint(key string) string {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return "(unparsable key)"
	}
	return ssh.FingerprintSHA256(pub)
}

// PinHostKey writes a learned host key to hosts/<host>.pub, unless a
// different one is pinned there already (a *HostKeyChangedError).
func PinHostKey(files Files, host, learned string) error {
	pinned := ""
	if data, err := fs.ReadFile(files, path.Join("hosts", host+".pub")); err == nil {
		pinned = firstLine(string(data))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pin host key of %s: %w", host, err)
	}
	if err := CheckHostKey(host, pinned, learned); err != nil {
		return err
	}
	if pinned != "" {
		return nil
	}
	return files.WriteFile(path.Join("hosts", host+".pub"), []byte(pki.NormalizeRecipient(firstLine(learned))+"\n"))
}

// NodePath is where the tailnet node id of a host is pinned, relative to
// pki.dir: the node that first joined as the host (nestbot records it when
// it pins the host key). Only that node is the host thereafter, whatever
// other nodes call themselves.
func NodePath(host string) string { return filepath.Join("hosts", host+".node") }

// ReadNodeIDsFS reads the pinned node ids of hosts from hosts/<host>.node
// in fsys; name is the tree as errors name it. A host without a file is not
// pinned yet.
func ReadNodeIDsFS(fsys fs.FS, name string, hosts []string) (map[string]string, error) {
	ids := map[string]string{}
	var errs []error
	for _, h := range slices.Sorted(slices.Values(hosts)) {
		data, err := fs.ReadFile(fsys, path.Join("hosts", h+".node"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pinned node: %w", err))
			continue
		}
		id := firstLine(string(data))
		if !validNodeID(id) {
			errs = append(errs, fmt.Errorf("%s:1:1: not a tailnet node id (like nAbC123CNTRL); delete the file for the next apply to pin the host's node again", filepath.Join(name, NodePath(h))))
			continue
		}
		ids[h] = id
	}
	return ids, errors.Join(errs...)
}

// ReadNodeIDs is ReadNodeIDsFS for the tree at dir.
func ReadNodeIDs(dir string, hosts []string) (ids map[string]string, err error) {
	Dir(dir).withListed("hosts", func(fsys fs.FS) { ids, err = ReadNodeIDsFS(fsys, dir, hosts) })
	return ids, err
}

func validNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// PinNode writes host's tailnet node id to hosts/<host>.node unless one is
// pinned there already (which is left as it is). It says whether it wrote.
func PinNode(files Files, host, id string) (bool, error) {
	if !validNodeID(id) {
		return false, fmt.Errorf("pin the node of %s: %q is not a tailnet node id", host, id)
	}
	if _, err := fs.Stat(files, path.Join("hosts", host+".node")); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("pin the node of %s: %w", host, err)
	}
	if err := files.WriteFile(path.Join("hosts", host+".node"), []byte(id+"\n")); err != nil {
		return false, err
	}
	return true, nil
}
