// Package host simulates a NixOS host for the lab: a tsnet node with the
// host's name that accepts Tailscale SSH on port 22 of the lab tailnet and
// runs each session's command line in a real shell (/bin/sh -c), with stub
// programs first on PATH that work on a per-host root directory.
//
//	h, err := host.Boot(ctx, lab, host.Config{Name: "web", Revision: "aaaa", Root: dir})
//	defer h.Close()
//
// A client reaches the host only over the tailnet, like a real one: dial
// "web:22" from a tsnet node, speak SSH (golang.org/x/crypto/ssh, no client
// credentials: Tailscale SSH authenticates the tailnet peer), and check the
// host key against HostKey, the only key the host offers (ssh-ed25519).
//
// # The root
//
// Root holds the host's filesystem as NixOS lays it out:
//
//	etc/hostname, etc/os-release
//	etc/ssh/ssh_host_ed25519_key{,.pub}       the host key (Tailscale SSH serves it)
//	nix/store/<hash>-nixos-system-<name>-<v>/ one closure per configuration: nixos-version,
//	                                          configuration-revision, bin/switch-to-configuration,
//	                                          lab-certs/ (see Serving TLS)
//	nix/var/nix/profiles/system-N-link        generation N
//	nix/var/nix/profiles/system               -> system-N-link
//	run/current-system, run/booted-system     -> a closure
//	run/systemd/transient/<unit>              state of units started by systemd-run
//	var/log/journal/<unit>.log                their output (journalctl -u)
//	var/log/nest-lab/events.log               timestamped events (Events, Switches)
//	var/lib/tailscale/                        the tsnet node's state
//	root/                                     HOME of SSH sessions (their working directory)
//	lab/bin/, lab/lib.sh, run/lab/            the stubs and their settings
//
// A session's command line is rewritten so that absolute paths under /nix,
// /run, /etc, /var and /root name the host's own (Root/nix/…): the lab's
// stand-in for the host having its own filesystem. The stubs map such
// arguments the same way and print paths as the host sees them
// (/nix/store/…). Everything else (/bin, /usr, /tmp, /dev) is the real
// machine's; TMPDIR is Root/tmp.
//
// # The stubs
//
//	nixos-version [--json|--revision|--configuration-revision]
//	nixos-rebuild switch|boot|test|build --flake DIR[#NAME]    (and switch|boot --rollback)
//	nix-env --profile /nix/var/nix/profiles/system --list-generations|--rollback|--switch-generation N|--set PATH
//	systemctl is-system-running|is-active|is-failed|show|status|stop|reset-failed|list-units|start|restart
//	systemd-run [--unit NAME] [--on-active=SPAN] [--timer-property=…] [-p RemainAfterExit=yes] [--collect] [--wait] [--] CMD…
//	journalctl -u UNIT, readlink, realpath, hostname
//	<closure>/bin/switch-to-configuration switch|test|boot|dry-activate
//
// nixos-rebuild's configuration revision (nixos-version's
// configurationRevision) is the content of the nearest .nest-revision file
// at or above the flake directory; without one the generation has no
// revision. DIR must hold a flake.nix. A switch builds a closure, adds a
// generation (unless the newest one is that closure already, as nix-env
// --set does), and runs the closure's switch-to-configuration, which points
// run/current-system at it.
//
// systemd-run starts the command in its own session with its output in the
// journal, so it outlives the SSH session that started it, and keeps the
// unit's state as systemd would: while it runs, `systemctl is-active` says
// active; when it ends with status 0 the unit is gone (inactive, Result
// success) unless RemainAfterExit=yes kept it (active, SubState exited);
// when it fails it stays failed (ExecMainStatus the exit status) until
// reset-failed, and the system reads as degraded meanwhile. With
// --on-active=SPAN a NAME.timer runs NAME.service after SPAN unless
// `systemctl stop NAME.timer` comes first.
//
// # Serving TLS
//
// While its node is up, the host serves TLS on the serving ports as
// kubeadm's components would: 6443 the apiserver certificate, 2379
// etcd-server, 10250 kubelet-serving (pki.ServedLeaf), each from its
// current generation. A generation's certificates come from the source it
// was built from, copied into its closure like nix copies a flake's source
// to the store: a switch from FLAKE copies FLAKE/<PKIDir>/derived/<name>/
// (*.crt, *.key.age) into the closure's lab-certs/, and the copy is part of
// the closure's hash, so a tree with renewed certificates builds a new
// generation even at the same revision. The first (boot) generation has
// none.
//
// Each connection to a serving port is judged when it arrives: if the
// current generation holds that port's certificate, the host completes one
// TLS handshake with it (the key decrypted with the host's SSH host key)
// and closes the connection; otherwise the connection is refused (RST),
// as by a port nobody listens on — a worker has no apiserver. A
// generation's certificates are read once, so a switch or a rollback is
// served from the next connection on. A certificate that cannot be read or
// decrypted is logged and its port refuses.
//
// # Faults
//
// SetFaults changes, at any time, what the next `nixos-rebuild switch
// --flake` does (rollbacks and re-activations of an existing generation are
// not affected, except that a generation built while SwitchFails or
// HealthFails held stays broken), and whether the SSH server is up
// (SSHDown, at once): see Faults.
//
// The stubs need a POSIX shell, GNU coreutils (date +%N, mv -T), flock and
// setsid (util-linux), awk and sed: Linux.
package host // import "github.com/ducksnest/nestbot/lab/host"

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"
	"tailscale.com/types/logger"

	"github.com/ducksnest/nestbot/lab/tailnet"

	// Tailscale SSH, for tsnet.Server.ListenSSH.
	_ "tailscale.com/feature/ssh"
)

