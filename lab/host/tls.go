package host

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/ducksnest/nestbot/pki"
)

// certsDir is where a closure holds the host's certificates, copied from
// the flake's source when it was built.
const certsDir = "lab-certs"

// handshakeTimeout bounds one TLS connection to the host: it completes a
// handshake and is closed.
const handshakeTimeout = 10 * time.Second

// tlsServer serves the current generation's certificates on the host's
// serving ports (pki.ServedPorts) while its node is up.
type tlsServer struct {
	h *Host

	mu       sync.Mutex
	identity *pki.Identity // the host key, parsed on first use
	system   string        // the closure certs were read from
	certs    map[int]*tls.Certificate
}

// flow is the node's fallback TCP handler: a connection to a serving port
// whose certificate the current generation holds gets a TLS server; any
// other is refused (RST), as by a port nobody listens on.
func (s *tlsServer) flow(_, dst netip.AddrPort) (func(net.Conn), bool) {
	port := int(dst.Port())
	if pki.ServedLeaf(port) == "" {
		return nil, false
	}
	// Called with the node's lock held: only look whether the file is
	// there; the handler reads and decrypts it.
	sys, err := s.currentSystem()
	if err != nil {
		return nil, false
	}
	certPath, _, _ := pki.ServedCertFiles(s.h.cfg.Name, port)
	if _, err := os.Stat(filepath.Join(sys, certsDir, path.Base(certPath))); err != nil {
		return nil, false
	}
	return func(c net.Conn) { s.serve(c, port) }, true
}

// serve completes one handshake with the certificate the current
// generation serves on port, then closes the connection.
func (s *tlsServer) serve(c net.Conn, port int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	tc := tls.Server(c, &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert(port) },
	})
	// A handshake cut off because tailscaled went down is not worth a line.
	if err := tc.Handshake(); err != nil && s.h.Up() {
		s.h.logf("host %s: tls on port %d: %v", s.h.cfg.Name, port, err)
	}
	tc.Close()
}

// currentSystem is run/current-system, as a path on the real filesystem.
func (s *tlsServer) currentSystem() (string, error) {
	sys, err := os.Readlink(s.h.path("run/current-system"))
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(sys) {
		sys = filepath.Join(s.h.path("run"), sys)
	}
	return sys, nil
}

// cert is the certificate the current generation serves on port. The
// generation's certificates are read (their keys decrypted with the host
// key) once per closure, so a switch or a rollback takes effect at the
// next handshake.
func (s *tlsServer) cert(port int) (*tls.Certificate, error) {
	sys, err := s.currentSystem()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sys != s.system {
		s.certs = s.load(sys)
		s.system = sys
	}
	if c := s.certs[port]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("generation %s serves no certificate on port %d", filepath.Base(sys), port)
}

// load reads the certificates that closure sys serves; one it cannot read
// is left out (and logged), so its port serves nothing.
func (s *tlsServer) load(sys string) map[int]*tls.Certificate {
	out := map[int]*tls.Certificate{}
	for _, port := range pki.ServedPorts() {
		certPath, keyPath, _ := pki.ServedCertFiles(s.h.cfg.Name, port)
		c, err := s.loadPair(filepath.Join(sys, certsDir, path.Base(certPath)), filepath.Join(sys, certsDir, path.Base(keyPath)))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			s.h.logf("host %s: tls on port %d: %v", s.h.cfg.Name, port, err)
		default:
			out[port] = c
		}
	}
	return out
}

func (s *tlsServer) loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	enc, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	if s.identity == nil {
		b, err := os.ReadFile(s.h.path(hostKeyFile))
		if err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		if s.identity, err = pki.ParseIdentity(b); err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
	}
	keyPEM, err := pki.Decrypt(enc, s.identity)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(keyFile), err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(certFile), err)
	}
	return &c, nil
}
