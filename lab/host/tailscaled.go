package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ducksnest/nestbot/lab/tailnet"
)

// requestFile is where activation asks for tailscaled to "stop" or
// "restart SECONDS"; the host removes it once tailscaled is down. Relative
// to the root.
const requestFile = "run/lab/tailscaled.request"

// requestPoll is how often the host looks for a request where it cannot
// watch for one (see watchDir).
const requestPoll = 25 * time.Millisecond

// StopTailscaled takes the host off the tailnet, as stopping tailscaled
// would: its node closes and its open SSH sessions die. The host's
// processes (units, switches) carry on.
func (h *Host) StopTailscaled() {
	h.stopTailscaled()
}

// StartTailscaled brings the host back onto the tailnet with the same
// identity, and waits (bounded by ctx) until it is up.
func (h *Host) StartTailscaled(ctx context.Context) error {
	if err := h.startTailscaled(ctx); err != nil {
		return fmt.Errorf("host %s: %w", h.cfg.Name, err)
	}
	return nil
}

// startTailscaled joins the node (state in the root's var/lib/tailscale)
// and starts serving Tailscale SSH on port 22 and TLS on the serving ports.
func (h *Host) startTailscaled(ctx context.Context) error {
	// One start at a time: two nodes on one state directory would fight.
	h.startMu.Lock()
	defer h.startMu.Unlock()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errors.New("closed")
	}
	if h.node != nil {
		h.mu.Unlock()
		return nil
	}
	port := h.udpPort
	h.mu.Unlock()

	start := time.Now()
	node, err := h.lab.Join(ctx, tailnet.NodeConfig{
		Hostname: h.cfg.Name,
		Dir:      h.path(tsnetDir),
		AuthKey:  h.cfg.AuthKey,
		Tags:     h.cfg.Tags,
		Port:     port,
		Logf:     h.cfg.NodeLogf,
	})
	if err != nil {
		h.setUpErr(err)
		return err
	}
	// While SSHDown holds, port 22 refuses from the start. SetFaults waits
	// until the node is in place, then applies a change of SSHDown to it.
	h.sshMu.Lock()
	defer h.sshMu.Unlock()
	var refusing []net.Listener
	if h.Faults().SSHDown {
		if refusing, err = h.refuseSSH(node); err != nil {
			node.Close()
			h.setUpErr(err)
			return err
		}
	}
	ln, err := node.ListenSSH(":22")
	if err != nil {
		closeAll(refusing)
		node.Close()
		err = fmt.Errorf("listen ssh: %w", err)
		h.setUpErr(err)
		return err
	}

	// The serving ports (6443, 2379, 10250): no listeners, a handler of
	// last resort that accepts or refuses each connection by what the
	// current generation serves.
	node.RegisterFallbackTCPHandler(h.tls.flow)

	h.mu.Lock()
	if h.closed || h.node != nil {
		h.mu.Unlock()
		closeAll(refusing)
		ln.Close()
		node.Close()
		if h.closed {
			return errors.New("closed")
		}
		return nil
	}
	h.node, h.ln, h.refusing, h.upErr = node, ln, refusing, nil
	// Like tailscaled's, the node's UDP port stays the same across
	// restarts, so peers' direct paths to it stay good.
	h.udpPort = node.Sys().MagicSock.Get().LocalPort()
	h.broadcastLocked()
	h.wg.Add(1 + len(refusing))
	h.mu.Unlock()
	go h.acceptLoop(ln)
	for _, r := range refusing {
		go h.refuseLoop(r)
	}
	h.logf("host %s: tailscaled up in %v", h.cfg.Name, time.Since(start).Round(time.Millisecond))
	return nil
}

// stopTailscaled closes the node; sessions die with their connections,
// and their processes are hung up.
func (h *Host) stopTailscaled() {
	h.mu.Lock()
	node, ln, refusing := h.node, h.ln, h.refusing
	h.node, h.ln, h.refusing = nil, nil, nil
	var sessions []*session
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	if node != nil {
		// Down (for WaitDown) only once the node is closed: until then
		// peers may still reach it.
		h.stopping++
	}
	h.mu.Unlock()
	if node == nil {
		return
	}
	// The data plane goes first, as when tailscaled is killed: nothing
	// more reaches peers. Otherwise closing the node's listeners lets the
	// SSH server end each open session cleanly (exit status 0) before the
	// connection goes away.
	node.Sys().MagicSock.Get().Close()
	closeAll(refusing)
	ln.Close()
	node.Close()
	for _, s := range sessions {
		s.hangup()
	}
	h.mu.Lock()
	h.stopping--
	h.broadcastLocked()
	h.mu.Unlock()
	h.logf("host %s: tailscaled down", h.cfg.Name)
}

func (h *Host) setUpErr(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.upErr = err
	h.broadcastLocked()
}

// broadcastLocked wakes waitState callers.
func (h *Host) broadcastLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// watchRequests carries out activation's requests to stop or restart
// tailscaled.
func (h *Host) watchRequests() {
	defer h.wg.Done()
	wake := h.requestWakeups()
	for {
		select {
		case <-h.stop:
			return
		case <-wake:
		}
		b, err := os.ReadFile(h.path(requestFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			h.logf("host %s: request: %v", h.cfg.Name, err)
			continue
		}
		verb, arg, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		h.stopTailscaled()
		os.Remove(h.path(requestFile))
		if verb != "restart" {
			h.logf("host %s: tailscaled stopped for good", h.cfg.Name)
			continue
		}
		secs, err := strconv.ParseFloat(arg, 64)
		if err != nil {
			h.logf("host %s: bad restart request %q", h.cfg.Name, b)
			continue
		}
		select {
		case <-h.stop:
			return
		case <-time.After(time.Duration(secs * float64(time.Second))):
		}
		ctx, cancel := context.WithTimeout(context.Background(), RejoinTimeout)
		go func() {
			select {
			case <-h.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := h.startTailscaled(ctx); err != nil {
			h.logf("host %s: restarting tailscaled: %v", h.cfg.Name, err)
		}
		cancel()
	}
}

// requestWakeups returns a channel that receives when a request may have
// come: at once, then whenever run/lab changes (or every requestPoll where
// it cannot be watched), until the host stops.
func (h *Host) requestWakeups() <-chan struct{} {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	wait, stop, err := watchDir(h.path(path.Dir(requestFile)))
	if err != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			tick := time.NewTicker(requestPoll)
			defer tick.Stop()
			for {
				select {
				case <-h.stop:
					return
				case <-tick.C:
					notify()
				}
			}
		}()
		return wake
	}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		<-h.stop
		stop()
	}()
	go func() {
		defer h.wg.Done()
		for wait() == nil {
			notify()
		}
	}()
	return wake
}

// killUnits kills the process groups of the host's running units (each
// unit's LabProcessGroup, see the systemd-run stub).
func (h *Host) killUnits() {
	dir := h.path("run/systemd/transient")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "LabProcessGroup="); ok {
				pid, err := strconv.Atoi(v)
				if err != nil || pid <= 1 {
					continue
				}
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	}
}
