package host

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"tailscale.com/ssh/tailssh"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
)

// sessionWaitDelay bounds how long a session waits, after its command
// exits, for output still held open by processes it left behind.
const sessionWaitDelay = 2 * time.Second

// hostPrefixes are the absolute paths a session's command line names on
// the host's own filesystem (see the package doc).
var hostPrefixes = []string{"/nix", "/run", "/etc", "/var", "/root"}

// session is one SSH session's command.
type session struct {
	mu  sync.Mutex
	pid int // process group; 0 until started
}

// hangup sends SIGHUP to the session's process group, as sshd does when
// the connection drops, and SIGKILL a moment later.
func (s *session) hangup() {
	s.mu.Lock()
	pid := s.pid
	s.mu.Unlock()
	if pid <= 0 {
		return
	}
	syscall.Kill(-pid, syscall.SIGHUP)
	time.AfterFunc(time.Second, func() { syscall.Kill(-pid, syscall.SIGKILL) })
}

// syncSSH makes port 22 of the host's node refuse or serve SSH as
// Faults.SSHDown says. While tailscaled is down there is nothing to do:
// its next start reads the faults.
func (h *Host) syncSSH() error {
	h.sshMu.Lock()
	defer h.sshMu.Unlock()
	h.mu.Lock()
	node, refusing, down := h.node, h.refusing, h.faults.SSHDown
	h.mu.Unlock()
	if node == nil || down == (refusing != nil) {
		return nil
	}
	if !down {
		h.mu.Lock()
		if h.node == node {
			h.refusing = nil
		}
		h.mu.Unlock()
		closeAll(refusing)
		h.logf("host %s: ssh server up", h.cfg.Name)
		return nil
	}
	refusing, err := h.refuseSSH(node)
	if err != nil {
		return err
	}
	h.mu.Lock()
	if h.node != node {
		// tailscaled went down meanwhile: its next start refuses.
		h.mu.Unlock()
		closeAll(refusing)
		return nil
	}
	h.refusing = refusing
	h.wg.Add(len(refusing))
	h.mu.Unlock()
	for _, r := range refusing {
		go h.refuseLoop(r)
	}
	h.logf("host %s: ssh server down", h.cfg.Name)
	return nil
}

// refuseSSH listens on port 22 of each of node's addresses. tsnet hands a
// connection to the listener bound to its destination address before one
// bound to none (the SSH server's), so these get every new connection
// while they are open, and the SSH server none.
func (h *Host) refuseSSH(node *tsnet.Server) ([]net.Listener, error) {
	var lns []net.Listener
	ip4, ip6 := node.TailscaleIPs()
	for _, ip := range []netip.Addr{ip4, ip6} {
		if !ip.IsValid() {
			continue
		}
		ln, err := node.Listen("tcp", netip.AddrPortFrom(ip, 22).String())
		if err != nil {
			closeAll(lns)
			return nil, fmt.Errorf("take ssh down: %w", err)
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return nil, errors.New("take ssh down: the node has no address")
	}
	return lns, nil
}

// refuseLoop closes each connection ln accepts before a byte is sent: the
// client's SSH handshake fails and it never sees a host key.
func (h *Host) refuseLoop(ln net.Listener) {
	defer h.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

func (h *Host) acceptLoop(ln net.Listener) {
	defer h.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s, ok := c.(*tailssh.Session)
		if !ok {
			c.Close()
			continue
		}
		h.wg.Add(1)
		go h.serve(s)
	}
}

// serve runs one session's command line with /bin/sh -c, wiring stdin,
// stdout, stderr and the exit status to the SSH channel.
func (h *Host) serve(ts *tailssh.Session) {
	defer h.wg.Done()
	peer := ts.Peer()
	if !h.allowed(peer) {
		fmt.Fprintf(ts.Stderr(), "tailnet policy does not permit %s to SSH to %s\n", peerName(peer), h.cfg.Name)
		ts.Exit(1)
		return
	}
	if ts.Subsystem() != "" {
		fmt.Fprintf(ts.Stderr(), "subsystem %q is not supported\n", ts.Subsystem())
		ts.Exit(1)
		return
	}
	line := ts.RawCommand()
	h.logf("host %s: session from %s (user %s): %s", h.cfg.Name, peerName(peer), ts.User(), line)
	cmd := h.command(line, ts.User())
	cmd.Stdout = ts
	cmd.Stderr = ts.Stderr()
	cmd.WaitDelay = sessionWaitDelay
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fmt.Fprintf(ts.Stderr(), "%v\n", err)
		ts.Exit(255)
		return
	}

	s := &session{}
	h.mu.Lock()
	h.sessions[s] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.sessions, s)
		h.mu.Unlock()
	}()

	s.mu.Lock()
	err = cmd.Start()
	if err == nil {
		s.pid = cmd.Process.Pid
	}
	s.mu.Unlock()
	if err != nil {
		fmt.Fprintf(ts.Stderr(), "%v\n", err)
		ts.Exit(127)
		return
	}
	go func() {
		io.Copy(stdin, ts)
		stdin.Close()
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-ts.Context().Done():
			s.hangup()
		case <-done:
		}
	}()
	err = cmd.Wait()
	close(done)
	ts.Exit(exitStatus(cmd, err))
}

