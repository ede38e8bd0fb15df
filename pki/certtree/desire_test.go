package certtree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

// desire is Desired of fx's tree at fx's clock for fleet f.
func (fx *fixture) desire(t testing.TB, f *nest.Fleet) (*pki.Desire, map[string]pki.ObservedCert, error) {
	t.Helper()
	tree, err := Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pki.Desired(f, fx.hostKeys, fx.facts, tree)
	return d, tree, err
}

// verdicts judges every Spec of d against tree.
func (fx *fixture) verdicts(d *pki.Desire, tree map[string]pki.ObservedCert) map[string]pki.Verdict {
	out := map[string]pki.Verdict{}
	for _, s := range d.Specs {
		var have *pki.ObservedCert
		if c, ok := tree[s.ID]; ok {
			have = &c
		}
		out[s.ID] = pki.Judge(s, have, false, fx.clock, fx.applier.RenewBefore)
	}
	return out
}

func (fx *fixture) applyFleet(t testing.TB, f *nest.Fleet) *pki.Report {
	t.Helper()
	rep, err := fx.applier.ApplyFleet(context.Background(), f, fx.hostKeys, fx.facts)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return rep
}

// withYAML is fx's fleet with its nest.yaml changed by edit.
func withYAML(t testing.TB, fx *fixture, edit func(string) string) *nest.Fleet {
	t.Helper()
	y := edit(fmt.Sprintf(fixtureYAML, fx.botRecip, fx.adminSSH.pub))
	f, err := nest.Parse("testnest.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func k8nixLayout(y string) string {
	return strings.Replace(y, "  dir: certs\n", "  dir: certs\n  layout: k8nix\n  organization: TestNest\n", 1)
}

// issueAdopted writes f's set as a tool other than nestbot would: without
// nestbot's certificate policy.
func (fx *fixture) issueAdopted(t testing.TB, f *nest.Fleet) {
	t.Helper()
	specs := pki.Set(f, fx.hostKeys, fx.facts)
	for i := range specs {
		specs[i].Adopted = true
	}
	if _, err := fx.applier.Apply(context.Background(), specs); err != nil {
		t.Fatal(err)
	}
}

// A tree nestbot issued in the kubeadm layout stays kubeadm's when
// pki.layout is unset: its due leaves are renewed, under their names,
// and nothing else happens; then nothing is due.
func TestKubeadmTreeStaysKubeadm(t *testing.T) {
	t.Parallel()
	for _, layout := range []string{"", "kubeadm"} {
		fx := newFixture(t)
		fx.apply(t)
		f := withYAML(t, fx, func(y string) string {
			if layout == "" {
				return y
			}
			return strings.Replace(y, "  dir: certs\n", "  dir: certs\n  layout: kubeadm\n", 1)
		})
		fx.clock = t0.Add(61 * 24 * time.Hour)
		d, _, err := fx.desire(t, f)
		if err != nil || d.Layout != nest.LayoutKubeadm || len(d.Remove) > 0 || len(d.Notes) > 0 {
			t.Fatalf("layout %q: %s (from the tree %v), removes %v, notes %q, %v", layout, d.Layout, d.LayoutFromTree, d.Remove, d.Notes, err)
		}
		rep := fx.applyFleet(t, f)
		for _, r := range rep.Results {
			want := pki.Renewed
			if slices.Contains([]string{pki.CA, pki.EtcdCA, pki.FrontProxyCA, pki.ServiceAccount}, r.ID) {
				want = pki.Unchanged
			}
			if r.Action != want {
				t.Errorf("layout %q: %s %s (%s), want %s", layout, r.ID, r.Action, r.Reason, want)
			}
		}
		for p := range fx.snapshot(t) {
			if strings.Contains(p, "k8s") {
				t.Errorf("layout %q: a kubeadm tree gained %s", layout, p)
			}
		}
		d, tree, _ := fx.desire(t, f)
		for id, v := range fx.verdicts(d, tree) {
			if v.Action != pki.Unchanged {
				t.Errorf("layout %q: after the apply, %s: %s (%s)", layout, id, v.Action, v.Reason)
			}
		}
	}
}

// A tree nestbot did not issue is adopted: a directory no host of
// nest.yaml has is kept and renewed, and its renewal stays unmarked as
// nestbot's; only pki.remove deletes it, and says so.
func TestAdoptedTreeIsKeptRenewedAndRemovedOnlyWhenListed(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	withOld := withYAML(t, fx, func(y string) string {
		return strings.Replace(k8nixLayout(y), "  w-1:", "  old-1: {roles: [worker]}\n  w-1:", 1)
	})
	fx.hostKeys["old-1"] = newSSHKey(t).pub // pinned as hosts/old-1.pub: the directory's own
	fx.issueAdopted(t, withOld)
	f := withYAML(t, fx, k8nixLayout)

	d, tree, err := fx.desire(t, f)
	if err != nil || len(d.Remove) > 0 {
		t.Fatalf("removes %v, %v", d.Remove, err)
	}
	old := 0
	for _, s := range d.Specs {
		if strings.HasPrefix(s.ID, "old-1/") {
			old++
			if !s.Adopted || s.Signer != pki.K8sCA || s.Host != "" || !slices.Contains(s.Recipients, pki.NormalizeRecipient(fx.hostKeys["old-1"])) {
				t.Errorf("%s adopted as %+v", s.ID, s)
			}
		}
	}
	if old != 3 {
		t.Fatalf("%d certificates of old-1 adopted, want its 3", old)
	}
	for id, v := range fx.verdicts(d, tree) {
		if v.Action != pki.Unchanged {
			t.Errorf("%s: %s (%s), want nothing to do", id, v.Action, v.Reason)
		}
	}

	fx.clock = t0.Add(61 * 24 * time.Hour)
	rep := fx.applyFleet(t, f)
	if rep.Count(pki.Deleted) != 0 || rep.Count(pki.Renewed) != 16+3 {
		t.Errorf("renewed %d, deleted %d; want 19 renewed, nothing deleted: %s", rep.Count(pki.Renewed), rep.Count(pki.Deleted), rep.Summary())
	}
	tree, _ = Observe(fx.dir, fx.clock)
	for id, c := range tree {
		if c.IssuedByNestbot {
			t.Errorf("%s carries nestbot's policy after its renewal", id)
		}
	}

	removing := withYAML(t, fx, func(y string) string {
		return strings.Replace(k8nixLayout(y), "  admins:", "  remove: [derived/old-1/]\n  admins:", 1)
	})
	d, _, err = fx.desire(t, removing)
	if err != nil || len(d.Remove) != 3 {
		t.Fatalf("pki.remove: %v, %v", d.Remove, err)
	}
	for _, r := range d.Remove {
		if r.IssuedByNestbot || !strings.HasPrefix(pki.RemovalReason(r), "NOT ISSUED BY NESTBOT") || !strings.Contains(pki.RemovalReason(r), "pki.remove lists derived/old-1/") {
			t.Errorf("removal %+v: %s", r, pki.RemovalReason(r))
		}
	}
	rep = fx.applyFleet(t, removing)
	if rep.Count(pki.Deleted) != 3 {
		t.Errorf("deleted %d, want 3", rep.Count(pki.Deleted))
	}
	if _, err := os.Stat(filepath.Join(fx.dir, "derived/old-1/k8s-kubelet.crt")); err == nil {
		t.Error("derived/old-1/k8s-kubelet.crt is still there")
	}
	d, _, _ = fx.desire(t, removing)
	if len(d.Remove) != 0 || !slices.ContainsFunc(d.Notes, func(n string) bool {
		return strings.Contains(n, "pki.remove lists derived/old-1/, which the tree does not hold")
	}) {
		t.Errorf("after the removal: removes %v, notes %q", d.Remove, d.Notes)
	}

	for entry, want := range map[string]string{
		"derived/cp-1/k8s-kubelet.crt": "but derived/cp-1/k8s-kubelet.crt is a certificate host cp-1's roles need",
		"ca/k8s.crt":                   "but ca/k8s.crt is a CA of the k8nix layout",
	} {
		bad := withYAML(t, fx, func(y string) string {
			return strings.Replace(k8nixLayout(y), "  admins:", "  remove: ["+entry+"]\n  admins:", 1)
		})
		if _, _, err := fx.desire(t, bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pki.remove %s: %v, want %q", entry, err, want)
		}
	}
}

// An adopted certificate keeps its SANs, and gains those nest.yaml names
// for it: hosts.<host>.addresses on the serving certificates.
func TestAdoptedCertificateGainsTheSANsNestYAMLNames(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	f := withYAML(t, fx, k8nixLayout)
	fx.issueAdopted(t, f)
	more := withYAML(t, fx, func(y string) string {
		return strings.Replace(k8nixLayout(y), "addresses: [192.168.0.10]", "addresses: [192.168.0.10, 192.168.0.99]", 1)
	})
	d, tree, err := fx.desire(t, more)
	if err != nil {
		t.Fatal(err)
	}
	v := fx.verdicts(d, tree)
	for id, want := range map[string]pki.Action{"cp-1/k8s-kube-apiserver": pki.Reissued, "cp-1/k8s-kubelet": pki.Reissued, "cp-1/k8s-etcd-server": pki.Reissued, "cp-1/k8s-kube-proxy": pki.Unchanged} {
		if v[id].Action != want {
			t.Errorf("%s: %s (%s), want %s", id, v[id].Action, v[id].Reason, want)
		}
	}
	before := tree["cp-1/k8s-kube-apiserver"].IPs
	fx.applyFleet(t, more)
	after, _ := Observe(fx.dir, fx.clock)
	if got, want := after["cp-1/k8s-kube-apiserver"].IPs, append(slices.Clone(before), "192.168.0.99"); !slices.Equal(got, want) {
		t.Errorf("the reissued apiserver's IPs: %v, want %v (its own, in order, then the new one)", got, want)
	}
}

// Without secrets.nix (K8Nix writes none), a key's age header says whom it
// is encrypted to: a key encrypted to exactly the set's recipients needs
// nothing; one also encrypted to someone nestbot cannot name is rekeyed,
// and the plan says who is dropped.
func TestRecipientsFromTheAgeHeader(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	f := withYAML(t, fx, k8nixLayout)
	fx.issueAdopted(t, f)
	if err := os.Remove(filepath.Join(fx.dir, pki.SecretsNixPath)); err != nil {
		t.Fatal(err)
	}
	d, tree, err := fx.desire(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if c := tree["w-1/k8s-kubelet"]; c.Recipients != nil || len(c.KeyStanzas) != 3 {
		t.Fatalf("w-1's kubelet key: recipients %q, stanzas %q; want none recorded and 3 in its header", c.Recipients, c.KeyStanzas)
	}
	for id, v := range fx.verdicts(d, tree) {
		if v.Action != pki.Unchanged {
			t.Errorf("%s: %s (%s), want nothing to do", id, v.Action, v.Reason)
		}
	}

	stranger := newSSHKey(t)
	s := pki.ByID(d.Specs)["w-1/k8s-kubelet"]
	key := decryptWith(t, fx.bot, fx.read(t, s.KeyPath))
	enc, err := Encrypt(key, append(slices.Clone(s.Recipients), stranger.pub))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(fx.dir, s.KeyPath), enc, 0o600)
	d, tree, _ = fx.desire(t, f)
	v := fx.verdicts(d, tree)["w-1/k8s-kubelet"]
	tag := pki.RecipientStanza(stranger.pub)
	if v.Action != pki.Rekeyed || !slices.Equal(v.Unknown, []string{tag}) || !strings.Contains(v.Reason, "nestbot cannot name ("+tag+")") {
		t.Errorf("a key also encrypted to a stranger: %s %q (unknown %q)", v.Action, v.Reason, v.Unknown)
	}
}

// K8Nix's one CA rotates as kubeadm's do, through the three phases, its
// subject kept byte for byte and its leaves following it; an adopted CA's
// successor is as unmarked as it was.
func TestRotateTheK8NixCA(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	f := withYAML(t, fx, k8nixLayout)
	fx.issueAdopted(t, f)
	ctx := context.Background()
	for _, phase := range []pki.RotationPhase{pki.PhasePublish, pki.PhaseReissue, pki.PhaseDrop} {
		fx.clock = fx.clock.Add(24 * time.Hour)
		d, _, err := fx.desire(t, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fx.applier.RotateCA(ctx, d.Specs, pki.K8sCA, phase, true); err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
	}
	tree, err := Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	ca := tree[pki.K8sCA]
	if ca.CommonName != "TestNest Kubernetes Cluster CA" || ca.IssuedByNestbot || ca.Rotation != nil || ca.Next != nil {
		t.Fatalf("the CA after its rotation: %+v", ca)
	}
	for id, c := range tree {
		if strings.Contains(id, "/") && (!c.Verified || c.IssuerSerial != ca.Serial) {
			t.Errorf("%s: verified %v by %s, want the new CA %s (%s)", id, c.Verified, c.IssuerSerial, ca.Serial, c.VerifyError)
		}
	}
}