// DefaultNixOSVersion is what nixos-version reports when
// Config.NixOSVersion is empty.
const DefaultNixOSVersion = "25.05.20250708.88983d4"

// DefaultPKIDir is Config.PKIDir when empty.
const DefaultPKIDir = "pki"

// RejoinTimeout bounds the host's rejoining the tailnet after activation
// restarted its tailscaled.
const RejoinTimeout = 60 * time.Second

// baseUnits are the system units every lab host reports active.
func baseUnits() []string {
	return []string{"multi-user.target", "sshd.service", "tailscaled.service", "nix-daemon.service"}
}

// Config describes a lab host.
type Config struct {
	// Name is the host's name: its tailnet hostname and the flake's
	// nixosConfigurations.<Name>. Lower-case letters, digits and dashes.
	Name string

	// AuthKey is the key the node joins the tailnet with. Empty means the
	// lab's. It is not used when Root already holds a registered node.
	AuthKey string

	// Revision is the configuration revision of the first generation. It
	// is not used when Root already holds a system profile.
	Revision string

	// Root is the host's root directory, created if missing. A Root that
	// holds a host already is booted again: same node, key and generations.
	Root string

	// Tags are the tags the node advertises (granted by the lab's control).
	Tags []string

	// HostKey is the host's SSH host key. Nil means the key already in
	// Root, or a new one.
	HostKey ed25519.PrivateKey

	// SSHFrom, if set, limits who may open SSH sessions: each entry is a
	// tag ("tag:nestbot") or a hostname of a tailnet peer. Empty means any
	// peer on the tailnet.
	SSHFrom []string

	// NixOSVersion is what nixos-version reports. Empty means
	// DefaultNixOSVersion.
	NixOSVersion string

	// Units are reported active by systemctl, besides multi-user.target,
	// sshd, tailscaled and nix-daemon.
	Units []string

	// PKIDir is where the certificate tree (nest.yaml's pki.dir) lies,
	// relative to the flake directory a switch builds from, as the NixOS
	// configuration would reference it: "secrets/certs" for a flake in
	// infra/nix and pki.dir infra/nix/secrets/certs; "../pki" is fine.
	// Empty means "pki". See "Serving TLS".
	PKIDir string

	// Logf, if set, receives the host's log: sessions, tailscaled going
	// down and up.
	Logf logger.Logf

	// NodeLogf, if set, receives the tsnet node's (verbose) backend logs.
	NodeLogf logger.Logf
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
var validRevision = regexp.MustCompile(`^[A-Za-z0-9._+-]*$`)

// Host is a running lab host.
type Host struct {
	cfg     Config
	lab     *tailnet.Lab
	root    string
	hostKey ssh.PublicKey
	logf    logger.Logf

	startMu sync.Mutex // serializes startTailscaled
	sshMu   sync.Mutex // serializes changes to refusing

	mu   sync.Mutex
	node *tsnet.Server // nil while tailscaled is down
	ln   net.Listener
	// refusing, while SSHDown holds and the node is up, listen on port 22
	// of the node's addresses ahead of ln (tsnet prefers a listener bound
	// to the address) and close each connection.
	refusing []net.Listener
	changed  chan struct{} // closed and replaced when node comes or goes
	sessions map[*session]struct{}
	faults   Faults
	tls      *tlsServer
	upErr    error  // why the last start of tailscaled failed
	stopping int    // stops still closing a node; down only when 0
	udpPort  uint16 // the node's WireGuard port, kept across restarts
	closed   bool

	stop chan struct{} // closed by Close
	wg   sync.WaitGroup
}

// Boot prepares cfg.Root (stubs, host key, first generation), joins the
// host to lab's tailnet and starts accepting SSH. ctx bounds the join.
func Boot(ctx context.Context, lab *tailnet.Lab, cfg Config) (*Host, error) {
	if !validName.MatchString(cfg.Name) {
		return nil, fmt.Errorf("host: boot: bad name %q (lower-case letters, digits and dashes)", cfg.Name)
	}
	if !validRevision.MatchString(cfg.Revision) {
		return nil, fmt.Errorf("host: boot %s: bad revision %q", cfg.Name, cfg.Revision)
	}
	if cfg.Root == "" {
		return nil, fmt.Errorf("host: boot %s: no root directory", cfg.Name)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("host: boot %s: %w", cfg.Name, err)
	}
	if strings.ContainsAny(root, "'\\\n\"$`") {
		return nil, fmt.Errorf("host: boot %s: root %q has characters the stubs cannot quote", cfg.Name, root)
	}
	if cfg.AuthKey == "" {
		cfg.AuthKey = lab.AuthKey()
	}
	if cfg.NixOSVersion == "" {
		cfg.NixOSVersion = DefaultNixOSVersion
	}
	if cfg.PKIDir == "" {
		cfg.PKIDir = DefaultPKIDir
	}
	if filepath.IsAbs(cfg.PKIDir) || strings.ContainsAny(cfg.PKIDir, "\n\x00") {
		return nil, fmt.Errorf("host: boot %s: bad pki directory %q (give a path relative to the flake directory)", cfg.Name, cfg.PKIDir)
	}
	h := &Host{
		cfg:      cfg,
		lab:      lab,
		root:     root,
		logf:     cfg.Logf,
		changed:  make(chan struct{}),
		sessions: make(map[*session]struct{}),
		stop:     make(chan struct{}),
	}
	if h.logf == nil {
		h.logf = logger.Discard
	}
	h.tls = &tlsServer{h: h}
	if err := checkSystemHostKey(); err != nil {
		return nil, fmt.Errorf("host: boot %s: %w", cfg.Name, err)
	}
	if h.hostKey, err = h.prepareRoot(ctx); err != nil {
		return nil, fmt.Errorf("host: boot %s: %w", cfg.Name, err)
	}
	if err := h.startTailscaled(ctx); err != nil {
		return nil, fmt.Errorf("host: boot %s: %w", cfg.Name, err)
	}
	h.wg.Add(1)
	go h.watchRequests()
	return h, nil
}

// Name is the host's name.
func (h *Host) Name() string { return h.cfg.Name }

// Root is the host's root directory.
func (h *Host) Root() string { return h.root }

// HostKey is the host's SSH host key (ssh-ed25519), to pin.
func (h *Host) HostKey() ssh.PublicKey { return h.hostKey }

// Node is the host's tsnet node, or nil while its tailscaled is down.
func (h *Host) Node() *tsnet.Server {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.node
}

// Up reports whether the host's tailscaled is up (its node on the tailnet).
func (h *Host) Up() bool { return h.Node() != nil }

// TailscaleIP is the host's tailnet IPv4 address, or the zero Addr while
// it is down.
func (h *Host) TailscaleIP() netip.Addr {
	if n := h.Node(); n != nil {
		ip4, _ := n.TailscaleIPs()
		return ip4
	}
	return netip.Addr{}
}

// WaitUp waits until the host's tailscaled is up, or ctx is done.
func (h *Host) WaitUp(ctx context.Context) error { return h.waitState(ctx, true) }

// WaitDown waits until the host's tailscaled is down, or ctx is done.
func (h *Host) WaitDown(ctx context.Context) error { return h.waitState(ctx, false) }

func (h *Host) waitState(ctx context.Context, up bool) error {
	for {
		h.mu.Lock()
		isUp, isDown := h.node != nil, h.node == nil && h.stopping == 0
		ch, closed, upErr := h.changed, h.closed, h.upErr
		h.mu.Unlock()
		if up && isUp || !up && isDown {
			return nil
		}
		if closed {
			return fmt.Errorf("host %s: closed", h.cfg.Name)
		}
		select {
		case <-ctx.Done():
			if upErr != nil {
				return fmt.Errorf("host %s: waiting for tailscaled: %w (last start: %v)", h.cfg.Name, ctx.Err(), upErr)
			}
			return fmt.Errorf("host %s: waiting for tailscaled: %w", h.cfg.Name, ctx.Err())
		case <-ch:
		}
	}
}

// Close stops the host: its node leaves the tailnet, its sessions and its
// units' processes are killed. Root stays, and can be booted again.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.stop)
	h.mu.Unlock()
	h.stopTailscaled()
	h.wg.Wait()
	h.killUnits()
	h.mu.Lock()
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	return nil
}

// checkSystemHostKey refuses to boot where Tailscale SSH would present the
// machine's own host key instead of the host's: as root, tailssh prefers
// /etc/ssh/ssh_host_ed25519_key.
func checkSystemHostKey() error {
	if os.Geteuid() != 0 {
		return nil
	}
	b, err := os.ReadFile("/etc/ssh/ssh_host_ed25519_key")
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	return errors.New("running as root on a machine with /etc/ssh/ssh_host_ed25519_key: Tailscale SSH would serve that key instead of the host's; run as another user")
}
