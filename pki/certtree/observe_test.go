package certtree

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

// opensslTree writes a tree as a script of openssl and age commands would,
// nestbot nowhere involved: two CAs and, for host h1, a kubelet-serving
// certificate that expires in 10 days, an etcd-server certificate signed by
// the wrong CA, a kube-proxy certificate whose organization is not
// kubeadm's (system:masters), and a kubelet.crt that is not a certificate.
// Every key is encrypted with the age CLI to recipient and listed in
// secrets.nix. It returns the tree's directory.
func opensslTree(t *testing.T, recipient string) string {
	t.Helper()
	openssl, ageBin := tool(t, "openssl"), tool(t, "age")
	dir, work := t.TempDir(), t.TempDir()
	for _, d := range []string{"ca", "derived/h1"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	w := func(name string) string { return filepath.Join(work, name) }
	tree := func(name string) string { return filepath.Join(dir, filepath.FromSlash(name)) }
	rules := map[string][]string{}
	encrypt := func(key, certPath string) {
		keyPath := pki.KeyPathFor(certPath)
		run(t, nil, ageBin, "-a", "-r", recipient, "-o", tree(keyPath), key)
		rules[keyPath] = []string{recipient}
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	caExt := []string{"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"}
	for _, ca := range []struct{ file, cn string }{{"ca/kubernetes.crt", "kubernetes"}, {"ca/etcd.crt", "etcd-ca"}} {
		args := append([]string{"req", "-x509"}, ec...)
		args = append(args, "-keyout", w(ca.cn+".key"), "-out", tree(ca.file), "-subj", "/CN="+ca.cn, "-days", "3650")
		run(t, nil, openssl, append(args, caExt...)...)
		encrypt(w(ca.cn+".key"), ca.file)
	}
	leaf := func(out, subj, signer, days, ext string) {
		base := filepath.Base(out)
		os.WriteFile(w(base+".ext"), []byte(ext), 0o600)
		run(t, nil, openssl, append(append([]string{"req", "-new"}, ec...), "-keyout", w(base+".key"), "-out", w(base+".csr"), "-subj", subj)...)
		run(t, nil, openssl, "x509", "-req", "-in", w(base+".csr"), "-CA", tree("ca/"+signer+".crt"), "-CAkey", w(map[string]string{"kubernetes": "kubernetes", "etcd": "etcd-ca"}[signer]+".key"),
			"-set_serial", "0x1234", "-days", days, "-extfile", w(base+".ext"), "-out", tree(out))
		encrypt(w(base+".key"), out)
	}
	leaf("derived/h1/kubernetes-kubelet-serving.crt", "/O=system:nodes/CN=system:node:h1", "kubernetes", "10",
		"subjectAltName=DNS:h1,IP:10.0.0.5\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
	leaf("derived/h1/etcd-server.crt", "/CN=h1", "kubernetes", "365", // the wrong CA
		"subjectAltName=DNS:h1,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
	leaf("derived/h1/kubernetes-kube-proxy.crt", "/O=system:masters/CN=system:kube-proxy", "kubernetes", "365",
		"extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
	os.WriteFile(tree("derived/h1/kubernetes-kubelet.crt"), []byte("not a certificate\n"), 0o644)
	os.WriteFile(tree(pki.SecretsNixPath), pki.RenderSecretsNix(rules), 0o644)
	return dir
}

// A tree nestbot did not write: made by openssl, as a script would, with
// one certificate expiring soon and one signed by the wrong CA.
func TestObserveReadsATreeOpenSSLWrote(t *testing.T) {
	t.Parallel()
	_, recipient, _ := newAgeIdentity(t)
	dir := opensslTree(t, recipient)
	tree := func(name string) string { return filepath.Join(dir, filepath.FromSlash(name)) }

	now := time.Now()
	obs, err := Observe(dir, now)
	// The unreadable file is named, with its full path, and the rest is read.
	if err == nil || !strings.Contains(err.Error(), tree("derived/h1/kubernetes-kubelet.crt")) {
		t.Fatalf("error %v does not name the unreadable file", err)
	}
	if c := obs["h1/kubelet"]; c.Error == "" {
		t.Errorf("unreadable certificate not marked: %+v", c)
	}

	c, ok := obs["h1/kubelet-serving"]
	if !ok {
		t.Fatalf("not observed; have %v", slices.Sorted(maps.Keys(obs)))
	}
	if c.CommonName != "system:node:h1" || !slices.Equal(c.Organization, []string{"system:nodes"}) ||
		!slices.Equal(c.DNSNames, []string{"h1"}) || !slices.Equal(c.IPs, []string{"10.0.0.5"}) ||
		!slices.Equal(c.Usages, []string{pki.UsageServer}) || c.IsCA || c.Issuer != "kubernetes" {
		t.Errorf("read as %+v", c)
	}
	if !c.Verified || c.SignerPath != "ca/kubernetes.crt" || c.KeyAlgorithm != pki.AlgECDSAP256 || c.Serial != "1234" {
		t.Errorf("verified %v (%s) against %s, key %s, serial %s", c.Verified, c.VerifyError, c.SignerPath, c.KeyAlgorithm, c.Serial)
	}
	if c.DaysLeft < 9 || c.DaysLeft > 10 {
		t.Errorf("days left %d, want 9 or 10", c.DaysLeft)
	}
	if due, why := pki.RenewalDue(c.NotBefore, c.NotAfter, now, nest.DefaultRenewBefore); !due || !strings.Contains(why, "renew_before") {
		t.Errorf("expiring certificate not due: %q", why)
	}
	if !c.HasKey || c.KeyPath != "derived/h1/kubernetes-kubelet-serving.key.age" || !slices.Equal(c.Recipients, []string{recipient}) {
		t.Errorf("key %s (present %v), recipients %q", c.KeyPath, c.HasKey, c.Recipients)
	}

	e := obs["h1/etcd-server"]
	if e.Verified || e.SignerPath != "ca/etcd.crt" || e.VerifyError == "" || e.Issuer != "kubernetes" {
		t.Errorf("etcd cert signed by the wrong CA: verified %v against %s (%s)", e.Verified, e.SignerPath, e.VerifyError)
	}
	if !slices.Equal(e.Usages, []string{pki.UsageServer, pki.UsageClient}) /* as the certificate lists them */ || !slices.Equal(e.IPs, []string{"127.0.0.1"}) {
		t.Errorf("etcd usages %q, IPs %q", e.Usages, e.IPs)
	}
	if ca := obs[pki.CA]; !ca.IsCA || !ca.Verified || ca.CommonName != "kubernetes" || ca.DaysLeft < 3640 {
		t.Errorf("CA read as %+v", ca)
	}
}

func TestObserveNamesABrokenSecretsNix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, pki.SecretsNixPath), []byte("{\n  \"a.age\".publicKeys = [ admins ];\n}\n"), 0o644)
	_, err := Observe(dir, t0)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, pki.SecretsNixPath)+":2:") {
		t.Fatalf("error %v", err)
	}
	if _, err := Observe(filepath.Join(dir, "missing"), t0); err == nil {
		t.Fatal("a missing tree observed")
	}
}

