package certtree

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"filippo.io/age"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"golang.org/x/crypto/ssh"
)

// t0 is the fixed clock of the tests.
var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// sshKey is a generated SSH ed25519 key pair.
type sshKey struct {
	pub     string // "ssh-ed25519 AAAA…"
	private []byte // OpenSSH PEM
}

func newSSHKey(t testing.TB) sshKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test host key")
	if err != nil {
		t.Fatal(err)
	}
	return sshKey{pub: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), private: pem.EncodeToMemory(block)}
}

// newAgeIdentity is a generated age X25519 identity, its Identity and recipient.
func newAgeIdentity(t testing.TB) (*Identity, string, string) {
	t.Helper()
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity([]byte("# created: test\n" + x.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id, x.Recipient().String(), x.String()
}

// fixture is a small fleet (one control plane, one worker) with real host
// keys and two admins: an age X25519 identity that is also the bot's, and
// an SSH ed25519 key.
type fixture struct {
	fleet     *nest.Fleet
	hostKeys  map[string]string
	hosts     map[string]sshKey
	facts     map[string]pki.HostFacts
	bot       *Identity
	botRecip  string
	botSecret string
	adminSSH  sshKey // a second admin, by SSH key
	dir       string
	clock     time.Time
	applier   *Applier
}

const fixtureYAML = `version: 1
name: testnest
tailnet: {domain: testnest.ts.net, tags: [tag:nest]}
hosts:
  cp-1: {roles: [control-plane], addresses: [192.168.0.10]}
  w-1:  {roles: [worker], addresses: [192.168.0.21]}
pki:
  dir: certs
  leaf_validity: 2160h   # 90 days
  ca_validity: 43800h    # 5 years
  renew_before: 720h
  admins: [%s, "%s admin@laptop"]
`

func newFixture(t testing.TB) *fixture {
	t.Helper()
	bot, botRecip, botSecret := newAgeIdentity(t)
	adminSSH := newSSHKey(t)
	f, err := nest.Parse("testnest.yaml", fmt.Appendf(nil, fixtureYAML, botRecip, adminSSH.pub))
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{fleet: f, hostKeys: map[string]string{}, hosts: map[string]sshKey{}, facts: map[string]pki.HostFacts{},
		bot: bot, botRecip: botRecip, botSecret: botSecret, adminSSH: adminSSH, dir: t.TempDir(), clock: t0}
	for i, h := range []string{"cp-1", "w-1"} {
		k := newSSHKey(t)
		fx.hosts[h], fx.hostKeys[h] = k, k.pub
		fx.facts[h] = pki.HostFacts{
			IPs:       []netip.Addr{netip.MustParseAddr(fmt.Sprintf("100.64.0.%d", i+1))},
			DNSName:   h + ".testnest.ts.net",
			OnTailnet: true, PrivateIPs: true,
		}
	}
	fx.applier = &Applier{
		Files:       Dir(fx.dir),
		Identity:    bot,
		Issuer:      &pki.Issuer{Now: func() time.Time { return fx.clock }},
		RenewBefore: f.PKI.RenewBefore.Duration,
	}
	return fx
}

func (fx *fixture) specs() []pki.Spec { return pki.Set(fx.fleet, fx.hostKeys, fx.facts) }

func (fx *fixture) apply(t testing.TB) *pki.Report {
	t.Helper()
	rep, err := fx.applier.Apply(context.Background(), fx.specs())
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return rep
}

func (fx *fixture) read(t testing.TB, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fx.dir, filepath.FromSlash(p)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// snapshot reads every file of the tree.
func (fx *fixture) snapshot(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := fs.WalkDir(os.DirFS(fx.dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		out[p] = fx.read(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func actions(rep *pki.Report) map[string]pki.Action {
	m := map[string]pki.Action{}
	for _, r := range rep.Results {
		m[r.ID] = r.Action
	}
	return m
}

// tool returns the path of a command-line tool, or skips the test without
// it (fails, in CI).
func tool(t testing.TB, name string) string {
	t.Helper()
	return fixtures.Require(t, name)
}

// run runs a command and returns its stdout, failing the test with its stderr.
func run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// memFiles is a tree in memory.
type memFiles struct {
	mu sync.Mutex
	m  fstest.MapFS
}

func newMemFiles() *memFiles { return &memFiles{m: fstest.MapFS{}} }

func (f *memFiles) Open(name string) (fs.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.Open(name)
}

func (f *memFiles) WriteFile(name string, data []byte) error {
	if err := checkWrite(name, data); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[name] = &fstest.MapFile{Data: bytes.Clone(data), Mode: 0o644}
	return nil
}

func (f *memFiles) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, name)
	return nil
}
