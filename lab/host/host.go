// Package host runs the lab's hosts: small real Linux systems, each booted
// by systemd-nspawn with real systemd as its PID 1, in network, mount, PID,
// UTS and IPC namespaces of its own, made of real programs wherever one
// runs here:
//
//   - systemd (Debian bookworm's): units, transient units and timers
//     (systemd-run), systemctl, the journal;
//   - OpenSSH's sshd and sudo, configured by the host's NixOS configuration
//     as the DucksNest hosts are (AllowUsers, PermitRootLogin no, keys only,
//     wheel with a sudo password, a deploy user with NOPASSWD rules);
//   - tailscaled, built from the tailscale.com module nestbot pins, in
//     userspace-networking mode, joined to the lab's tailnet with
//     `tailscale up`, with Tailscale SSH (--ssh) when the host's login path
//     is LoginTailscale: the tailnet policy's ssh rule decides who gets in;
//   - nix (Debian's nix-bin 2.8): one store shared by every host, each host's
//     own profiles and generations, real flake evaluation and builds.
//
// Only what needs nixpkgs is a stand-in, written from the nixpkgs sources:
// the lab's nixpkgs flake (lab/nixpkgs) evaluates a host's modules into a
// real toplevel derivation with its own switch-to-configuration, activate,
// init and boot loader, and nixos-rebuild.
//
//	h, err := host.Boot(ctx, lab, host.Config{Name: "web", Revision: "aaaa", Root: dir})
//	defer h.Close()
//
// A client reaches the host only over the tailnet, like a real one: dial
// "<tailnet name>:22" from a tsnet node and speak SSH: Tailscale SSH (as
// root, if the policy lets the client's tags in) or OpenSSH (as the deploy
// user, with its key). The host offers its rsa, ecdsa and ed25519 keys
// (/etc/ssh, the same files for sshd and tailscaled); HostKey is the
// ed25519 one, to pin.
//
// # Layout
//
// The root image (Debian, built once by mmdebstrap into CacheDir) is shared
// read-only; each host has an overlay of its own in Root/upper, which keeps
// /etc, /nix/var/nix/profiles, /var/lib and /boot across a stop and start;
// /run is a tmpfs, gone at each start. The first boot installs the system
// from the flake in /etc/nixos (as nixos-install: nix build, nix-env --set,
// switch-to-configuration boot); every boot then starts the boot loader's
// default generation's init, which activates it and hands over to systemd.
//
// The lab needs root (systemd-nspawn, namespaces), systemd-container,
// mmdebstrap and nix-bin on the machine, and the go command (to build
// tailscaled once).
package host

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/types/logger"

	"github.com/ducksnest/nestbot/lab/tailnet"
)

// DefaultNixOSVersion is what nixos-version reports on the lab's hosts:
// the stand-in nixpkgs' version at its locked revision.
const DefaultNixOSVersion = "25.05.20250708.88983d4"

// DefaultDeployUser is the deploy user's name when Config.DeployUser is empty.
const DefaultDeployUser = "nestbot"

// BootTimeout bounds a host's boot when ctx has no deadline.
const BootTimeout = 3 * time.Minute

// Login is how a host lets nestbot in.
type Login string

const (
	// LoginTailscale: Tailscale SSH (tailscale up --ssh); the tailnet
	// policy's ssh rule lets nestbot's tag in as root.
	LoginTailscale Login = "tailscale"
	// LoginOpenSSH: the host's sshd, as the deploy user with its key and
	// sudo rules; tailscaled hands port 22 to sshd.
	LoginOpenSSH Login = "openssh"
)

