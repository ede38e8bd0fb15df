package certtree

import (
	"context"
	"crypto/tls"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/pki"
)

func TestServedCertFiles(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	byID := pki.ByID(fx.specs())
	for _, port := range ServedPorts() {
		cert, key, ok := ServedCertFiles("cp-1", port)
		s := byID["cp-1/"+ServedLeaf(port)]
		if !ok || s == nil || cert != s.CertPath || key != s.KeyPath {
			t.Errorf("port %d: %q %q %v, want the spec's %+v", port, cert, key, ok, s)
		}
	}
	if _, _, ok := ServedCertFiles("cp-1", 22); ok {
		t.Error("port 22 serves a certificate of the set")
	}
	if got := ServedPorts(); !slices.Equal(got, []int{2379, 6443, 10250}) {
		t.Errorf("ServedPorts() = %v", got)
	}
}

// servedKeyPair is the certificate and decrypted key host serves on port,
// from the fixture's tree.
func (fx *fixture) servedKeyPair(t *testing.T, host string, port int) tls.Certificate {
	t.Helper()
	certPath, keyPath, _ := ServedCertFiles(host, port)
	id, err := ParseIdentity(fx.hosts[host].private)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := Decrypt(fx.read(t, keyPath), id)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(fx.read(t, certPath), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// serveTLS serves kp on a local port and returns its address.
func serveTLS(t *testing.T, kp tls.Certificate) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// closedPort is a local address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// portMap dials "<host>:<port>" at the local address routes[port]: the
// serving ports of one host, each on a port of its own here.
func portMap(routes map[int]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		port, _ := strconv.Atoi(p)
		return d.DialContext(ctx, network, routes[port])
	}
}

func TestProbeServedAndNotRolled(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// cp-1 serves its apiserver and kubelet certificates; etcd refuses.
	dial := portMap(map[int]string{
		6443:  serveTLS(t, fx.servedKeyPair(t, "cp-1", 6443)),
		2379:  closedPort(t),
		10250: serveTLS(t, fx.servedKeyPair(t, "cp-1", 10250)),
	})
	ports := []int{6443, 2379, 10250}
	served, err := ProbeServed(ctx, dial, "cp-1", ports)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, ok := served[2379]; ok || len(served) != 2 {
		t.Fatalf("served ports %v, want 6443 and 10250 (2379 refuses)", slices.Sorted(maps.Keys(served)))
	}
	repo, err := Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	for port, name := range map[int]string{6443: "apiserver", 10250: "kubelet-serving"} {
		if got, want := serialHex(served[port]), repo["cp-1/"+name].Serial; got != want {
			t.Errorf("port %d serves serial %s, the repository has %s", port, got, want)
		}
	}
	if nr := NotRolled(repo, "cp-1", served); len(nr) != 0 {
		t.Errorf("served as in the repository, yet not rolled: %q", nr)
	}

	// Renew every leaf: the host still serves the old ones.
	fx.clock = fx.clock.Add(70 * 24 * time.Hour) // past 2/3 of 90 days
	rep := fx.apply(t)
	if a := actions(rep)["cp-1/kubelet-serving"]; a != pki.Renewed {
		t.Fatalf("kubelet-serving: %s, want renewed", a)
	}
	repo, err = Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := NotRolled(repo, "cp-1", served), []string{"cp-1:6443", "cp-1:10250"}; !slices.Equal(got, want) {
		t.Errorf("after renewal, not rolled %q, want %q", got, want)
	}
	// Another host's view of the same certificates is not this host's.
	if got := NotRolled(repo, "w-1", served); !slices.Equal(got, []string{"w-1:10250"}) {
		t.Errorf("w-1 serving cp-1's old certificates: not rolled %q, want w-1:10250 only (w-1 has no apiserver)", got)
	}
}

func TestProbeServedReportsABrokenHandshake(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-not-tls\r\n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	served, err := ProbeServed(ctx, portMap(map[int]string{6443: ln.Addr().String(), 2379: closedPort(t)}), "cp-1", []int{6443, 2379})
	if err == nil {
		t.Fatal("a port that speaks no TLS: no error")
	}
	if len(served) != 0 {
		t.Errorf("served %v", served)
	}
	t.Logf("error: %v", err)
}
