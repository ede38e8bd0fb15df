package certtree

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	osexec "os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/pki"
)

func TestApplyIssuesTheWholeSet(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	specs := fx.specs()
	rep := fx.apply(t)
	for _, s := range specs {
		if a := actions(rep)[s.ID]; a != pki.Issued {
			t.Errorf("%s: %s, want issued", s.ID, a)
		}
	}
	if got, want := rep.Summary(), fmt.Sprintf("issue %d certificates", len(specs)); got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if !strings.HasPrefix(rep.CommitMessage(), "nest: issue ") {
		t.Errorf("commit message %q", rep.CommitMessage())
	}

	// Every file where the spec says, and nothing else.
	files := fx.snapshot(t)
	want := []string{pki.SecretsNixPath}
	for _, s := range specs {
		want = append(want, s.KeyPath)
		if s.KeyOnly {
			want = append(want, pki.PublicKeyPath(s))
		} else {
			want = append(want, s.CertPath)
		}
	}
	sort.Strings(want)
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, want) {
		t.Fatalf("tree:\n got %q\nwant %q", got, want)
	}
	if !slices.Equal(rep.Written, want) {
		t.Errorf("report written %q", rep.Written)
	}
	for p, data := range files {
		if pki.IsAgeFile(p) != pki.IsAgeData(data) {
			t.Errorf("%s: age data %v", p, pki.IsAgeData(data))
		}
		if pki.ContainsPlaintextKey(data) {
			t.Errorf("%s holds a plaintext private key", p)
		}
	}
	if !bytes.Contains(files["ca/service-account.pub"], []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Errorf("service-account.pub:\n%s", files["ca/service-account.pub"])
	}

	// secrets.nix lists every .age file with exactly the spec's recipients.
	rules, err := pki.ParseSecretsNix(pki.SecretsNixPath, files[pki.SecretsNixPath])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if !slices.Equal(rules[s.KeyPath], s.Recipients) {
			t.Errorf("secrets.nix %s: %q, want %q", s.KeyPath, rules[s.KeyPath], s.Recipients)
		}
	}
	if len(rules) != len(specs) {
		t.Errorf("secrets.nix has %d rules for %d keys", len(rules), len(specs))
	}
	// The worker's keys are encrypted to the worker and the admins only.
	if r := rules["derived/w-1/kubernetes-kubelet.key.age"]; !slices.Equal(r, pki.SortedUnique([]string{fx.botRecip, fx.adminSSH.pub, fx.hostKeys["w-1"]})) {
		t.Errorf("worker kubelet recipients %q", r)
	}

	// Read back, the tree is what was declared and every chain verifies.
	obs, err := Observe(fx.dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		c, ok := obs[s.ID]
		switch {
		case !ok:
			t.Errorf("%s: not observed", s.ID)
		case !c.Verified || !c.HasKey:
			t.Errorf("%s: verified %v (%s), has key %v", s.ID, c.Verified, c.VerifyError, c.HasKey)
		case len(pki.Drift(s, &c)) > 0:
			t.Errorf("%s: drift %q", s.ID, pki.Drift(s, &c))
		case !pki.SameRecipients(c.Recipients, s.Recipients):
			t.Errorf("%s: recipients %q", s.ID, c.Recipients)
		}
	}

	// A second apply changes nothing.
	again := fx.apply(t)
	for id, a := range actions(again) {
		if a != pki.Unchanged {
			t.Errorf("second apply: %s %s", id, a)
		}
	}
	if again.Changed() || again.Summary() != "no changes" {
		t.Errorf("second apply wrote %q, removed %q", again.Written, again.Removed)
	}
	if after := fx.snapshot(t); !maps.EqualFunc(files, after, bytes.Equal) {
		t.Error("second apply changed the tree")
	}
}