// Config describes a lab host.
type Config struct {
	// Name is the host's name in the lab (nest.yaml's). Attribute,
	// HostName and TailnetName default to it. Lower-case letters, digits
	// and dashes.
	Name string
	// Attribute is the host's nixosConfigurations.<Attribute> in its flake.
	Attribute string
	// HostName is its networking.hostName.
	HostName string
	// TailnetName is its name on the tailnet (tailscale up --hostname).
	TailnetName string

	// AuthKey is the key tailscaled joins with. Empty means the lab's.
	// Not used once the host has joined (its state is kept).
	AuthKey string
	// Tags are the tags the node advertises.
	Tags []string
	// Login is how nestbot gets in: LoginTailscale (the default) or
	// LoginOpenSSH.
	Login Login

	// Revision is the configurationRevision of the first generation ("":
	// none). Not used when Flake is set, or once the host is installed.
	Revision string
	// Flake, if set, is a directory holding the flake the first generation
	// is built from (copied to /etc/nixos); Attribute names the host in it.
	// Empty means a flake the lab writes (FlakeFiles) for this host.
	Flake string
	// Admins are the host's admins (wheel, with a sudo password), the
	// deploy user nestbot's, with DeployKeys authorized.
	Admins     []string
	DeployUser string
	DeployKeys []ssh.PublicKey

	// Root is the host's directory on the machine, created if missing. A
	// Root that holds a host already is booted again: same keys, node,
	// generations.
	Root string
	// HostKey is the host's ed25519 SSH host key. Nil means the one in
	// Root, or a new one. Its rsa and ecdsa keys are made once.
	HostKey ed25519.PrivateKey

	// Logf, if set, receives the host's log (boot, tailscale up, stops).
	// tailscaled logs to the host's journal (Run journalctl -u tailscaled).
	Logf logger.Logf
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
var validRevision = regexp.MustCompile(`^[A-Za-z0-9._+-]*$`)

// Host is a lab host.
type Host struct {
	cfg     Config
	lab     *tailnet.Lab
	dir     string
	image   string
	tsd     string
	store   string
	inputs  []Input
	hostKey ssh.PublicKey
	logf    logger.Logf

	mu      sync.Mutex
	cmd     *exec.Cmd
	ns      *netns
	leader  int           // the container's PID 1, as seen here; 0 when stopped
	exited  chan struct{} // closed when the running container's nspawn exits
	faults  Faults
	closed  bool
	console *syncWriter
}

// Boot prepares the host's directory, boots it and joins it to lab's
// tailnet. ctx bounds it.
func Boot(ctx context.Context, lab *tailnet.Lab, cfg Config) (*Host, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, BootTimeout)
		defer cancel()
	}
	if !validName.MatchString(cfg.Name) {
		return nil, fmt.Errorf("host: boot: bad name %q (lower-case letters, digits and dashes)", cfg.Name)
	}
	cfg.Attribute = orDefault(cfg.Attribute, cfg.Name)
	cfg.HostName = orDefault(cfg.HostName, cfg.Name)
	cfg.TailnetName = orDefault(cfg.TailnetName, cfg.Name)
	for _, n := range []string{cfg.HostName, cfg.TailnetName} {
		if !validName.MatchString(n) {
			return nil, fmt.Errorf("host: boot %s: bad name %q", cfg.Name, n)
		}
	}
	if !validRevision.MatchString(cfg.Revision) {
		return nil, fmt.Errorf("host: boot %s: bad revision %q", cfg.Name, cfg.Revision)
	}
	if cfg.Root == "" {
		return nil, fmt.Errorf("host: boot %s: no root directory", cfg.Name)
	}
	cfg.Login = Login(orDefault(string(cfg.Login), string(LoginTailscale)))
	if cfg.Login != LoginTailscale && cfg.Login != LoginOpenSSH {
		return nil, fmt.Errorf("host: boot %s: login %q is neither %q nor %q", cfg.Name, cfg.Login, LoginTailscale, LoginOpenSSH)
	}
	cfg.DeployUser = orDefault(cfg.DeployUser, DefaultDeployUser)
	if cfg.Admins == nil {
		cfg.Admins = []string{"duck"}
	}
	if cfg.AuthKey == "" {
		cfg.AuthKey = lab.AuthKey()
	}
	dir, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("host: boot %s: %w", cfg.Name, err)
	}
	h := &Host{cfg: cfg, lab: lab, dir: dir, logf: cfg.Logf}
	if h.logf == nil {
		h.logf = logger.Discard
	}
	if err := NeedRoot(); err != nil {
		return nil, fmt.Errorf("host: boot %s: %w", cfg.Name, err)
	}
	if h.image, err = Image(ctx, h.logf); err != nil {
		return nil, err
	}
	if h.tsd, err = Tailscaled(ctx, h.logf); err != nil {
		return nil, err
	}
	if h.store, h.inputs, err = StoreDir(ctx); err != nil {
		return nil, err
	}
	if err := h.prepare(); err != nil {
		return nil, fmt.Errorf("host: boot %s: %w", cfg.Name, err)
	}
	if err := h.Start(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Name is the host's name in the lab.
func (h *Host) Name() string { return h.cfg.Name }

// Config is the host's configuration, defaults filled in.
func (h *Host) Config() Config { return h.cfg }

// HostKey is the host's ed25519 SSH host key, to pin.
func (h *Host) HostKey() ssh.PublicKey { return h.hostKey }

// Dir is the host's directory on the machine.
func (h *Host) Dir() string { return h.dir }

// Root is the running host's filesystem as seen from the machine
// (/proc/<its PID 1>/root): /run, /nix/var, /root and the rest as the host
// sees them. "" while it is stopped.
func (h *Host) Root() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leader == 0 {
		return ""
	}
	return fmt.Sprintf("/proc/%d/root", h.leader)
}