// command is how the host runs a session's command line: /bin/sh -c, in
// HOME, with the session environment, in its own process group.
func (h *Host) command(line, user string) *exec.Cmd {
	args := []string{"/bin/sh"}
	if line != "" {
		args = append(args, "-c", rewritePaths(line, h.root))
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = h.path("root")
	cmd.Env = h.sessionEnv(user)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func exitStatus(cmd *exec.Cmd, err error) int {
	ps := cmd.ProcessState
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if code := ps.ExitCode(); code >= 0 {
		return code
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return 255
	}
	return 0
}

func (h *Host) sessionEnv(user string) []string {
	if user == "" {
		user = "root"
	}
	return []string{
		"PATH=" + h.path("lab/bin") + ":" + realPath(),
		"HOME=" + h.path("root"),
		"USER=" + user,
		"LOGNAME=" + user,
		"SHELL=/bin/sh",
		"TMPDIR=" + h.path("tmp"),
		"LANG=C.UTF-8",
		"NEST_LAB_ROOT=" + h.root,
		"NEST_LAB_HOST=" + h.cfg.Name,
	}
}

// allowed reports whether peer may open sessions (Config.SSHFrom).
func (h *Host) allowed(peer tailcfg.NodeView) bool {
	if len(h.cfg.SSHFrom) == 0 {
		return true
	}
	if !peer.Valid() {
		return false
	}
	tags := peer.Tags().AsSlice()
	name := peerName(peer)
	for _, from := range h.cfg.SSHFrom {
		if strings.HasPrefix(from, "tag:") && slices.Contains(tags, from) || from == name {
			return true
		}
	}
	return false
}

func peerName(peer tailcfg.NodeView) string {
	if !peer.Valid() {
		return "unknown peer"
	}
	if hi := peer.Hostinfo(); hi.Valid() && hi.Hostname() != "" {
		return hi.Hostname()
	}
	name, _, _ := strings.Cut(peer.Name(), ".")
	return name
}

// rewritePaths makes the absolute paths under hostPrefixes in a command
// line name the host's own: "/nix/var" becomes root+"/nix/var". A path
// counts when its "/" starts a word (start of line, after a space, quote,
// "=", ":", "(", ";", "|", "&", "<", ">" …), not when it continues a path,
// a variable ("${X}/etc") or a command substitution ("$(pwd)/etc").
func rewritePaths(line, root string) string {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		if line[i] == '/' && (i == 0 || !isPathByte(line[i-1])) {
			for _, p := range hostPrefixes {
				end := i + len(p)
				if strings.HasPrefix(line[i:], p) && (end == len(line) || line[end] == '/' || !isPathByte(line[end])) {
					b.WriteString(root)
					break
				}
			}
		}
		b.WriteByte(line[i])
	}
	return b.String()
}

func isPathByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("._-~/+@%,$})", c) >= 0
}
