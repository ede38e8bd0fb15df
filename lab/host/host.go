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
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// startContainer mounts the overlay in a mount namespace of its own and
// starts systemd-nspawn in it, in the host's network namespace.
func (h *Host) startContainer(ctx context.Context) error {
	ports, err := labPorts(h.lab)
	if err != nil {
		return err
	}
	ns, err := newNetns(ports)
	if err != nil {
		return err
	}
	merged := filepath.Join(h.dir, "merged")
	work := filepath.Join(h.dir, "work")
	for _, d := range []string{merged, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			ns.close()
			return err
		}
	}
	nspawn := []string{"systemd-nspawn", "--quiet", "--directory=" + merged, "--register=no", "--keep-unit",
		"--machine=" + h.cfg.HostName, "--network-namespace-path=" + ns.path(),
		"--kill-signal=SIGRTMIN+4", // systemd's halt: a clean stop
		"--bind=" + filepath.Join(h.store, "nix/store") + ":/nix/store",
		"--bind=" + filepath.Join(h.store, "nix/var/nix/db") + ":/nix/var/nix/db",
		"--bind-ro=" + h.tsd + ":/usr/local/bin/tailscaled",
		"--setenv=HOME=/root",
		"/usr/lib/nestlab/boot", h.cfg.Attribute}
	script := fmt.Sprintf("set -e; mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s; exec %s",
		shq(h.image), shq(filepath.Join(h.dir, "upper")), shq(work), shq(merged), shjoin(nspawn))
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script)
	console := &syncWriter{w: &bytes.Buffer{}} // one lock for both streams
	cmd.Stdout, cmd.Stderr = console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ns.close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
		h.mu.Lock()
		if h.exited == exited {
			h.leader = 0
		}
		h.mu.Unlock()
	}()
	leader, err := waitLeader(ctx, cmd.Process.Pid, exited)
	if err != nil {
		cmd.Process.Kill()
		<-exited
		ns.close()
		return fmt.Errorf("%w%s", err, tailOf(console))
	}
	h.mu.Lock()
	h.cmd, h.ns, h.leader, h.exited, h.console = cmd, ns, leader, exited, console
	h.mu.Unlock()
	return nil
}

// waitLeader finds the container's PID 1: nspawn's child.
func waitLeader(ctx context.Context, pid int, exited <-chan struct{}) (int, error) {
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				// nspawn's child is PID 1 in the new PID namespace once it
				// has a root of its own.
				if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n)); err == nil && strings.Contains(string(st), "NSpid:\t"+strconv.Itoa(n)+"\t1") {
					return n, nil
				}
			}
		}
		select {
		case <-exited:
			return 0, errors.New("systemd-nspawn exited")
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for the container: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitSystem waits until systemd in the host has booted (running or
// degraded).
func (h *Host) waitSystem(ctx context.Context) error {
	h.mu.Lock()
	exited := h.exited
	h.mu.Unlock()
	for {
		out, _ := h.Run(ctx, "systemctl", "is-system-running", "--wait")
		switch s := strings.TrimSpace(out); s {
		case "running", "degraded":
			return nil
		}
		select {
		case <-exited:
			return errors.New("the container stopped while booting")
		case <-ctx.Done():
			return fmt.Errorf("waiting for systemd: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
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

// Run runs a command in the host (nsenter into all its namespaces), as
// root, and returns its combined output.
func (h *Host) Run(ctx context.Context, args ...string) (string, error) {
	h.mu.Lock()
	leader := h.leader
	h.mu.Unlock()
	if leader == 0 {
		return "", fmt.Errorf("host %s is not running", h.cfg.Name)
	}
	nsargs := append([]string{"--target", strconv.Itoa(leader), "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd", "--",
		"/usr/bin/env", "-C", "/root", "-i", "PATH=/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", nsargs...).CombinedOutput()
	return string(out), err
}

// Stop stops the host as `poweroff` would (systemd stops its units), and
// kills what is left after 20 s. Its directory stays: Start boots it again.
func (h *Host) Stop() {
	h.mu.Lock()
	cmd, ns, exited := h.cmd, h.ns, h.exited
	h.cmd, h.ns = nil, nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	h.mu.Lock()
	h.leader = 0
	h.mu.Unlock()
	ns.close()
	h.logf("host %s: stopped", h.cfg.Name)
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

// labPorts are the ports of the tailnet's control and DERP servers on
// 127.0.0.1, which the host's namespace forwards.
func labPorts(lab *tailnet.Lab) ([]int, error) {
	var ports []int
	u, err := url.Parse(lab.ControlURL())
	if err != nil || u.Port() == "" {
		return nil, fmt.Errorf("the tailnet's control URL %q has no port", lab.ControlURL())
	}
	p, _ := strconv.Atoi(u.Port())
	ports = append(ports, p)
	for _, r := range lab.DERPMap().Regions {
		for _, n := range r.Nodes {
			ports = append(ports, n.DERPPort)
		}
	}
	return ports, nil
}

func (h *Host) consoleTail() string {
	h.mu.Lock()
	c := h.console
	h.mu.Unlock()
	return tailOf(c)
}

func tailOf(b *syncWriter) string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	s := b.w.String()
	b.mu.Unlock()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return "\n--- console:\n" + s
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w.Len() > 1<<20 {
		s.w.Reset()
	}
	return s.w.Write(p)
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shjoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shq(a)
	}
	return strings.Join(q, " ")
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
