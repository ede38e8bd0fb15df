package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The stanzas KeyStanzas reads are those the age CLI writes, binary (as
// rage -e -o writes K8Nix's keys) and armored, and RecipientStanza names
// each recipient as its stanza does: the ssh-ed25519 tag included.
func TestKeyStanzasOfTheAgeCLI(t *testing.T) {
	t.Parallel()
	ageBin := tool(t, "age")
	x25519, _ := newAgeIdentity(t)
	host := newSSHKey(t)
	recipients := writeTemp(t, "recipients", []byte(x25519+"\n"+host.pub+"\n"))
	want := []string{RecipientStanza(host.pub), RecipientStanza(x25519)}
	slices.Sort(want)
	for _, armor := range []bool{false, true} {
		args := []string{"-e", "-R", recipients}
		if armor {
			args = append(args, "-a")
		}
		enc := run(t, []byte("-----BEGIN RSA PRIVATE KEY-----\n"), ageBin, args...)
		got, err := KeyStanzas(enc)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("armor %v: %q, %v; want %q", armor, got, err, want)
		}
		if differ, unknown := (KeyRecipients{Stanzas: got}).Differ([]string{host.pub + " a comment", x25519}); differ || len(unknown) > 0 {
			t.Errorf("armor %v: the key's own recipients differ from its header (unknown %q)", armor, unknown)
		}
		if differ, unknown := (KeyRecipients{Stanzas: got}).Differ([]string{x25519}); !differ || !slices.Equal(unknown, []string{RecipientStanza(host.pub)}) {
			t.Errorf("armor %v: without the host's key: differ %v, unknown %q", armor, differ, unknown)
		}
	}
	if !strings.HasPrefix(RecipientStanza(host.pub), "ssh-ed25519 ") || RecipientStanza(x25519) != "X25519" || RecipientStanza("nonsense") != "" {
		t.Errorf("stanzas: %q %q %q", RecipientStanza(host.pub), RecipientStanza(x25519), RecipientStanza("nonsense"))
	}
}

// rage adds grease stanzas, which name no recipient; a file that is not an
// age file, or whose header is cut short, has no stanzas.
func TestKeyStanzasSkipsGreaseAndRefusesWhatIsNotAge(t *testing.T) {
	t.Parallel()
	header := "age-encryption.org/v1\n-> X25519 abc\nbody\n-> 8-grease x y\nzz\n-> ssh-ed25519 QiUr1g share\nbody\n--- mac\n"
	got, err := KeyStanzas([]byte(header + "payload"))
	if err != nil || !slices.Equal(got, []string{"X25519", "ssh-ed25519 QiUr1g"}) {
		t.Errorf("%q, %v", got, err)
	}
	for _, bad := range []string{"", "-----BEGIN RSA PRIVATE KEY-----\n", "age-encryption.org/v1\n-> X25519 abc\n", "age-encryption.org/v1\n-> \n---\n"} {
		if got, err := KeyStanzas([]byte(bad)); err == nil {
			t.Errorf("%q read as stanzas %q", bad, got)
		}
	}
}

// KeyStanzas reads files a pull request may hold: whatever they are, it
// answers, within the first 64 KiB.
func FuzzKeyStanzas(f *testing.F) {
	f.Add([]byte("age-encryption.org/v1\n-> X25519 abc\nbody\n--- mac\n"))
	f.Add([]byte("-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"))
	f.Add(bytes.Repeat([]byte("-> a\n"), 100))
	f.Fuzz(func(t *testing.T, data []byte) {
		stanzas, err := KeyStanzas(data)
		if err == nil && !slices.IsSorted(stanzas) {
			t.Errorf("stanzas not sorted: %q", stanzas)
		}
	})
}

// referenceStanza is RecipientStanza as golang.org/x/crypto/ssh reads the key.
func referenceStanza(r string) string {
	r = NormalizeRecipient(r)
	if strings.HasPrefix(r, "age1") {
		return "X25519"
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r))
	if err != nil {
		return ""
	}
	h := sha256.Sum256(pub.Marshal())
	return pub.Type() + " " + base64.RawStdEncoding.EncodeToString(h[:4])
}

// pki reads SSH public keys itself (it imports no x/crypto/ssh): for keys
// of every kind, written as they are and mangled, its stanza is the one
// x/crypto/ssh's parse gives.
func TestSSHPublicKeyAgreesWithXCryptoSSH(t *testing.T) {
	t.Parallel()
	authorized := func(k crypto.PublicKey) string {
		pub, err := ssh.NewPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, rs, ec := authorized(edPub), authorized(&rsaKey.PublicKey), authorized(&ecKey.PublicKey)
	blob := func(line string) []byte {
		b, err := base64.StdEncoding.DecodeString(strings.Fields(line)[1])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	line := func(typ string, b []byte) string { return typ + " " + base64.StdEncoding.EncodeToString(b) }
	wire := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = appendSSHString(out, p)
		}
		return out
	}
	e := big.NewInt(int64(rsaKey.E)).Bytes()
	n := append([]byte{0}, rsaKey.N.Bytes()...)
	edBlob := blob(ed)
	cases := []string{
		ed, ed + " admin@laptop", rs, rs + " ops", ec, ec + " ec@host",
		"restrict " + ed, `from="10.0.0.1",no-pty ` + ed + " who", "ssh-rsa " + strings.Fields(ed)[1], // type mismatch
		line("ssh-ed25519", edBlob[:len(edBlob)-1]),                          // cut short
		line("ssh-ed25519", append(slices.Clone(edBlob), 0)),                 // trailing byte
		line("ssh-rsa", wire([]byte("ssh-rsa"), []byte{0, 0, 1, 0, 1}, n)),   // an exponent not minimal
		line("ssh-rsa", wire([]byte("ssh-rsa"), []byte{4}, n)),               // even exponent
		line("ssh-rsa", wire([]byte("ssh-rsa"), e, n[:len(n)-1], []byte{1})), // trailing field
		"ssh-ed25519 not-base64", "ssh-ed25519", "", "nonsense", "age1qqqq",
	}
	for _, k := range []string{ed, rs, ec} {
		if RecipientStanza(k) == "" {
			t.Errorf("no stanza for %.40q", k)
		}
	}
	for _, c := range cases {
		if got, want := RecipientStanza(c), referenceStanza(c); got != want {
			t.Errorf("RecipientStanza(%.60q) = %q, x/crypto/ssh gives %q", c, got, want)
		}
	}
}
