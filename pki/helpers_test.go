package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/nest"
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

// newAgeIdentity is a generated age X25519 identity: its recipient and secret.
func newAgeIdentity(t testing.TB) (string, string) {
	t.Helper()
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return x.Recipient().String(), x.String()
}

// fixture is a small fleet (one control plane, one worker) with real host
// keys and two admins: an age X25519 identity that is also the bot's, and
// an SSH ed25519 key.
type fixture struct {
	fleet     *nest.Fleet
	hostKeys  map[string]string
	hosts     map[string]sshKey
	facts     map[string]HostFacts
	botRecip  string
	botSecret string
	adminSSH  sshKey // a second admin, by SSH key
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
	botRecip, botSecret := newAgeIdentity(t)
	adminSSH := newSSHKey(t)
	f, err := nest.Parse("testnest.yaml", fmt.Appendf(nil, fixtureYAML, botRecip, adminSSH.pub))
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{fleet: f, hostKeys: map[string]string{}, hosts: map[string]sshKey{}, facts: map[string]HostFacts{},
		botRecip: botRecip, botSecret: botSecret, adminSSH: adminSSH}
	for i, h := range []string{"cp-1", "w-1"} {
		k := newSSHKey(t)
		fx.hosts[h], fx.hostKeys[h] = k, k.pub
		fx.facts[h] = HostFacts{
			IPs:       []netip.Addr{netip.MustParseAddr(fmt.Sprintf("100.64.0.%d", i+1))},
			DNSName:   h + ".testnest.ts.net",
			OnTailnet: true, PrivateIPs: true,
		}
	}
	return fx
}

func (fx *fixture) specs() []Spec { return Set(fx.fleet, fx.hostKeys, fx.facts) }

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
