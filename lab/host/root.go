package host

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"embed"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

//go:embed stubs
var stubs embed.FS

// hostKeyFile is the host key, relative to the root.
const hostKeyFile = "etc/ssh/ssh_host_ed25519_key"

// tsnetDir is the tsnet node's state directory, relative to the root.
const tsnetDir = "var/lib/tailscale"

var rootDirs = []string{
	"etc/ssh", "nix/store", "nix/var/nix/profiles", "run/lab", "run/systemd/transient",
	"var/log/journal", "var/log/nest-lab", tsnetDir + "/ssh", "root", "tmp", "lab/bin",
}

// prepareRoot lays out the root, writes the stubs and the host key, and
// boots the first generation if there is none. It returns the host key.
func (h *Host) prepareRoot(ctx context.Context) (ssh.PublicKey, error) {
	for _, d := range rootDirs {
		if err := os.MkdirAll(h.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	// run/ is a tmpfs: a reboot forgets units and requests.
	if err := clearDir(h.path("run/systemd/transient")); err != nil {
		return nil, err
	}
	os.Remove(h.path(requestFile))

	pub, err := h.writeHostKey()
	if err != nil {
		return nil, err
	}
	if err := h.writeStubs(); err != nil {
		return nil, err
	}
	units := append(baseUnits(), h.cfg.Units...)
	files := map[string]string{
		"etc/hostname":           h.cfg.Name + "\n",
		"etc/os-release":         osRelease(h.cfg.NixOSVersion),
		"run/lab/nixos-version":  h.cfg.NixOSVersion + "\n",
		"run/lab/nixos-codename": codename(h.cfg.NixOSVersion) + "\n",
		// A made-up nixpkgs revision that ends in the version's short one.
		"run/lab/nixpkgs-revision": strings.Repeat("0", 33) + shortRev(h.cfg.NixOSVersion) + "\n",
		"run/lab/units":            strings.Join(units, "\n") + "\n",
		"run/lab/path":             realPath() + "\n",
		"run/lab/pki-dir":          h.cfg.PKIDir + "\n",
		faultsFile:                 Faults{}.shell(),
	}
	for name, content := range files {
		if err := writeFileAtomic(h.path(name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := os.Lstat(h.path("nix/var/nix/profiles/system")); errors.Is(err, fs.ErrNotExist) {
		out, err := exec.CommandContext(ctx, h.path("lab/bin/lab-boot"), h.cfg.Revision).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("first generation: %v: %s", err, out)
		}
	} else if err != nil {
		return nil, err
	}
	return pub, nil
}

func (h *Host) path(rel string) string { return filepath.Join(h.root, filepath.FromSlash(rel)) }

// writeHostKey writes (or keeps) the ed25519 host key and points Tailscale
// SSH's key file (in the tsnet state directory) at it.
func (h *Host) writeHostKey() (ssh.PublicKey, error) {
	keyPath := h.path(hostKeyFile)
	priv := h.cfg.HostKey
	if priv == nil {
		if b, err := os.ReadFile(keyPath); err == nil {
			k, err := ssh.ParseRawPrivateKey(b)
			if err != nil {
				return nil, fmt.Errorf("host key %s: %w", keyPath, err)
			}
			p, ok := k.(*ed25519.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("host key %s: not ed25519", keyPath)
			}
			priv = *p
		} else {
			if _, priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
				return nil, err
			}
		}
	}
	comment := "root@" + h.cfg.Name
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	line := bytes.TrimSpace(ssh.MarshalAuthorizedKey(pub))
	if err := writeFileAtomic(keyPath+".pub", append(line, " "+comment+"\n"...), 0o644); err != nil {
		return nil, err
	}
	// Tailscale SSH (ssh/tailssh) reads ssh_host_{rsa,ecdsa,ed25519}_key
	// from <tsnet dir>/ssh, making any that are missing. All three are the
	// host key: the server keeps one key per algorithm, so it offers just
	// this one (and no 2048-bit RSA key is made for each lab host).
	target := "../../../../" + hostKeyFile
	for _, typ := range []string{"rsa", "ecdsa", "ed25519"} {
		link := h.path(tsnetDir + "/ssh/ssh_host_" + typ + "_key")
		if cur, err := os.Readlink(link); err != nil || cur != target {
			os.Remove(link)
			if err := os.Symlink(target, link); err != nil {
				return nil, err
			}
		}
	}
	return pub, nil
}

// writeStubs writes lab/lib.sh (with the root) and the programs in lab/bin.
func (h *Host) writeStubs() error {
	return fs.WalkDir(stubs, "stubs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := stubs.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		if name == "lib.sh" {
			b = append([]byte("R='"+h.root+"'\n"), b...)
			return writeFileAtomic(h.path("lab/lib.sh"), b, 0o644)
		}
		return writeFileAtomic(h.path("lab/bin/"+name), b, 0o755)
	})
}

// realPath is the PATH the real programs (readlink, realpath) are found
// on, without any lab stub directory.
func realPath() string {
	p := os.Getenv("PATH")
	if p == "" {
		p = "/usr/local/bin:/usr/bin:/bin"
	}
	return p
}

func osRelease(version string) string {
	return fmt.Sprintf(`ANSI_COLOR="1;34"
BUILD_ID=%q
ID=nixos
NAME=NixOS
PRETTY_NAME="NixOS %s (%s)"
VERSION="%s (%s)"
VERSION_CODENAME=%s
VERSION_ID=%q
`, version, majorMinor(version), codename(version), majorMinor(version), codename(version),
		strings.ToLower(codename(version)), majorMinor(version))
}

func majorMinor(version string) string {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return version
	}
	return parts[0] + "." + parts[1]
}

func shortRev(version string) string {
	parts := strings.Split(version, ".")
	if last := parts[len(parts)-1]; len(parts) >= 4 && len(last) >= 7 {
		return last[:7]
	}
	return "0000000"
}

// codename is NixOS's release name for a version.
func codename(version string) string {
	switch majorMinor(version) {
	case "24.05":
		return "Uakari"
	case "24.11":
		return "Vicuña"
	case "25.05":
		return "Warbler"
	case "25.11":
		return "Xantusia"
	}
	return "Unknown"
}

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

func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