// Up reports whether the host is running.
func (h *Host) Up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leader != 0
}

// Start boots the host (again, after Stop): its boot loader's default
// generation, activated, then systemd; then it rejoins the tailnet. ctx
// bounds it.
func (h *Host) Start(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return fmt.Errorf("host %s: closed", h.cfg.Name)
	}
	if h.leader != 0 {
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	start := time.Now()
	if err := h.startContainer(ctx); err != nil {
		return fmt.Errorf("host %s: start: %w", h.cfg.Name, err)
	}
	if err := h.waitSystem(ctx); err != nil {
		h.Stop()
		return fmt.Errorf("host %s: boot: %w%s", h.cfg.Name, err, h.consoleTail())
	}
	if err := h.writeFaults(); err != nil {
		h.Stop()
		return fmt.Errorf("host %s: %w", h.cfg.Name, err)
	}
	if err := h.tailscaleUp(ctx); err != nil {
		h.Stop()
		return fmt.Errorf("host %s: %w", h.cfg.Name, err)
	}
	h.logf("host %s: up in %v", h.cfg.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// tailscaleUp joins (or rejoins) the tailnet, as the host's owner does:
// tailscale up with the lab's control URL, the auth key, the host's
// tailnet name and tags, and --ssh for LoginTailscale. It waits until the
// node is running.
func (h *Host) tailscaleUp(ctx context.Context) error {
	args := []string{"tailscale", "up", "--login-server=" + h.lab.ControlURL(), "--auth-key=" + h.cfg.AuthKey,
		"--hostname=" + h.cfg.TailnetName, "--accept-dns=false", "--timeout=60s"}
	if len(h.cfg.Tags) > 0 {
		args = append(args, "--advertise-tags="+strings.Join(h.cfg.Tags, ","))
	}
	if h.cfg.Login == LoginTailscale && !h.Faults().SSHDown {
		args = append(args, "--ssh")
	}
	for {
		out, err := h.Run(ctx, args...)
		if err == nil {
			return nil
		}
		// tailscaled may not answer on its socket yet.
		if !strings.Contains(out, "tailscaled.sock") && !strings.Contains(out, "failed to connect") || ctx.Err() != nil {
			return fmt.Errorf("tailscale up: %v: %s", err, strings.ReplaceAll(out, h.cfg.AuthKey, "<auth key>"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tailscale up: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the host for good.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.Stop()
	return nil
}

// TailscaleIP is the host's tailnet IPv4 address, "" if it has none now.
func (h *Host) TailscaleIP() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "tailscale", "ip", "-4")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// NodeID is the id of the host's tailnet node, "" if it has none now.
func (h *Host) NodeID() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "tailscale", "status", "--json", "--peers=false")
	if err != nil {
		return ""
	}
	var st struct{ Self struct{ ID string } }
	if json.Unmarshal([]byte(out), &st) != nil {
		return ""
	}
	return st.Self.ID
}

// newEd25519 makes a host key.
func newEd25519() (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	return k, err
}

// NeedRoot says, when this process is not root, that the lab's hosts need
// it and what to do: each host is a systemd-nspawn container with mount,
// PID, UTS and network namespaces of its own, over an overlay mount of the
// shared root image, none of which an unprivileged user may make.
func NeedRoot() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("the lab needs root, and this runs as uid %d: its hosts are systemd-nspawn containers "+
			"with namespaces and overlay mounts of their own; run it as root (e.g. sudo nestlab demo, or in CI's root container)", uid)
	}
	return nil
}
