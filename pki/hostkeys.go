package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

// HostKeyPath is where a host's pinned SSH ed25519 public key lives, relative to pki.dir.
func HostKeyPath(host string) string { return filepath.Join("hosts", host+".pub") }

// ReadHostKeys reads the pinned host keys of hosts from dir/hosts/<host>.pub.
// A host without a file is simply not pinned yet; a file that does not hold
// an ssh-ed25519 key is an error naming the file.
func ReadHostKeys(dir string, hosts []string) (map[string]string, error) {
	keys := map[string]string{}
	var errs []error
	sort.Strings(hosts)
	for _, h := range hosts {
		p := filepath.Join(dir, HostKeyPath(h))
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pinned host key: %w", err))
			continue
		}
		key := NormalizeRecipient(firstLine(string(data)))
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
