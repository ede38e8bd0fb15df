package host

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// A host's network: a network namespace the lab makes for it, with only
// lo, handed to systemd-nspawn. Inside, the lab listens on the 127.0.0.1
// ports of the tailnet's control and DERP servers and forwards each
// connection to the same port on the lab's own loopback: the host's
// tailscaled reaches control and DERP at the URLs the lab's own nodes use,
// and nothing else (no STUN: its traffic goes through DERP).

// netns is a network namespace and the forwarders listening in it.
type netns struct {
	file *os.File // keeps the namespace; nspawn joins it by /proc/self/fd path
	lns  []net.Listener
	wg   sync.WaitGroup
}

// newNetns makes a network namespace with lo up, listening on 127.0.0.1
// at each of ports, forwarding to 127.0.0.1 at the same port here.
func newNetns(ports []int) (*netns, error) {
	type made struct {
		f   *os.File
		lns []net.Listener
		err error
	}
	ch := make(chan made, 1)
	go func() {
		// This thread goes into the new namespace and never comes back:
		// its goroutine ends locked, and the runtime retires the thread.
		runtime.LockOSThread()
		var m made
		defer func() { ch <- m }()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			m.err = fmt.Errorf("unshare the network namespace: %w (the lab needs root)", err)
			return
		}
		if err := loUp(); err != nil {
			m.err = err
			return
		}
		f, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			m.err = err
			return
		}
		m.f = f
		for _, p := range ports {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				m.err = fmt.Errorf("listen in the host's namespace: %w", err)
				return
			}
			m.lns = append(m.lns, ln)
		}
	}()
	m := <-ch
	if m.err != nil {
		for _, ln := range m.lns {
			ln.Close()
		}
		if m.f != nil {
			m.f.Close()
		}
		return nil, m.err
	}
	n := &netns{file: m.f, lns: m.lns}
	for i, ln := range m.lns {
		n.wg.Add(1)
		go n.forward(ln, ports[i])
	}
	return n, nil
}

// path names the namespace for systemd-nspawn --network-namespace-path.
func (n *netns) path() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), n.file.Fd()) }

func (n *netns) forward(ln net.Listener, port int) {
	defer n.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
			go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

func (n *netns) close() {
	for _, ln := range n.lns {
		ln.Close()
	}
	n.wg.Wait()
	n.file.Close()
}

// LoopbackUp brings up lo in the calling thread's network namespace (for
// a process that starts in a namespace of its own, as nestlab demo does).
func LoopbackUp() error { return loUp() }

// loUp brings up lo in the calling thread's network namespace.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}