// Every chain verifies with openssl for its usage, and every key decrypts
// with the age CLI using its host's SSH key and matches its certificate.
func TestApplyTreeAcceptedByOpenSSLAndAge(t *testing.T) {
	t.Parallel()
	openssl, ageBin := tool(t, "openssl"), tool(t, "age")
	fx := newFixture(t)
	specs := fx.specs()
	fx.apply(t)
	at := fmt.Sprint(t0.Unix())
	abs := func(p string) string { return filepath.Join(fx.dir, filepath.FromSlash(p)) }

	batches := map[[2]string][]string{} // (CA file, purpose) → leaves
	for _, s := range specs {
		switch {
		case s.IsCA:
			run(t, nil, openssl, "verify", "-attime", at, "-CAfile", abs(s.CertPath), abs(s.CertPath))
		case !s.KeyOnly:
			ca := path.Join("ca", pki.CADir(s.Signer)+".crt")
			for _, u := range s.Usages {
				purpose := map[string]string{pki.UsageServer: "sslserver", pki.UsageClient: "sslclient"}[u]
				k := [2]string{ca, purpose}
				batches[k] = append(batches[k], abs(s.CertPath))
			}
		}
	}
	for k, leaves := range batches {
		out := run(t, nil, openssl, append([]string{"verify", "-attime", at, "-purpose", k[1], "-CAfile", abs(k[0])}, leaves...)...)
		if n := strings.Count(string(out), ": OK"); n != len(leaves) {
			t.Errorf("openssl verify -CAfile %s -purpose %s: %d of %d OK:\n%s", k[0], k[1], n, len(leaves), out)
		}
	}
	// A leaf does not verify against a CA that did not sign it.
	if succeeds(openssl, "verify", "-attime", at, "-CAfile", abs("ca/etcd.crt"), abs("derived/cp-1/kubernetes-apiserver.crt")) {
		t.Error("openssl verified the apiserver certificate against the etcd CA")
	}

	// Each key decrypts with an SSH ed25519 key: its host's, or for the
	// cluster-wide keys an admin's; and with the bot's age identity.
	botID := writeTemp(t, "bot.txt", []byte(fx.botSecret+"\n"))
	adminID := writeTemp(t, "admin_ed25519", fx.adminSSH.private)
	for _, s := range specs {
		idFile := adminID
		if s.Host != "" {
			idFile = writeTemp(t, "host_ed25519", fx.hosts[s.Host].private)
		}
		plain := run(t, nil, ageBin, "-d", "-i", idFile, abs(s.KeyPath))
		if again := run(t, nil, ageBin, "-d", "-i", botID, abs(s.KeyPath)); !bytes.Equal(again, plain) {
			t.Errorf("%s: the bot's identity decrypts something else", s.KeyPath)
		}
		key, err := pki.ParsePrivateKeyPEM(plain)
		if err != nil {
			t.Fatalf("%s: %v", s.KeyPath, err)
		}
		pubFile := s.CertPath
		if s.KeyOnly {
			pubFile = pki.PublicKeyPath(s)
		}
		pub, err := pki.ParsePublicKeyPEM(fx.read(t, pubFile))
		if err != nil {
			t.Fatal(err)
		}
		if !pki.KeyMatches(key, pub) {
			t.Errorf("%s does not match %s", s.KeyPath, pubFile)
		}
		if s.Host != "" {
			// And the other host cannot read it.
			other := map[string]string{"cp-1": "w-1", "w-1": "cp-1"}[s.Host]
			if succeeds(ageBin, "-d", "-i", writeTemp(t, "other", fx.hosts[other].private), abs(s.KeyPath)) {
				t.Errorf("%s decrypts with %s's key", s.KeyPath, other)
			}
		}
	}
}

