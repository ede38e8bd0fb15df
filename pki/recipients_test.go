package pki

import (
	"bytes"
	"slices"
	"strings"
	"testing"
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