func TestLayoutPathsAndIDsAgree(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	stems := map[string]string{}
	for name, signer := range pki.LeafSigners() {
		stem := pki.FileStem(signer, name)
		if other, dup := stems[stem]; dup {
			t.Errorf("%s and %s share the file name %s", name, other, stem)
		}
		stems[stem] = name
	}
	for _, s := range fx.specs() {
		p := s.CertPath
		if s.KeyOnly {
			p = pki.PublicKeyPath(s)
		}
		if id, ok := pki.IDForPath(p); !ok || id != s.ID {
			t.Errorf("IDForPath(%s) = %q, %v; want %q", p, id, ok, s.ID)
		}
		if pki.KeyPathFor(p) != s.KeyPath {
			t.Errorf("KeyPathFor(%s) = %s, want %s", p, pki.KeyPathFor(p), s.KeyPath)
		}
		if !s.KeyOnly && !s.IsCA && pki.SignerForStem(strings.TrimSuffix(filepath.Base(p), ".crt")) != s.Signer {
			t.Errorf("%s: file name says signer %q, spec %q", p, pki.SignerForStem(filepath.Base(p)), s.Signer)
		}
	}
	for _, p := range []string{"hosts/h.pub", "derived/h.crt", "derived/a/b/c.crt", "ca/x.key.age", "secrets.nix", "derived/h/.crt"} {
		if id, ok := pki.IDForPath(p); ok {
			t.Errorf("IDForPath(%s) = %q", p, id)
		}
	}
	if id, _ := pki.IDForPath("derived/h/custom-thing.crt"); id != "h/custom-thing" {
		t.Errorf("unknown leaf id %q", id)
	}
}

// A key file that is a symbolic link out of the tree (a pull request may
// hold one) is not read for its header: what it points to never reaches
// a plan, even when it looks like an age file.
func TestKeyHeaderNotReadThroughASymlink(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	if err := os.Remove(filepath.Join(fx.dir, pki.SecretsNixPath)); err != nil {
		t.Fatal(err)
	}
	const canary = "CANARY-7f3e1c"
	outside := writeTemp(t, "outside", []byte("age-encryption.org/v1\n-> ssh-ed25519 "+canary+" x\nbody\n--- mac\n"))
	key := filepath.Join(fx.dir, "derived/w-1/kubernetes-kubelet.key.age")
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, key); err != nil {
		t.Fatal(err)
	}
	obs, err := Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	if c := obs["w-1/kubelet"]; c.KeyStanzas != nil || strings.Contains(fmt.Sprint(c), canary) {
		t.Errorf("the header was read through the link: %q", c.KeyStanzas)
	}
	if c := obs["w-1/kube-proxy"]; len(c.KeyStanzas) == 0 {
		t.Errorf("a regular key's header was not read: %+v", c)
	}
}
