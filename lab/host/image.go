package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
)

// The hosts' root image: Debian bookworm as mmdebstrap makes it from
// Debian's packages, shared read-only by every host (each has an overlay of
// its own). Built once into the cache and kept.
var imagePackages = []string{
	"systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "nix-bin", "git",
	"iproute2", "procps", "age", "openssl", "ca-certificates", "passwd", "util-linux",
}

// imageVersion changes when what the build does to the image changes.
const imageVersion = "1"

// CacheDir is where the lab keeps what it builds once: the root image,
// tailscaled, the hosts' nix store. $NESTLAB_CACHE, else /var/cache/nestlab
// (the lab runs as root).
func CacheDir() (string, error) {
	if d := os.Getenv("NESTLAB_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	return "/var/cache/nestlab", nil
}

// withLock runs f holding an exclusive lock on name (a file in dir), so
// that test processes running side by side build a thing once.
func withLock(dir, name string, f func() error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	return f()
}

// Image returns the root image's directory, building it first if the
// cache has none (mmdebstrap, from Debian's mirror: a minute or two).
func Image(ctx context.Context, logf func(string, ...any)) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(imageVersion + " " + strings.Join(imagePackages, ",")))
	dir := filepath.Join(cache, "root-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir, nil
	}
	err = withLock(cache, "root", func() error {
		if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
			return nil
		}
		if _, err := exec.LookPath("mmdebstrap"); err != nil {
			return errors.New("mmdebstrap is not installed (apt-get install mmdebstrap systemd-container)")
		}
		tmp := dir + ".tmp"
		os.RemoveAll(tmp)
		logf("host: building the hosts' root image with mmdebstrap (once)")
		// The image's own host keys would be every host's: each host gets
		// its own. Debian's ssh.service is not NixOS's sshd.service.
		cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include="+strings.Join(imagePackages, ","),
			"--customize-hook=rm -f \"$1\"/etc/ssh/ssh_host_*",
			"--customize-hook=rm -f \"$1\"/etc/systemd/system/multi-user.target.wants/ssh.service \"$1\"/etc/systemd/system/sshd.service",
			"--customize-hook=ln -sf /dev/null \"$1\"/etc/systemd/system/ssh.service",
			"--customize-hook=ln -sf /dev/null \"$1\"/etc/systemd/system/ssh.socket",
			"--customize-hook=: >\"$1\"/etc/machine-id",
			"bookworm", tmp, "http://deb.debian.org/debian")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("mmdebstrap: %v: %s", err, tail(out))
		}
		return os.Rename(tmp, dir)
	})
	if err != nil {
		return "", fmt.Errorf("host: root image: %w", err)
	}
	return dir, nil
}

// Tailscaled returns a tailscaled binary built from the tailscale.com
// module this program was built with (v1.102.x), with its CLI linked in
// (ts_include_cli: as "tailscale" it is the CLI), building it first if the
// cache has none. The build is a module of its own, so the CLI's
// dependencies stay out of nestbot's.
func Tailscaled(ctx context.Context, logf func(string, ...any)) (string, error) {
	version, err := tailscaleVersion()
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "tailscaled-"+version)
	bin := filepath.Join(dir, "tailscaled")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	err = withLock(cache, "tailscaled", func() error {
		if _, err := os.Stat(bin); err == nil {
			return nil
		}
		logf("host: building tailscaled %s (once)", version)
		mod := filepath.Join(dir, "src")
		if err := os.MkdirAll(mod, 0o755); err != nil {
			return err
		}
		gomod := "module nestlab/tailscaled\n\ngo 1.26\n\nrequire tailscale.com " + version + "\n"
		if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
			return err
		}
		env := append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		for _, args := range [][]string{
			{"get", "tailscale.com/cmd/tailscaled@" + version},
			{"build", "-trimpath", "-tags", "ts_include_cli", "-o", bin + ".tmp", "tailscale.com/cmd/tailscaled"},
		} {
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir, cmd.Env = mod, env
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go %s: %v: %s", args[0], err, tail(out))
			}
		}
		return os.Rename(bin+".tmp", bin)
	})
	if err != nil {
		return "", fmt.Errorf("host: tailscaled: %w", err)
	}
	return bin, nil
}

// tailscaleVersion is the tailscale.com module version this binary links.
func tailscaleVersion() (string, error) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "tailscale.com" {
				if m.Replace != nil {
					m = m.Replace
				}
				return m.Version, nil
			}
		}
	}
	// Tests built without module information: ask the go command.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "tailscale.com").Output()
	if v := strings.TrimSpace(string(out)); err == nil && strings.HasPrefix(v, "v") {
		return v, nil
	}
	return "", errors.New("host: cannot tell which tailscale.com version to build tailscaled from")
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}