func TestApplyRekeysWhenRecipientsChange(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	before := fx.snapshot(t)
	plainBefore := decryptAll(t, fx, before)

	old := fx.hosts["w-1"]
	fx.hosts["w-1"] = newSSHKey(t)
	fx.hostKeys["w-1"] = fx.hosts["w-1"].pub
	rep := fx.apply(t)

	after := fx.snapshot(t)
	for _, s := range fx.specs() {
		want := pki.Unchanged
		if s.Host == "w-1" {
			want = pki.Rekeyed
		}
		if a := actions(rep)[s.ID]; a != want {
			t.Errorf("%s: %s, want %s", s.ID, a, want)
		}
		if !s.KeyOnly && !bytes.Equal(before[s.CertPath], after[s.CertPath]) {
			t.Errorf("%s: certificate changed on a rekey", s.ID)
		}
		if got := decryptWith(t, fx.bot, after[s.KeyPath]); !bytes.Equal(got, plainBefore[s.KeyPath]) {
			t.Errorf("%s: the key itself changed", s.KeyPath)
		}
		if s.Host == "w-1" {
			newID, _ := ParseIdentity(fx.hosts["w-1"].private)
			oldID, _ := ParseIdentity(old.private)
			if _, err := Decrypt(after[s.KeyPath], newID); err != nil {
				t.Errorf("%s: the new host key cannot decrypt: %v", s.KeyPath, err)
			}
			if _, err := Decrypt(after[s.KeyPath], oldID); err == nil {
				t.Errorf("%s: the replaced host key still decrypts", s.KeyPath)
			}
		}
	}
	if got := rep.Summary(); got != "rekey 3 certificates" {
		t.Errorf("summary %q", got)
	}
	rules, _ := pki.ParseSecretsNix(pki.SecretsNixPath, after[pki.SecretsNixPath])
	if !slices.Contains(rules["derived/w-1/kubernetes-kubelet.key.age"], fx.hostKeys["w-1"]) {
		t.Error("secrets.nix does not record the new recipient")
	}
}

func TestApplyRenewsWhatIsDue(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.applier.RenewBefore = 7 * 24 * time.Hour
	fx.apply(t)
	// 61 of 90 days: past 2/3 of a leaf's lifetime, nowhere near a CA's.
	fx.clock = t0.Add(61 * 24 * time.Hour)
	rep := fx.apply(t)
	for _, s := range fx.specs() {
		want := pki.Renewed
		if s.IsCA || s.KeyOnly {
			want = pki.Unchanged
		}
		r := result(rep, s.ID)
		if r.Action != want {
			t.Errorf("%s: %s (%s), want %s", s.ID, r.Action, r.Reason, want)
		}
		if want == pki.Renewed {
			if !strings.Contains(r.Reason, "2/3") {
				t.Errorf("%s: reason %q", s.ID, r.Reason)
			}
			if wantAfter := fx.clock.Add(-pki.Backdate).Add(s.Validity); !r.NotAfter.Equal(wantAfter) {
				t.Errorf("%s: not after %s, want %s", s.ID, r.NotAfter, wantAfter)
			}
		}
	}
	if !strings.HasPrefix(rep.Summary(), "renew ") {
		t.Errorf("summary %q", rep.Summary())
	}
	obs, err := Observe(fx.dir, fx.clock)
	if err != nil {
		t.Fatal(err)
	}
	for id, c := range obs {
		if !c.Verified {
			t.Errorf("%s does not verify after renewal: %s", id, c.VerifyError)
		}
	}
	// renew_before: with 80 days of notice, a 90-day leaf is due after 11 days.
	fx2 := newFixture(t)
	fx2.apply(t)
	fx2.applier.RenewBefore = 80 * 24 * time.Hour
	fx2.clock = t0.Add(11 * 24 * time.Hour)
	if r := result(fx2.apply(t), "w-1/kubelet"); r.Action != pki.Renewed || !strings.Contains(r.Reason, "renew_before") {
		t.Errorf("renew_before: %s %q", r.Action, r.Reason)
	}
}

func TestRenewalDue(t *testing.T) {
	t.Parallel()
	nb := t0
	na := t0.Add(90 * 24 * time.Hour)
	for _, tc := range []struct {
		now  time.Time
		due  bool
		want string
	}{
		{t0.Add(24 * time.Hour), false, ""},
		{t0.Add(59 * 24 * time.Hour), false, ""},
		{t0.Add(61 * 24 * time.Hour), true, "2/3"},
		{t0.Add(84 * 24 * time.Hour), true, "renew_before"},
		{t0.Add(91 * 24 * time.Hour), true, "expired"},
	} {
		due, why := pki.RenewalDue(nb, na, tc.now, 7*24*time.Hour)
		if due != tc.due || !strings.Contains(why, tc.want) {
			t.Errorf("at %s: %v %q", tc.now.Sub(t0), due, why)
		}
	}
}

