package host

import (
	"net"

	"tailscale.com/feature"
	"tailscale.com/ipn/ipnlocal"
	"tailscale.com/types/logger"
)

// tailscale v1.102.5's Tailscale SSH server (ssh/tailssh listen.go) asks a
// session for its RemoteAddr and dereferences it; netstack's conn answers
// nil once the peer has gone, so a client that hangs up early (a cancelled
// rollout) panics the whole process. The lab's hosts hand it connections
// that keep the addresses they were accepted with, and drop one whose peer
// is already gone.
func init() {
	orig, ok := ipnlocal.HookListenSSH.GetOk()
	if !ok {
		return
	}
	ipnlocal.HookListenSSH = feature.Hook[func(net.Listener, *ipnlocal.LocalBackend, logger.Logf) (net.Listener, error)]{} // Set only sets an unset hook
	ipnlocal.HookListenSSH.Set(func(ln net.Listener, lb *ipnlocal.LocalBackend, logf logger.Logf) (net.Listener, error) {
		return orig(addrListener{ln}, lb, logf)
	})
}

type addrListener struct{ net.Listener }

func (l addrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		remote, local := c.RemoteAddr(), c.LocalAddr()
		if remote == nil || local == nil {
			c.Close() // the peer hung up before it was accepted
			continue
		}
		return addrConn{Conn: c, remote: remote, local: local}, nil
	}
}

type addrConn struct {
	net.Conn
	remote, local net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
func (c addrConn) LocalAddr() net.Addr  { return c.local }
