package host

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// bootScript is the lab's firmware, boot loader and kernel in one: the
// first boot installs the system from /etc/nixos as nixos-install does
// (nix build, nix-env --set, switch-to-configuration boot); every boot then
// execs the boot loader's default entry's init (stage 2). Its argument is
// the host's flake attribute.
const bootScript = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
attr=$1
log=/var/log/nest-lab/install.log
mkdir -p /var/log/nest-lab /nix/var/nix/profiles /nix/var/nix/gcroots /nix/var/nix/temproots
if [ ! -f /boot/loader/loader.conf ]; then
	json=$(nix --extra-experimental-features 'nix-command flakes' build --json --no-link \
		"/etc/nixos#nixosConfigurations.\"$attr\".config.system.build.toplevel" 2>>"$log")
	out=$(printf '%s' "$json" | sed -n 's/.*"out":"\([^"]*\)".*/\1/p')
	if [ -z "$out" ]; then
		echo "nestlab: installing the system from /etc/nixos#$attr failed:"
		cat "$log"
		exit 1
	fi
	nix-env -p /nix/var/nix/profiles/system --set "$out" >>"$log" 2>&1
	NIXOS_INSTALL_BOOTLOADER=1 "$out/bin/switch-to-configuration" boot >>"$log" 2>&1 || { cat "$log"; exit 1; }
fi
read -r _ entry </boot/loader/loader.conf
init=$(sed -n 's/^init //p' "/boot/loader/entries/$entry")
exec "$init"
`

// nixConf is Debian's nix configured as NixOS's nix.settings would be on
// an offline host: flakes on, no sandbox (as Debian ships it), no build
// users (builds run as root), no substituters, no global registry.
const nixConf = `experimental-features = nix-command flakes
sandbox = false
build-users-group =
substituters =
flake-registry =
warn-dirty = false
`

// tailscaledDefaults is /etc/default/tailscaled (the unit's
// EnvironmentFile): tailscale's knobs that keep it on the lab's loopback
// (no log upload, no port mapping, no LAN addresses) and connected in a
// namespace whose only interface is lo.
const tailscaledDefaults = `TS_NO_LOGS_NO_SUPPORT=true
TS_DISABLE_PORTMAPPER=true
TS_DEBUG_OMIT_LOCAL_ADDRS=true
TS_ASSUME_NETWORK_UP_FOR_TEST=true
`

// prepare lays out the host's overlay (upper/) on first boot: host keys,
// the first generation's flake in /etc/nixos, nix.conf, the boot script.
// On later boots it keeps what is there (keys, flake, generations).
func (h *Host) prepare() error {
	upper := filepath.Join(h.dir, "upper")
	for _, d := range []string{"etc/ssh", "etc/nixos", "etc/nix", "etc/default", "usr/lib/nestlab", "usr/local/bin", "etc/systemd/system", "var/log/nest-lab", "nix/var/nix/profiles", "boot", "root"} {
		if err := os.MkdirAll(filepath.Join(upper, d), 0o755); err != nil {
			return err
		}
	}
	pub, err := h.writeHostKeys(upper)
	if err != nil {
		return err
	}
	h.hostKey = pub
	files := map[string]string{
		"usr/lib/nestlab/boot":   bootScript,
		"etc/nix/nix.conf":       nixConf,
		"etc/default/tailscaled": tailscaledDefaults,
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "usr/lib/nestlab/") {
			mode = 0o755
		}
		if err := writeFileAtomic(filepath.Join(upper, name), []byte(content), mode); err != nil {
			return err
		}
	}
	// tailscaled is bound in; as "tailscale" it is the CLI. nixos-version
	// and nixos-rebuild are the current generation's, as on NixOS's PATH.
	for link, target := range map[string]string{
		"usr/local/bin/tailscale":     "tailscaled",
		"usr/local/bin/nixos-version": "/run/current-system/sw/bin/nixos-version",
		"usr/local/bin/nixos-rebuild": "/run/current-system/sw/bin/nixos-rebuild",
		// A user manager cannot start in these containers (no delegated
		// cgroup): masked, so a login does not leave user@0 failed.
		"etc/systemd/system/user@.service": "/dev/null",
	} {
		p := filepath.Join(upper, link)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	// The first generation's flake, unless the host is installed already.
	if _, err := os.Stat(filepath.Join(upper, "boot/loader/loader.conf")); err == nil {
		return nil
	}
	nixos := filepath.Join(upper, "etc/nixos")
	if err := os.RemoveAll(nixos); err != nil {
		return err
	}
	if h.cfg.Flake != "" {
		return os.CopyFS(nixos, os.DirFS(h.cfg.Flake))
	}
	fh := FlakeHost{Attribute: h.cfg.Attribute, HostName: h.cfg.HostName, Admins: h.cfg.Admins, DeployUser: h.cfg.DeployUser}
	for _, k := range h.cfg.DeployKeys {
		fh.DeployKeys = append(fh.DeployKeys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
	}
	for name, content := range FlakeFiles(h.inputs, fh) {
		if err := writeFileAtomicMkdir(filepath.Join(nixos, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if h.cfg.Revision != "" {
		return writeFileAtomic(filepath.Join(nixos, ".nest-revision"), []byte(h.cfg.Revision+"\n"), 0o644)
	}
	return nil
}

// writeHostKeys writes /etc/ssh/ssh_host_{rsa,ecdsa,ed25519}_key, keeping
// those there; the ed25519 one is Config.HostKey when set.
func (h *Host) writeHostKeys(upper string) (ssh.PublicKey, error) {
	comment := "root@" + h.cfg.HostName
	var edPub ssh.PublicKey
	for _, typ := range []string{"rsa", "ecdsa", "ed25519"} {
		path := filepath.Join(upper, "etc/ssh/ssh_host_"+typ+"_key")
		var key any
		if b, err := os.ReadFile(path); err == nil && !(typ == "ed25519" && h.cfg.HostKey != nil) {
			k, err := ssh.ParseRawPrivateKey(b)
			if err != nil {
				return nil, fmt.Errorf("host key %s: %w", path, err)
			}
			key = k
		} else {
			var err error
			switch typ {
			case "rsa":
				key, err = rsa.GenerateKey(rand.Reader, 2048)
			case "ecdsa":
				key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			case "ed25519":
				if h.cfg.HostKey != nil {
					key = h.cfg.HostKey
				} else {
					key, err = newEd25519()
				}
			}
			if err != nil {
				return nil, err
			}
			block, err := ssh.MarshalPrivateKey(key, comment)
			if err != nil {
				return nil, err
			}
			if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
				return nil, err
			}
		}
		signer, err := ssh.NewSignerFromKey(key)
		if err != nil {
			return nil, err
		}
		line := bytes.TrimSpace(ssh.MarshalAuthorizedKey(signer.PublicKey()))
		if err := writeFileAtomic(path+".pub", append(line, " "+comment+"\n"...), 0o644); err != nil {
			return nil, err
		}
		if typ == "ed25519" {
			edPub = signer.PublicKey()
		}
	}
	return edPub, nil
}

var _ = ed25519.PublicKeySize

func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp.%d", name, os.Getpid())
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

func writeFileAtomicMkdir(name string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(name, data, perm)
}