func TestApplyReissuesOnDrift(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	fx.fleet.PKI.ExtraSANs = []string{"api.testnest.example"}
	rep := fx.apply(t)
	for id, a := range actions(rep) {
		want := pki.Unchanged
		if id == "cp-1/apiserver" {
			want = pki.Reissued
		}
		if a != want {
			t.Errorf("%s: %s, want %s", id, a, want)
		}
	}
	if r := result(rep, "cp-1/apiserver"); r.Reason != "dns_names changed" {
		t.Errorf("reason %q", r.Reason)
	}
	obs, _ := Observe(fx.dir, t0)
	if !slices.Contains(obs["cp-1/apiserver"].DNSNames, "api.testnest.example") {
		t.Errorf("SANs %q", obs["cp-1/apiserver"].DNSNames)
	}
}

// TestApplyKeepsSANsWhileFactsAreUnknown: without the hosts' live
// addresses (a host off the tailnet, or certs status, which observes
// nothing), a certificate is judged by the SANs that are known: it has
// more, and is left alone; it lacks one, and is reissued.
func TestApplyKeepsSANsWhileFactsAreUnknown(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	unknown := pki.Set(fx.fleet, fx.hostKeys, nil)
	obs, err := Observe(fx.dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range unknown {
		c := obs[s.ID]
		if d := pki.Drift(s, &c); len(d) > 0 {
			t.Errorf("%s: drift %q against the known SANs", s.ID, d)
		}
	}
	fx.facts = nil
	if rep := fx.apply(t); rep.Count(pki.Reissued) != 0 {
		t.Errorf("reissued without the live facts: %s", rep.Summary())
	}
	fx.fleet.PKI.ExtraSANs = []string{"api.testnest.example"} // a SAN that is known
	rep := fx.apply(t)
	if r := result(rep, "cp-1/apiserver"); r.Action != pki.Reissued || r.Reason != "dns_names changed" {
		t.Errorf("apiserver: %s %q", r.Action, r.Reason)
	}
}

func TestApplyNewCAReissuesItsLeaves(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	for _, p := range []string{"ca/etcd.crt", "ca/etcd.key.age"} {
		os.Remove(filepath.Join(fx.dir, p))
	}
	rep := fx.apply(t)
	for _, s := range fx.specs() {
		want := pki.Unchanged
		switch {
		case s.ID == pki.EtcdCA:
			want = pki.Issued
		case s.Signer == pki.EtcdCA:
			want = pki.Reissued
		}
		if r := result(rep, s.ID); r.Action != want {
			t.Errorf("%s: %s, want %s", s.ID, r.Action, want)
		}
	}
	obs, err := Observe(fx.dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	for id, c := range obs {
		if !c.Verified {
			t.Errorf("%s: %s", id, c.VerifyError)
		}
	}
}

func TestApplyHoldsADueCA(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	fx.clock = t0.Add(4 * 365 * 24 * time.Hour) // past 2/3 of the CAs' five years
	rep := fx.apply(t)
	for _, id := range []string{pki.CA, pki.EtcdCA, pki.FrontProxyCA} {
		if r := result(rep, id); r.Action != pki.Held || !strings.Contains(r.Reason, "rotate-ca") {
			t.Errorf("%s: %s %q", id, r.Action, r.Reason)
		}
	}
	if r := result(rep, "w-1/kubelet"); r.Action != pki.Renewed {
		t.Errorf("leaf under a held CA: %s", r.Action)
	}
	if !strings.Contains(rep.CommitMessage(), "- held ca: ") {
		t.Errorf("commit message does not list the held CA:\n%s", rep.CommitMessage())
	}
}

func TestApplyDeletesWhatNoHostNeeds(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	delete(fx.fleet.Hosts, "w-1")
	rep := fx.apply(t)
	if got := rep.Count(pki.Deleted); got != 3 {
		t.Errorf("deleted %d, want w-1's 3", got)
	}
	for p := range fx.snapshot(t) {
		if strings.HasPrefix(p, "derived/w-1/") {
			t.Errorf("%s left behind", p)
		}
	}
	rules, _ := pki.ParseSecretsNix(pki.SecretsNixPath, fx.read(t, pki.SecretsNixPath))
	for p := range rules {
		if strings.HasPrefix(p, "derived/w-1/") {
			t.Errorf("secrets.nix still lists %s", p)
		}
	}
}

func TestApplyFailsBeforeWriting(t *testing.T) {
	t.Parallel()
	t.Run("no identity to sign with", func(t *testing.T) {
		fx := newFixture(t)
		fx.apply(t)
		os.Remove(filepath.Join(fx.dir, "derived/w-1/kubernetes-kubelet.crt"))
		before := fx.snapshot(t)
		fx.applier.Identity = nil
		_, err := fx.applier.Apply(context.Background(), fx.specs())
		if err == nil || !strings.Contains(err.Error(), "NEST_AGE_IDENTITY") || !strings.Contains(err.Error(), "ca/kubernetes.key.age") {
			t.Fatalf("error %v", err)
		}
		if !maps.EqualFunc(before, fx.snapshot(t), bytes.Equal) {
			t.Error("a failed apply changed the tree")
		}
	})
	t.Run("an identity that is not a recipient", func(t *testing.T) {
		fx := newFixture(t)
		fx.apply(t)
		fx.clock = t0.Add(80 * 24 * time.Hour)
		before := fx.snapshot(t)
		fx.applier.Identity, _, _ = newAgeIdentity(t)
		_, err := fx.applier.Apply(context.Background(), fx.specs())
		if err == nil || !strings.Contains(err.Error(), "pki.admins") {
			t.Fatalf("error %v", err)
		}
		if !maps.EqualFunc(before, fx.snapshot(t), bytes.Equal) {
			t.Error("a failed apply changed the tree")
		}
	})
	t.Run("a bad recipient", func(t *testing.T) {
		fx := newFixture(t)
		fx.hostKeys["w-1"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAbroken"
		_, err := fx.applier.Apply(context.Background(), fx.specs())
		if err == nil || !strings.Contains(err.Error(), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAbroken") {
			t.Fatalf("error %v", err)
		}
		if len(fx.snapshot(t)) != 0 {
			t.Error("files written")
		}
	})
	t.Run("a broken secrets.nix", func(t *testing.T) {
		fx := newFixture(t)
		fx.apply(t)
		os.WriteFile(filepath.Join(fx.dir, pki.SecretsNixPath), []byte("let x = 1; in {}\n"), 0o644)
		_, err := fx.applier.Apply(context.Background(), fx.specs())
		if err == nil || !strings.Contains(err.Error(), "secrets.nix:1:1") {
			t.Fatalf("error %v", err)
		}
	})
}

// failStage is a tree on disk whose staging fails for one file, after it
// made the file's directories: its name is made too long for the file
// system.
type failStage struct {
	Dir
	name string
}

func (f failStage) Stage() (Staging, error) {
	s, err := f.Dir.Stage()
	return failStaging{s, f.name}, err
}

type failStaging struct {
	Staging
	name string
}

func (f failStaging) Add(name string, data []byte) error {
	if name == f.name {
		name += strings.Repeat("x", 300)
	}
	return f.Staging.Add(name, data)
}

// TestApplyStagingFailureLeavesNothing: files are written aside as they are
// issued; when one cannot be, the others are removed with the directories
// staging made, and the tree is as it was.
func TestApplyStagingFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	all := func(t *testing.T, dir string) []string {
		var out []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if p != dir {
				out = append(out, strings.TrimPrefix(p, dir+"/"))
			}
			return err
		})
		return out
	}
	t.Run("an empty tree", func(t *testing.T) {
		fx := newFixture(t)
		fx.applier.Files = failStage{Dir(fx.dir), "derived/w-1/kubernetes-kubelet.crt"}
		_, err := fx.applier.Apply(context.Background(), fx.specs())
		if err == nil || !strings.Contains(err.Error(), "nothing written") || !strings.Contains(err.Error(), "derived/w-1/kubernetes-kubelet.crtxxx") || !strings.Contains(err.Error(), "file name too long") {
			t.Fatalf("error %v", err)
		}
		if left := all(t, fx.dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})
	t.Run("a tree being renewed", func(t *testing.T) {
		fx := newFixture(t)
		fx.apply(t)
		fx.clock = t0.Add(300 * 24 * time.Hour) // every leaf is due
		before, entries := fx.snapshot(t), all(t, fx.dir)
		fx.applier.Files = failStage{Dir(fx.dir), "derived/cp-1/kubernetes-apiserver.key.age"}
		if _, err := fx.applier.Apply(context.Background(), fx.specs()); err == nil || !strings.Contains(err.Error(), "file name too long") {
			t.Fatalf("error %v", err)
		}
		if !maps.EqualFunc(before, fx.snapshot(t), bytes.Equal) {
			t.Error("a failed apply changed the tree")
		}
		if after := all(t, fx.dir); !slices.Equal(entries, after) {
			t.Errorf("entries before %d, after %d: %v", len(entries), len(after), after)
		}
		fx.applier.Files = Dir(fx.dir)
		if rep := fx.apply(t); rep.Count(pki.Renewed) == 0 {
			t.Errorf("the next apply renewed nothing: %s", rep.Summary())
		}
	})
}

func TestApplyReissuesAKeyThatDoesNotMatch(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.apply(t)
	// Swap two leaves' keys, then change recipients so the apply decrypts them.
	a, b := filepath.Join(fx.dir, "derived/w-1/kubernetes-kubelet.key.age"), filepath.Join(fx.dir, "derived/w-1/kubernetes-kube-proxy.key.age")
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	os.WriteFile(a, db, 0o644)
	os.WriteFile(b, da, 0o644)
	fx.hosts["w-1"] = newSSHKey(t)
	fx.hostKeys["w-1"] = fx.hosts["w-1"].pub
	rep := fx.apply(t)
	for _, id := range []string{"w-1/kubelet", "w-1/kube-proxy"} {
		if r := result(rep, id); r.Action != pki.Reissued || !strings.Contains(r.Reason, "does not match") {
			t.Errorf("%s: %s %q", id, r.Action, r.Reason)
		}
	}
	if r := result(rep, "w-1/kubelet-serving"); r.Action != pki.Rekeyed {
		t.Errorf("kubelet-serving: %s", r.Action)
	}
}

// TestDirStageFailureLeavesNothing: a Stage that fails after it made
// directories (a new host's, staged whole) removes them, up to (not
// including) the tree's root, even when the root is not a clean path.
func TestDirStageFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d := Dir(root + "/./")
	st, err := d.StageAll(map[string][]byte{
		"derived/new-host/kubernetes-kubelet.crt":               []byte("a certificate\n"),
		"derived/new-host/" + strings.Repeat("x", 300) + ".crt": []byte("not a key\n"),
	})
	if err == nil || st != nil || !strings.Contains(err.Error(), "file name too long") {
		t.Fatalf("Stage = %v, %v; want an error and nothing staged", st, err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("the root itself was removed: %v", err)
	}
}

// TestDirStagesANewDirectoryWhole: the files of a directory that does not
// exist are staged in a hidden directory beside it, so that until Commit
// the tree shows none of them and then all; files in a directory that
// exists are staged beside their names. Nothing staged is left after.
func TestDirStagesANewDirectoryWhole(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d := Dir(root)
	if err := d.WriteFile("derived/old-host/kubernetes-kubelet.crt", []byte("old\n")); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"derived/old-host/kubernetes-kubelet.crt":    []byte("renewed\n"),
		"derived/new-host/kubernetes-kubelet.crt":    []byte("kubelet\n"),
		"derived/new-host/kubernetes-kube-proxy.crt": []byte("kube-proxy\n"),
		"derived/new-host/etcd/deeper/etcd-peer.crt": []byte("peer\n"),
		"ca/kubernetes.crt":                          []byte("ca\n"),
	}
	st, err := d.StageAll(files)
	if err != nil {
		t.Fatal(err)
	}
	visible := func() []string {
		var out []string
		filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && !strings.Contains(p, "/.") {
				data, _ := os.ReadFile(p)
				out = append(out, strings.TrimPrefix(p, root+"/")+"="+strings.TrimSpace(string(data)))
			}
			return err
		})
		slices.Sort(out)
		return out
	}
	if got := visible(); !slices.Equal(got, []string{"derived/old-host/kubernetes-kubelet.crt=old"}) {
		t.Fatalf("staged, before Commit the tree shows %q", got)
	}
	if err := st.Commit("derived/new-host/kubernetes-kubelet.crt"); err != nil {
		t.Fatal(err)
	}
	want := []string{"derived/new-host/etcd/deeper/etcd-peer.crt=peer", "derived/new-host/kubernetes-kube-proxy.crt=kube-proxy",
		"derived/new-host/kubernetes-kubelet.crt=kubelet", "derived/old-host/kubernetes-kubelet.crt=old"}
	if got := visible(); !slices.Equal(got, want) {
		t.Fatalf("one file of the new host committed: the tree shows %q, want its whole directory %q", got, want)
	}
	for name := range files {
		if err := st.Commit(name); err != nil {
			t.Fatal(err)
		}
	}
	st.Discard()
	var hidden []string
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(e.Name(), ".") {
			hidden = append(hidden, p)
		}
		return err
	})
	if len(hidden) > 0 {
		t.Errorf("staging left %q", hidden)
	}
	if got := visible(); len(got) != len(files) || !slices.Contains(got, "derived/old-host/kubernetes-kubelet.crt=renewed") {
		t.Errorf("after Commit: %q", got)
	}
	for _, p := range []string{"derived/new-host", "derived/new-host/etcd/deeper", "derived/new-host/kubernetes-kubelet.crt"} {
		fi, err := os.Stat(filepath.Join(root, p))
		if want := fs.FileMode(0o755); err != nil || fi.IsDir() && fi.Mode().Perm() != want || !fi.IsDir() && fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v, %v", p, fi.Mode(), err)
		}
	}
}

