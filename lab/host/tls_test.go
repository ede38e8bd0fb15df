package host_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

// certFleet has a control plane that is never booted (pki needs one) and
// the worker web, whose kubelet-serving certificate the tests follow.
const certFleet = `version: 1
name: labnest
tailnet: {domain: labnest.ts.net, tags: [tag:nest]}
hosts:
  cp:  {roles: [control-plane]}
  web: {roles: [worker]}
pki:
  dir: infra/nix/secrets/certs
  leaf_validity: 2160h   # 90 days
  admins: [%s]
`

// certRepo issues the fleet's certificates into a tree, as nestbot would.
type certRepo struct {
	fleet   *nest.Fleet
	dir     string
	clock   time.Time
	applier *pki.Applier
	keys    map[string]string
	facts   map[string]pki.HostFacts
}

func newCertRepo(t *testing.T, web *host.Host) *certRepo {
	t.Helper()
	bot, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.ParseIdentity([]byte(bot.String()))
	if err != nil {
		t.Fatal(err)
	}
	f, err := nest.Parse("labnest.yaml", fmt.Appendf(nil, certFleet, bot.Recipient()))
	if err != nil {
		t.Fatal(err)
	}
	r := &certRepo{fleet: f, dir: t.TempDir(), clock: time.Now(),
		keys: map[string]string{"web": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(web.HostKey())))},
		facts: map[string]pki.HostFacts{"web": {
			IPs: []netip.Addr{web.TailscaleIP()}, DNSName: "web.labnest.ts.net", OnTailnet: true, PrivateIPs: true,
		}},
	}
	r.applier = &pki.Applier{Files: pki.Dir(r.dir), Identity: id,
		Issuer: &pki.Issuer{Now: func() time.Time { return r.clock }}, RenewBefore: f.PKI.RenewBefore.Duration}
	return r
}

// apply issues (or renews) the set and returns the tree as Observe reads it.
func (r *certRepo) apply(t *testing.T) map[string]pki.ObservedCert {
	t.Helper()
	if _, err := r.applier.Apply(t.Context(), pki.Set(r.fleet, r.keys, r.facts)); err != nil {
		t.Fatal(err)
	}
	obs, err := pki.Observe(r.dir, r.clock)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// tarball is the repository at rev: the flake in infra/nix, the certificate
// tree at pki.dir.
func (r *certRepo) tarball(t *testing.T, rev string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	add("infra/nix/.nest-revision", []byte(rev+"\n"))
	add("infra/nix/flake.nix", []byte("{ outputs = _: { }; }\n"))
	err := fs.WalkDir(os.DirFS(r.dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(filepath.Join(r.dir, p))
		add(r.fleet.PKI.Dir+"/"+p, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// switchTo ships the repository at rev and switches web to it.
func (r *certRepo) switchTo(t *testing.T, c *ssh.Client, rev string) {
	t.Helper()
	dir := "$HOME/.nest/src/" + rev
	mustRun(t, c, "mkdir -p "+dir+" && tar -x -C "+dir, r.tarball(t, rev))
	mustRun(t, c, "nixos-rebuild switch --flake "+dir+"/infra/nix#web", nil)
}

func probe(t *testing.T, ctx context.Context, bot *tsnet.Server, h *host.Host) map[int]*x509.Certificate {
	t.Helper()
	served, err := pki.ProbeServed(ctx, bot.Dial, h.TailscaleIP().String(), nest.DefaultServingPorts())
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return served
}

func serial(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%x", c.SerialNumber)
}

func TestServesTheCurrentGenerationsCertificates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	lab := startLab(t)
	web := boot(t, ctx, lab, host.Config{Name: "web", Revision: "aaaa", PKIDir: "secrets/certs"})
	bot := startBot(t, ctx, lab, "nestbot", "tag:nestbot")
	c := mustDial(t, ctx, bot, web)
	repo := newCertRepo(t, web)

	// The boot generation has no certificates: every port refuses.
	if served := probe(t, ctx, bot, web); len(served) != 0 {
		t.Fatalf("boot generation serves %v, want nothing", served)
	}

	v1 := repo.apply(t)
	repo.switchTo(t, c, "bbbb")
	served := probe(t, ctx, bot, web)
	if got, want := serial(served[10250]), v1["web/kubelet-serving"].Serial; got != want {
		t.Fatalf("port 10250 serves serial %s, the repository has %s", got, want)
	}
	if len(served) != 1 {
		t.Errorf("a worker serves on %v, want 10250 only (no apiserver, no etcd)", served)
	}
	if nr := pki.NotRolled(v1, "web", served); len(nr) != 0 {
		t.Errorf("switched to the repository's certificates, yet not rolled: %q", nr)
	}

	// Renewed in the repository: until web switches, it serves the old one.
	repo.clock = repo.clock.Add(70 * 24 * time.Hour) // past 2/3 of 90 days
	v2 := repo.apply(t)
	if v2["web/kubelet-serving"].Serial == v1["web/kubelet-serving"].Serial {
		t.Fatal("the apply did not renew web's kubelet-serving certificate")
	}
	if got := pki.NotRolled(v2, "web", probe(t, ctx, bot, web)); !slices.Equal(got, []string{"web:10250"}) {
		t.Errorf("renewed, not switched: not rolled %q, want web:10250", got)
	}
	repo.switchTo(t, c, "cccc")
	served = probe(t, ctx, bot, web)
	if got, want := serial(served[10250]), v2["web/kubelet-serving"].Serial; got != want {
		t.Errorf("after switching, port 10250 serves serial %s, want the renewed %s", got, want)
	}
	if nr := pki.NotRolled(v2, "web", served); len(nr) != 0 {
		t.Errorf("switched to the renewal, yet not rolled: %q", nr)
	}

	// A rollback serves the previous generation's certificate again.
	mustRun(t, c, "nixos-rebuild switch --rollback", nil)
	if got, want := serial(probe(t, ctx, bot, web)[10250]), v1["web/kubelet-serving"].Serial; got != want {
		t.Errorf("after a rollback, port 10250 serves serial %s, want the old %s", got, want)
	}
}
