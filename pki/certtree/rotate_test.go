package certtree

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	osexec "os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/pki"
)

// copyTree copies the certificate tree at dir, as a host holds it after
// rolling the commit that wrote it.
func copyTree(t testing.TB, dir string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// leafFiles lists the leaves of tree dir that CA ca signs, by file name.
func leafFiles(t testing.TB, dir, ca string) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(os.DirFS(dir), "derived", func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".crt") && pki.SignerForStem(strings.TrimSuffix(path.Base(p), ".crt")) == ca {
			out = append(out, filepath.Join(dir, filepath.FromSlash(p)))
		}
		return err
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("leaves of %s in %s: %d, %v", ca, dir, len(out), err)
	}
	return out
}

func readCerts(t testing.TB, file string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificatesPEM(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return certs
}

// chainsVerify reports, with crypto/x509 and with openssl verify -CAfile,
// whether every leaf of CA ca in tree leaves verifies against the bundle of
// ca in tree bundles. The two must agree.
func chainsVerify(t testing.TB, openssl string, at time.Time, leaves, bundles, ca string) bool {
	t.Helper()
	bundle := filepath.Join(bundles, filepath.FromSlash(pki.CACertPath(ca)))
	pool := x509.NewCertPool()
	for _, c := range readCerts(t, bundle) {
		pool.AddCert(c)
	}
	files := leafFiles(t, leaves, ca)
	goOK := true
	for _, f := range files {
		leaf := readCerts(t, f)[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			goOK = false
		}
	}
	out, _ := osexecOutput(openssl, append([]string{"verify", "-attime", fmt.Sprint(at.Unix()), "-CAfile", bundle}, files...)...)
	sslOK := strings.Count(out, ": OK") == len(files)
	if goOK != sslOK {
		t.Errorf("leaves of %s in %s against %s: crypto/x509 says %v, openssl %v:\n%s", ca, leaves, bundle, goOK, sslOK, out)
	}
	return goOK && sslOK
}

func osexecOutput(name string, args ...string) (string, error) {
	out, err := osexec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// Through the three phases, a host that has rolled one phase and a host
// that has rolled the next (or the previous) accept each other's leaves:
// every leaf of either tree verifies against the bundle of either.
func TestRotateCAKeepsEveryChainVerifying(t *testing.T) {
	t.Parallel()
	openssl, ageBin := tool(t, "openssl"), tool(t, "age")
	fx := newFixture(t)
	ctx := context.Background()
	fx.apply(t)
	states := []string{copyTree(t, fx.dir)}
	rotate := func(phase pki.RotationPhase) *pki.Report {
		t.Helper()
		fx.clock = fx.clock.Add(24 * time.Hour)
		rep, err := fx.applier.RotateCA(ctx, fx.specs(), pki.CA, phase, true)
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		states = append(states, copyTree(t, fx.dir))
		return rep
	}
	file := func(state int, p string) []byte {
		data, err := os.ReadFile(filepath.Join(states[state], filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	bundlePath := pki.CACertPath(pki.CA)

	// Phase 1: the bundle gains a new CA after the old; nothing else changes.
	rep := rotate(pki.PhasePublish)
	if got := rep.Summary(); got != "rotate ca, phase 1 of 3 (publish)" {
		t.Errorf("summary %q", got)
	}
	bundle := readCerts(t, filepath.Join(states[1], bundlePath))
	oldCA, newCA := readCerts(t, filepath.Join(states[0], bundlePath))[0], bundle[len(bundle)-1]
	if len(bundle) != 2 || !bundle[0].Equal(oldCA) || !bytes.HasPrefix(file(1, bundlePath), file(0, bundlePath)) {
		t.Fatalf("bundle after phase 1: %d certificates, old first %v", len(bundle), bundle[0].Equal(oldCA))
	}
	if !newCA.IsCA || newCA.Subject.String() != oldCA.Subject.String() || newCA.SerialNumber.Cmp(oldCA.SerialNumber) == 0 ||
		samePublicKey(newCA.PublicKey, oldCA.PublicKey) {
		t.Errorf("new CA: subject %s, serial %x (old %x)", newCA.Subject, newCA.SerialNumber, oldCA.SerialNumber)
	}
	for p, data := range fx.snapshotOf(t, states[0]) {
		if p != bundlePath && p != pki.SecretsNixPath && !bytes.Equal(data, file(1, p)) {
			t.Errorf("phase 1 changed %s", p)
		}
	}
	// The new key is beside the old, for the admins: the age CLI decrypts it
	// with an admin's SSH key, and it is the new CA's.
	plain := run(t, nil, ageBin, "-d", "-i", writeTemp(t, "admin", fx.adminSSH.private), filepath.Join(states[1], pki.NextKeyPath(pki.CA)))
	if key, err := pki.ParsePrivateKeyPEM(plain); err != nil || !pki.KeyMatches(key, newCA.PublicKey) {
		t.Errorf("%s does not hold the new CA's key (%v)", pki.NextKeyPath(pki.CA), err)
	}
	rules, _ := pki.ParseSecretsNix(pki.SecretsNixPath, file(1, pki.SecretsNixPath))
	if !slices.Equal(rules[pki.NextKeyPath(pki.CA)], pki.ByID(fx.specs())[pki.CA].Recipients) {
		t.Errorf("secrets.nix lists %s for %q", pki.NextKeyPath(pki.CA), rules[pki.NextKeyPath(pki.CA)])
	}
	rs, err := RotationStatus(os.DirFS(fx.dir))
	if err != nil || len(rs) != 1 || rs[0].CA != pki.CA || rs[0].Phase != pki.PhasePublish || rs[0].NewSerial != serialHex(newCA) || rs[0].OldSerial != serialHex(oldCA) {
		t.Fatalf("rotation status %+v, %v", rs, err)
	}

	// Phase 2: every leaf of the CA, and only those, signed by the new CA.
	rep = rotate(pki.PhaseReissue)
	reissued := 0
	for _, s := range fx.specs() {
		if s.Signer != pki.CA {
			continue
		}
		reissued++
		if r := result(rep, s.ID); r.Action != pki.Reissued {
			t.Errorf("%s: %s, want reissued", s.ID, r.Action)
		}
		if err := readCerts(t, filepath.Join(states[2], s.CertPath))[0].CheckSignatureFrom(newCA); err != nil {
			t.Errorf("%s not signed by the new CA: %v", s.ID, err)
		}
	}
	if got, want := rep.Summary(), fmt.Sprintf("rotate ca, phase 2 of 3 (reissue), reissue %d certificates", reissued); got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	for p, data := range fx.snapshotOf(t, states[1]) {
		signer := pki.SignerForStem(strings.TrimSuffix(path.Base(p), ".crt"))
		if strings.HasPrefix(p, "derived/") && signer != pki.CA && !bytes.Equal(data, file(2, p)) {
			t.Errorf("phase 2 changed %s", p)
		}
	}
	if !bytes.Equal(file(1, bundlePath), file(2, bundlePath)) {
		t.Error("phase 2 changed the bundle")
	}

	// Phase 3: the bundle holds the new CA alone, and its key is the CA key.
	rep = rotate(pki.PhaseDrop)
	if got := rep.Summary(); got != "rotate ca, phase 3 of 3 (drop)" {
		t.Errorf("summary %q", got)
	}
	if b := readCerts(t, filepath.Join(states[3], bundlePath)); len(b) != 1 || !b[0].Equal(newCA) {
		t.Errorf("bundle after phase 3: %d certificates", len(b))
	}
	if key, err := pki.ParsePrivateKeyPEM(decryptWith(t, fx.bot, file(3, pki.ByID(fx.specs())[pki.CA].KeyPath))); err != nil || !pki.KeyMatches(key, newCA.PublicKey) {
		t.Errorf("the CA key is not the new CA's (%v)", err)
	}
	for _, p := range []string{pki.NextKeyPath(pki.CA), pki.RotationPath(pki.CA)} {
		if _, err := os.Stat(filepath.Join(states[3], p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind", p)
		}
	}
	rules, _ = pki.ParseSecretsNix(pki.SecretsNixPath, file(3, pki.SecretsNixPath))
	if _, ok := rules[pki.NextKeyPath(pki.CA)]; ok || !slices.Equal(rules["ca/kubernetes.key.age"], pki.ByID(fx.specs())[pki.CA].Recipients) {
		t.Errorf("secrets.nix after phase 3: %q", rules)
	}
	if rs, err := RotationStatus(os.DirFS(fx.dir)); err != nil || len(rs) != 0 {
		t.Errorf("rotation status after phase 3: %+v, %v", rs, err)
	}

	// Hosts roll one at a time: between phases, some hold state i and some
	// state i+1, and every pair must accept each other's leaves.
	at := fx.clock
	for i := range 3 {
		for _, ca := range pki.KubeadmCAs() {
			for _, pair := range [][2]int{{i, i}, {i, i + 1}, {i + 1, i}, {i + 1, i + 1}} {
				if !chainsVerify(t, openssl, at, states[pair[0]], states[pair[1]], ca) {
					t.Errorf("%s: leaves of state %d do not verify against the bundle of state %d", ca, pair[0], pair[1])
				}
			}
		}
	}
	// Skipping a phase would break chains, which is what the order prevents
	// (and shows the check above can fail).
	if chainsVerify(t, openssl, at, states[2], states[0], pki.CA) {
		t.Error("a leaf of the new CA verifies against the bundle from before the rotation")
	}
	if chainsVerify(t, openssl, at, states[1], states[3], pki.CA) {
		t.Error("a leaf of the old CA verifies against the bundle after the drop")
	}

	// The rotated tree reads as any other, and a normal apply finds nothing to do.
	obs, err := Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	for id, c := range obs {
		if !c.Verified || c.Rotation != nil {
			t.Errorf("%s: verified %v (%s), rotation %v", id, c.Verified, c.VerifyError, c.Rotation)
		}
	}
	for id, a := range actions(fx.apply(t)) {
		if a != pki.Unchanged {
			t.Errorf("apply after the rotation: %s %s", id, a)
		}
	}
}

// samePublicKey reports whether two public keys are the same.
func samePublicKey(a, b any) bool {
	k, ok := a.(interface{ Equal(x any) bool })
	return ok && k.Equal(b)
}

func (fx *fixture) snapshotOf(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	saved := fx.dir
	defer func() { fx.dir = saved }()
	fx.dir = dir
	return fx.snapshot(t)
}

func TestRotateCARefusesOutOfOrder(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	ctx := context.Background()
	fx.apply(t)
	step := func(phase pki.RotationPhase) {
		t.Helper()
		if _, err := fx.applier.RotateCA(ctx, fx.specs(), pki.EtcdCA, phase, true); err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
	}
	refused := func(ca string, phase pki.RotationPhase, rolled bool, want string) {
		t.Helper()
		before := fx.snapshot(t)
		_, err := fx.applier.RotateCA(ctx, fx.specs(), ca, phase, rolled)
		if !errors.Is(err, ErrRotationRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s %s (rolled %v): error %v; want it refused with %q", ca, phase, rolled, err, want)
		}
		if !maps.EqualFunc(before, fx.snapshot(t), bytes.Equal) {
			t.Errorf("%s %s: a refused phase changed the tree", ca, phase)
		}
	}
	status := func() string {
		t.Helper()
		rs, err := RotationStatus(os.DirFS(fx.dir))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.CA+" "+string(r.Phase))
		}
		return strings.Join(out, ",")
	}

	refused("w-1/kubelet", pki.PhasePublish, true, `"w-1/kubelet" is not a CA`)
	refused(pki.EtcdCA, pki.PhaseReissue, true, "no rotation of etcd-ca is in progress (no ca/etcd.rotation); start with phase 1 of 3 (publish)")
	refused(pki.EtcdCA, pki.PhaseDrop, true, "no rotation of etcd-ca is in progress")
	step(pki.PhasePublish)
	if got := status(); got != "etcd-ca publish" {
		t.Errorf("status %q", got)
	}
	if rs, _ := RotationStatus(os.DirFS(fx.dir)); len(rs) != 1 || !strings.HasPrefix(rs[0].String(), "etcd-ca: rotation at phase 1 of 3 (publish), applied 2026-11-20 09:00:00 UTC") ||
		!strings.HasSuffix(rs[0].String(), "next: phase 2 of 3 (reissue), once every host has rolled the commit of phase 1") {
		t.Errorf("status line %q", rs)
	}
	refused(pki.EtcdCA, pki.PhasePublish, true, "already at phase 1 of 3 (publish)")
	refused(pki.EtcdCA, pki.PhaseDrop, true, "cannot follow phase 1 of 3 (publish): dropping the old CA now would break every leaf it still signs; run phase 2 of 3 (reissue) first")
	refused(pki.EtcdCA, pki.PhaseReissue, false, "confirm that every host has rolled the commit of phase 1 of 3 (publish)")
	step(pki.PhaseReissue)
	if got := status(); got != "etcd-ca reissue" {
		t.Errorf("status %q", got)
	}
	refused(pki.EtcdCA, pki.PhaseReissue, true, "phase 2 of 3 (reissue) of etcd-ca was already applied")
	refused(pki.EtcdCA, pki.PhasePublish, true, "already at phase 2 of 3 (reissue)")
	refused(pki.EtcdCA, pki.PhaseDrop, false, "confirm that every host has rolled the commit of phase 2 of 3 (reissue)")
	step(pki.PhaseDrop)
	if got := status(); got != "" {
		t.Errorf("status after the drop %q", got)
	}
	refused(pki.EtcdCA, pki.PhaseDrop, true, "no rotation of etcd-ca is in progress")

	for in, want := range map[string]pki.RotationPhase{"publish": pki.PhasePublish, "2": pki.PhaseReissue, "drop": pki.PhaseDrop} {
		if got, err := pki.ParseRotationPhase(in); err != nil || got != want {
			t.Errorf("ParseRotationPhase(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := pki.ParseRotationPhase("4"); err == nil {
		t.Error("phase 4 parsed")
	}
}

// A marker that disagrees with its bundle stops the apply and is named.
func TestRotationMarkerMustMatchItsBundle(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	if _, err := fx.applier.RotateCA(context.Background(), fx.specs(), pki.FrontProxyCA, pki.PhasePublish, false); err != nil {
		t.Fatal(err)
	}
	old := fx.read(t, "ca/front-proxy.crt")
	certs, _ := pki.ParseCertificatesPEM(old)
	os.WriteFile(filepath.Join(fx.dir, "ca/front-proxy.crt"), fx.read(t, "ca/kubernetes.crt"), 0o644) // hand-edited
	_, err := fx.applier.Apply(context.Background(), fx.specs())
	want := fmt.Sprintf("ca/front-proxy.rotation records the rotation of front-proxy-ca at phase 1 of 3 (publish) with old serial %s", serialHex(certs[0]))
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "restore both files from git") {
		t.Errorf("apply: %v", err)
	}
	if _, err := RotationStatus(os.DirFS(fx.dir)); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("status: %v", err)
	}
	os.WriteFile(filepath.Join(fx.dir, "ca/front-proxy.crt"), old, 0o644)
	os.WriteFile(filepath.Join(fx.dir, pki.RotationPath(pki.FrontProxyCA)), []byte(`{"ca":"front-proxy-ca","phase":"publish","extra":1}`), 0o644)
	if _, err := fx.applier.Apply(context.Background(), fx.specs()); err == nil || !strings.Contains(err.Error(), `ca/front-proxy.rotation: json: unknown field "extra"`) {
		t.Errorf("apply with a broken marker: %v", err)
	}
}

// A normal apply during a rotation: it reissues nothing because of the
// rotation, signs new leaves with the old CA after phase 1 and with the new
// one from phase 2 on, moves a leaf still signed by the old CA in phase 2,
// and rekeys the new CA key with the old one.
func TestApplyDuringRotation(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	ctx := context.Background()
	fx.apply(t)
	rotate := func(phase pki.RotationPhase) {
		t.Helper()
		if _, err := fx.applier.RotateCA(ctx, fx.specs(), pki.CA, phase, true); err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
	}
	bundle := func() []*x509.Certificate { return readCerts(t, filepath.Join(fx.dir, "ca/kubernetes.crt")) }
	signer := func(p string) string {
		t.Helper()
		leaf := readCerts(t, filepath.Join(fx.dir, p))[0]
		for i, name := range []string{"old", "new"} {
			if b := bundle(); i < len(b) && leaf.CheckSignatureFrom(b[i]) == nil {
				return name
			}
		}
		return "neither"
	}
	const kubelet, proxy = "derived/w-1/kubernetes-kubelet.crt", "derived/w-1/kubernetes-kube-proxy.crt"

	rotate(pki.PhasePublish)
	obs, err := Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	var specIDs []string
	for _, s := range fx.specs() {
		specIDs = append(specIDs, s.ID)
	}
	if got := slices.Sorted(maps.Keys(obs)); !slices.Equal(got, specIDs) {
		t.Errorf("observed ids during a rotation:\n got %q\nwant %q", got, specIDs)
	}
	ca := obs[pki.CA]
	if ca.Rotation == nil || ca.Rotation.Phase != pki.PhasePublish || ca.Next == nil || !ca.Next.Verified || !ca.Next.HasKey ||
		ca.Serial != ca.Rotation.OldSerial || ca.Next.Serial != ca.Rotation.NewSerial || ca.Next.KeyPath != pki.NextKeyPath(pki.CA) {
		t.Errorf("the CA in rotation observed as %+v, next %+v", ca, ca.Next)
	}
	for id, c := range obs {
		if !c.Verified {
			t.Errorf("%s does not verify mid-rotation: %s", id, c.VerifyError)
		}
	}
	rep := fx.apply(t)
	for id, a := range actions(rep) {
		if want := map[bool]pki.Action{true: pki.Held, false: pki.Unchanged}[id == pki.CA]; a != want {
			t.Errorf("apply after phase 1: %s %s, want %s", id, a, want)
		}
	}
	if r := result(rep, pki.CA); !strings.Contains(r.Reason, "rotation at phase 1 of 3 (publish)") || rep.Changed() {
		t.Errorf("apply after phase 1: ca %q, changed %v", r.Reason, rep.Changed())
	}

	// After phase 1, a new leaf is signed by the old CA, which every host trusts.
	os.Remove(filepath.Join(fx.dir, kubelet))
	if r := result(fx.apply(t), "w-1/kubelet"); r.Action != pki.Issued || signer(kubelet) != "old" {
		t.Errorf("after phase 1: kubelet %s, signed by the %s CA", r.Action, signer(kubelet))
	}
	oldProxy := map[string][]byte{proxy: fx.read(t, proxy), pki.KeyPathFor(proxy): fx.read(t, pki.KeyPathFor(proxy))}

	// From phase 2 on, by the new one.
	rotate(pki.PhaseReissue)
	os.Remove(filepath.Join(fx.dir, kubelet))
	if r := result(fx.apply(t), "w-1/kubelet"); r.Action != pki.Issued || signer(kubelet) != "new" {
		t.Errorf("after phase 2: kubelet %s, signed by the %s CA", r.Action, signer(kubelet))
	}

	// A leaf still signed by the old CA (restored by hand): status flags it,
	// the drop refuses, and an apply moves it.
	for p, data := range oldProxy {
		os.WriteFile(filepath.Join(fx.dir, p), data, 0o644)
	}
	obs, _ = Observe(fx.dir, fx.clock)
	rows := pki.StatusRows(obs, fx.specs(), fx.clock, fx.applier.RenewBefore)
	for _, r := range rows {
		want := pki.StatusOK
		if r.ID == "w-1/kube-proxy" {
			want = pki.StatusReissue
		}
		if r.Status != want {
			t.Errorf("status %s: %s (%s), want %s", r.ID, r.Status, r.Reason, want)
		}
	}
	if !slices.ContainsFunc(rows, func(r pki.StatusRow) bool { return r.ID == "ca.next" && r.Status == pki.StatusOK }) {
		t.Error("no ca.next row in the status mid-rotation")
	}
	_, err = fx.applier.RotateCA(ctx, fx.specs(), pki.CA, pki.PhaseDrop, true)
	if !errors.Is(err, ErrRotationRefused) || !strings.Contains(err.Error(), proxy+" is not signed by the new CA") {
		t.Errorf("drop with a leaf of the old CA: %v", err)
	}
	if r := result(fx.apply(t), "w-1/kube-proxy"); r.Action != pki.Reissued || !strings.Contains(r.Reason, "signed by the old ca") || signer(proxy) != "new" {
		t.Errorf("old leaf in phase 2: %s %q, signed by the %s CA", r.Action, r.Reason, signer(proxy))
	}

	// An admin is replaced mid-rotation: both CA keys are re-encrypted.
	newAdmin := newSSHKey(t)
	fx.fleet.PKI.Admins = []string{fx.botRecip, newAdmin.pub}
	rep = fx.apply(t)
	if r := result(rep, pki.CA); r.Action != pki.Rekeyed || !slices.Contains(r.Files, pki.NextKeyPath(pki.CA)) {
		t.Errorf("ca: %s, files %q", r.Action, r.Files)
	}
	newID, _ := ParseIdentity(newAdmin.private)
	oldID, _ := ParseIdentity(fx.adminSSH.private)
	for _, p := range []string{"ca/kubernetes.key.age", pki.NextKeyPath(pki.CA)} {
		if _, err := Decrypt(fx.read(t, p), newID); err != nil {
			t.Errorf("%s: the new admin cannot decrypt: %v", p, err)
		}
		if _, err := Decrypt(fx.read(t, p), oldID); err == nil {
			t.Errorf("%s: the replaced admin still decrypts", p)
		}
	}
	rules, _ := pki.ParseSecretsNix(pki.SecretsNixPath, fx.read(t, pki.SecretsNixPath))
	if !slices.Contains(rules[pki.NextKeyPath(pki.CA)], newAdmin.pub) {
		t.Errorf("secrets.nix: %s for %q", pki.NextKeyPath(pki.CA), rules[pki.NextKeyPath(pki.CA)])
	}

	rotate(pki.PhaseDrop)
	if _, err := Decrypt(fx.read(t, "ca/kubernetes.key.age"), newID); err != nil {
		t.Errorf("after the drop, the new admin cannot decrypt the CA key: %v", err)
	}
	if b := bundle(); len(b) != 1 || readCerts(t, filepath.Join(fx.dir, proxy))[0].CheckSignatureFrom(b[0]) != nil {
		t.Errorf("after the drop: %d CAs in the bundle, or kube-proxy not signed by the one left", len(b))
	}
}