// TestDirStagedDirectoryThatAppearedMeanwhile: should a new directory be
// made by someone else between Stage and Commit, the staged files are put
// into it one by one, beside what is there.
func TestDirStagedDirectoryThatAppearedMeanwhile(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d := Dir(root)
	st, err := d.StageAll(map[string][]byte{"derived/new-host/kubernetes-kubelet.crt": []byte("kubelet\n")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "derived/new-host"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "derived/new-host/README"), []byte("someone's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit("derived/new-host/kubernetes-kubelet.crt"); err != nil {
		t.Fatal(err)
	}
	st.Discard()
	for name, want := range map[string]string{"derived/new-host/kubernetes-kubelet.crt": "kubelet\n", "derived/new-host/README": "someone's\n"} {
		if got, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "derived")); len(entries) != 1 {
		t.Errorf("derived/ holds %v, want only new-host", entries)
	}
}

func TestDirRefusesPlaintextKeys(t *testing.T) {
	t.Parallel()
	d := Dir(t.TempDir())
	is := &pki.Issuer{Now: func() time.Time { return t0 }}
	kp, err := is.Issue(pki.Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := kp.KeyPEM()
	for name, data := range map[string][]byte{
		"ca/kubernetes.crt":     append(append([]byte{}, kp.CertPEM...), keyPEM...),
		"ca/kubernetes.key":     keyPEM,
		"ca/kubernetes.key.age": keyPEM, // named .age, but not encrypted
	} {
		if err := d.WriteFile(name, data); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if entries, _ := os.ReadDir(string(d)); len(entries) != 0 {
		t.Errorf("refused writes left %d entries", len(entries))
	}
	if err := d.WriteFile("../escape.crt", kp.CertPEM); err == nil {
		t.Error("wrote outside the tree")
	}
	if err := d.WriteFile("ca/kubernetes.crt", kp.CertPEM); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(string(d), "ca"))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func result(rep *pki.Report, id string) pki.Result {
	for _, r := range rep.Results {
		if r.ID == id {
			return r
		}
	}
	return pki.Result{}
}

func decryptWith(t testing.TB, id *Identity, data []byte) []byte {
	t.Helper()
	plain, err := Decrypt(data, id)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

func decryptAll(t testing.TB, fx *fixture, files map[string][]byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for p, data := range files {
		if pki.IsAgeFile(p) {
			out[p] = decryptWith(t, fx.bot, data)
		}
	}
	return out
}

// succeeds runs a command and reports whether it exited 0.
func succeeds(name string, args ...string) bool {
	return osexec.Command(name, args...).Run() == nil
}
