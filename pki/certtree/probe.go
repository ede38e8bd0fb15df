package certtree

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ducksnest/nestbot/pki"
)

// ProbeTimeout bounds the TLS handshake to one port: dial and handshake.
const ProbeTimeout = 5 * time.Second

// servedLeaves is which leaf each serving port presents, by kubeadm's
// convention. pki.serving_ports chooses which ports are probed; what a
// port serves is fixed here.
//
//	6443   apiserver        (kube-apiserver)
//	2379   etcd-server      (etcd's client port)
//	10250  kubelet-serving  (the kubelet's API)
func servedLeaves() map[int]string {
	return map[int]string{6443: "apiserver", 2379: "etcd-server", 10250: "kubelet-serving"}
}

// ServedLeaf is the name of the leaf served on port ("apiserver" on 6443,
// "etcd-server" on 2379, "kubelet-serving" on 10250), or "" for a port
// that serves none of the set.
func ServedLeaf(port int) string { return servedLeaves()[port] }

// ServedPorts are the ports that serve a leaf of the set, ascending.
func ServedPorts() []int {
	ports := make([]int, 0, 3)
	for p := range servedLeaves() {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports
}

// ServedCertFiles is where, relative to pki.dir, the certificate and key
// that host serves on port live (derived/<host>/kubernetes-apiserver.crt
// and .key.age for 6443). ok is false for a port that serves none of the
// set.
func ServedCertFiles(host string, port int) (cert, key string, ok bool) {
	name := ServedLeaf(port)
	if name == "" {
		return "", "", false
	}
	stem := pki.FileStem(pki.LeafSigners()[name], name)
	return path.Join(pki.DerivedDirName, host, stem+".crt"), path.Join(pki.DerivedDirName, host, stem+".key.age"), true
}

// ProbeServed reads the certificate served on each of ports at addr (a
// host name or IP): a TLS handshake over dial (a tsnet node's Dial, or a
// net.Dialer's DialContext), each bounded by ProbeTimeout. The map holds
// the leaf each port presented. A port that refuses the connection or does
// not answer in time is absent from it, not an error: a worker serves no
// apiserver, a host that is down serves nothing. Any other failure (a
// handshake that breaks off) is in the returned error, the other ports
// still read.
func ProbeServed(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, ports []int) (map[int]*x509.Certificate, error) {
	served := map[int]*x509.Certificate{}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	seen := map[int]bool{}
	for _, port := range ports {
		if seen[port] {
			continue
		}
		seen[port] = true
		wg.Go(func() {
			cert, err := probePort(ctx, dial, net.JoinHostPort(addr, strconv.Itoa(port)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case cert != nil:
				served[port] = cert
			case err != nil && ctx.Err() == nil && !refusedOrTimedOut(err):
				errs = append(errs, fmt.Errorf("pki: probe %s: %w", net.JoinHostPort(addr, strconv.Itoa(port)), err))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pki: probe %s: %w", addr, err)
	}
	return served, errors.Join(errs...)
}

// probePort does one bounded handshake and returns the served leaf.
func probePort(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), hostport string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// The probe reads what is served to compare it with the repository,
	// whatever it is: an expired certificate, one of a CA the bot no longer
	// trusts, one without this address among its SANs. Nothing is sent
	// over the connection, so not verifying the peer is safe here.
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("tls handshake: no certificate served")
	}
	return certs[0], nil
}

// refusedOrTimedOut tells a port nobody serves (refused, or silent until
// the bound) from a real failure.
func refusedOrTimedOut(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// tsnet's userspace network stack (gVisor) reports a refusal as text,
	// not as ECONNREFUSED.
	return strings.Contains(err.Error(), "connection was refused")
}

// NotRolled lists, as "<host>:<port>" in port order, the ports where host
// serves another certificate than the repository's current one for that
// port (6443 its apiserver, 2379 its etcd-server, 10250 its
// kubelet-serving; see ServedLeaf): after a renewal, the hosts that have
// not switched to it yet. repo is the tree as Observe reads it. A port
// that serves none of the set, or whose certificate the repository does
// not hold (or cannot read), is not listed: there is nothing to roll to.
func NotRolled(repo map[string]pki.ObservedCert, host string, served map[int]*x509.Certificate) []string {
	var out []string
	for _, port := range slices.Sorted(maps.Keys(served)) {
		cert := served[port]
		name := ServedLeaf(port)
		if name == "" || cert == nil {
			continue
		}
		want, ok := repo[host+"/"+name]
		if !ok || want.Serial == "" || want.Error != "" {
			continue
		}
		if serialHex(cert) != want.Serial {
			out = append(out, host+":"+strconv.Itoa(port))
		}
	}
	return out
}
