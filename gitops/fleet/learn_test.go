package fleet

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/pki/certtree"
	"github.com/ducksnest/nestbot/reconcile"
)

// TestApplyCertsWarnsWhileSSHIsDownThenPinsAndRekeys plays a new host that
// is on the tailnet but whose sshd is not up yet, with no pinned key: the
// certificate apply still issues everything, warns about that host and
// encrypts its keys to the admins only; once its SSH answers, the next
// apply pins its key and rekeys its keys to it.
func TestApplyCertsWarnsWhileSSHIsDownThenPinsAndRekeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a lab")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const newHost = "laptop-ultra"

	// The example, with the bot's identity among the admins (to rekey, it
	// decrypts) and laptop-ultra's key not pinned.
	repo := t.TempDir()
	bot, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	file := testkit.ExampleFleet(t, repo, bot.Recipient().String())
	f, err := nest.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(repo, filepath.FromSlash(f.PKI.Dir))
	pinFile := filepath.Join(certs, certtree.HostKeyPath(newHost))
	if err := os.Remove(pinFile); err != nil {
		t.Fatal(err)
	}
	admins := slices.Sorted(slices.Values(f.PKI.Admins))
	if len(admins) != 2 {
		t.Fatalf("admins %v, want the example's and the bot's", admins)
	}

	start := time.Now()
	l, err := lab.Up(lab.Options{Fleet: f, PendingDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ultra, ok := l.Host(newHost)
	if !ok {
		t.Fatalf("the lab booted no %s", newHost)
	}
	t.Logf("lab up in %v", time.Since(start).Round(time.Millisecond))

	env := map[string]string{"NEST_AGE_IDENTITY": bot.String()}
	for _, kv := range l.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	opts := Options{
		Getenv:  func(k string) string { return env[k] },
		Tailnet: TailnetOptions{ControlURL: l.Tailnet.ControlURL(), StateDir: t.TempDir()},
		Planes:  []reconcile.Plane{reconcile.PlaneTailnet, reconcile.PlaneHosts, reconcile.PlanePKI},
		// laptop-ultra's probe, with its SSH down, fails when this ends.
		ProbeTimeout: 5 * time.Second,
	}
	// observe starts an apply as the CLI does: nest.yaml and the pinned
	// keys read afresh, the fleet observed.
	observe := func() *Session {
		t.Helper()
		d, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Observe(ctx, d, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		if !s.OnTailnet() {
			t.Fatal("the session did not join the lab's tailnet")
		}
		return s
	}
	applyCerts := func(s *Session) *pki.Report {
		t.Helper()
		start := time.Now()
		rep, err := s.ApplyCerts(ctx)
		if err != nil {
			t.Fatalf("certificate apply: %v", err)
		}
		t.Logf("certificate apply in %v: %s; warnings %q", time.Since(start).Round(time.Millisecond), rep.Summary(), rep.Warnings)
		return rep
	}
	hostKey, err := ssh.NewPublicKey(lab.HostKey(newHost).Public())
	if err != nil {
		t.Fatal(err)
	}
	hostRecipient := pki.NormalizeRecipient(string(ssh.MarshalAuthorizedKey(hostKey)))
	block, err := ssh.MarshalPrivateKey(lab.HostKey(newHost), "")
	if err != nil {
		t.Fatal(err)
	}
	hostIdentity, err := certtree.ParseIdentity(pem.EncodeToMemory(block))
	if err != nil {
		t.Fatal(err)
	}
	// keysOf observes the tree and returns host's certificates that have a
	// key; it checks that the host's own SSH key decrypts each one exactly
	// when decrypts says so, and that the bot always can.
	keysOf := func(host string, decrypts bool) map[string]pki.ObservedCert {
		t.Helper()
		observed, err := certtree.Observe(certs, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]pki.ObservedCert{}
		for id, o := range observed {
			if !strings.HasPrefix(id, host+"/") || !o.HasKey {
				continue
			}
			out[id] = o
			data, err := os.ReadFile(filepath.Join(certs, filepath.FromSlash(o.KeyPath)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := certtree.Decrypt(data, hostIdentity); (err == nil) != decrypts {
				t.Errorf("%s decrypts with %s's SSH host key: %v, want %v", o.KeyPath, newHost, err == nil, decrypts)
			}
			botID, err := certtree.ParseIdentity([]byte(bot.String()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := certtree.Decrypt(data, botID); err != nil {
				t.Errorf("%s does not decrypt with the bot's identity: %v", o.KeyPath, err)
			}
		}
		if len(out) == 0 {
			t.Fatalf("no certificate of %s with a key in the tree", host)
		}
		return out
	}

	// 1. laptop-ultra is on the tailnet and answered the observation's
	// probe; then its sshd goes down, before the certificate apply.
	s := observe()
	if err := s.HostErrors()[newHost]; err != nil {
		t.Fatalf("%s did not answer before its SSH went down: %v", newHost, err)
	}
	if err := ultra.SetFaults(host.Faults{SSHDown: true}); err != nil {
		t.Fatal(err)
	}
	rep := applyCerts(s)
	if len(rep.Warnings) != 1 || !strings.HasPrefix(rep.Warnings[0], newHost+": host key not learned, so its keys are encrypted to the admins only") ||
		!strings.Contains(rep.Warnings[0], "refused") { // nothing listens on port 22 while sshd and Tailscale SSH are down
		t.Errorf("warnings %q, want one that names %s", rep.Warnings, newHost)
	}
	for _, secret := range []string{bot.String(), l.AuthKey} {
		if strings.Contains(strings.Join(rep.Warnings, "\n"), secret) {
			t.Error("a warning holds a secret")
		}
	}
	if n := rep.Count(pki.Issued); n != len(rep.Results) {
		t.Errorf("issued %d of %d certificates on an empty tree:\n%+v", n, len(rep.Results), rep.Results)
	}
	if _, err := os.Stat(pinFile); err == nil || slices.Contains(rep.Written, certtree.HostKeyPath(newHost)) {
		t.Errorf("%s was pinned although its SSH was down (written %v)", newHost, rep.Written)
	}
	for id, o := range keysOf(newHost, false) {
		if !slices.Equal(o.Recipients, admins) {
			t.Errorf("%s is encrypted to %v, want the admins only %v", id, o.Recipients, admins)
		}
	}
	// A host whose key was pinned has its keys encrypted to it as well.
	for id, o := range keysOf("laptop-firebat", false) {
		if len(o.Recipients) != len(admins)+1 {
			t.Errorf("%s is encrypted to %v, want the admins and laptop-firebat", id, o.Recipients)
		}
	}

	// 2. Its sshd is up: the next apply learns and pins its key, and
	// re-encrypts its keys (the same keys) to the admins and it.
	if err := ultra.SetFaults(host.Faults{}); err != nil {
		t.Fatal(err)
	}
	rep = applyCerts(observe())
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings %q once %s answers, want none", rep.Warnings, newHost)
	}
	if pin, err := os.ReadFile(pinFile); err != nil || strings.TrimSpace(string(pin)) != hostRecipient {
		t.Errorf("%s = %q (%v), want the key %s presents: %s", certtree.HostKeyPath(newHost), pin, err, newHost, hostRecipient)
	}
	if !slices.Contains(rep.Written, certtree.HostKeyPath(newHost)) {
		t.Errorf("the report's written files %v miss %s", rep.Written, certtree.HostKeyPath(newHost))
	}
	keys := keysOf(newHost, true)
	if rep.Count(pki.Rekeyed) == 0 {
		t.Errorf("nothing rekeyed: %s", rep.Summary())
	}
	for _, r := range rep.Results {
		_, ofNewHost := keys[r.ID]
		if (r.Action == pki.Rekeyed) != ofNewHost || r.Action != pki.Rekeyed && r.Action != pki.Unchanged {
			t.Errorf("%s: %s (%s); want %s's keys rekeyed and the rest unchanged", r.ID, r.Action, r.Reason, newHost)
		}
	}
	want := slices.Sorted(slices.Values(append(slices.Clone(admins), hostRecipient)))
	for id, o := range keys {
		if !slices.Equal(o.Recipients, want) {
			t.Errorf("%s is encrypted to %v after the rekey, want %v", id, o.Recipients, want)
		}
	}
}
