package pki

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"
)

// A key's recipients are known from secrets.nix when it lists the key. A
// tree that was not written by nestbot (K8Nix's certToolkit encrypts with
// rage and writes no rules file) has none: the key's age header is then
// what is known of them. Each recipient leaves one stanza there (age's
// format, age-encryption.org/v1): "X25519" for an age1… recipient, which
// does not say whose it is, and "ssh-ed25519 <tag>" for an SSH key, the
// tag being the first 4 bytes of the SHA-256 of the key (agessh's
// sshFingerprint), which does.

// MaxKeyHeader bounds what is read of a key file for its header.
const MaxKeyHeader = 64 << 10

// KeyStanzas reads the recipient stanzas of an age file's header, armored
// or binary, in the spelling RecipientStanza gives: "X25519",
// "ssh-ed25519 QiUr1g", "scrypt", … Grease stanzas (rage adds them) are
// left out. It reads the header only.
func KeyStanzas(data []byte) ([]string, error) {
	var src io.Reader = bytes.NewReader(data)
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); bytes.HasPrefix(trimmed, []byte(ArmorHeader)) {
		src = armor.NewReader(bytes.NewReader(trimmed))
	}
	br := bufio.NewReader(io.LimitReader(src, MaxKeyHeader))
	line, err := br.ReadString('\n')
	if err != nil || line != "age-encryption.org/v1\n" {
		return nil, errors.New("not an age file (no age-encryption.org/v1 header)")
	}
	var out []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, errors.New("age header: cut short")
		}
		switch {
		case strings.HasPrefix(line, "---"):
			slices.Sort(out)
			return out, nil
		case strings.HasPrefix(line, "-> "):
			f := strings.Fields(line[3:])
			if len(f) == 0 {
				return nil, errors.New("age header: an empty stanza")
			}
			switch typ := f[0]; {
			case strings.HasSuffix(typ, "-grease"):
			case (typ == "ssh-ed25519" || typ == "ssh-rsa") && len(f) > 1:
				out = append(out, typ+" "+f[1])
			default:
				out = append(out, typ)
			}
		}
	}
}

// RecipientStanza is the stanza a recipient leaves in an age header: "X25519"
// for age1…, "ssh-ed25519 <tag>" for an SSH key; "" for what does not parse.
func RecipientStanza(r string) string {
	r = NormalizeRecipient(r)
	if strings.HasPrefix(r, "age1") {
		return "X25519"
	}
	// x/crypto/ssh reads the line as OpenSSH does (options, quotes, the
	// declared type matching the blob's); pki imports it for that alone.
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r))
	if err != nil {
		return ""
	}
	h := sha256.Sum256(pub.Marshal())
	return pub.Type() + " " + base64.RawStdEncoding.EncodeToString(h[:4])
}

// KeyRecipients is what is known of whom a key is encrypted to: the
// recipients secrets.nix records for it, or else (Recorded nil) the
// stanzas of its age header.
type KeyRecipients struct {
	Recorded []string
	Stanzas  []string
}

// Differ reports whether a key encrypted as k is not encrypted to exactly
// want. From secrets.nix, the recipients are compared. From the header, an
// SSH recipient is compared by its tag and age recipients by their number
// (the header does not say whose they are); unknown lists the stanzas no
// recipient of want accounts for — someone a rekey or a new key would no
// longer encrypt to. Nothing known at all differs.
func (k KeyRecipients) Differ(want []string) (differ bool, unknown []string) {
	if k.Recorded != nil || k.Stanzas == nil {
		return !SameRecipients(k.Recorded, want), nil
	}
	var wanted []string
	for _, r := range want {
		wanted = append(wanted, RecipientStanza(r))
	}
	slices.Sort(wanted)
	have := slices.Clone(k.Stanzas)
	for _, w := range wanted {
		if i := slices.Index(have, w); i >= 0 {
			have = slices.Delete(have, i, i+1)
		} else {
			differ = true
		}
	}
	return differ || len(have) > 0, have
}

// unknownRecipients words the stanzas a new key would no longer carry.
func unknownRecipients(unknown []string) string {
	if len(unknown) == 0 {
		return ""
	}
	return fmt.Sprintf("its key is encrypted to %s that nestbot cannot name (%s), which the new one no longer is: pin the host's key in hosts/<host>.pub or list it in pki.admins to keep it",
		plural(len(unknown), "recipient"), strings.Join(unknown, ", "))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// ArmorHeader begins an ASCII-armored age file.
const ArmorHeader = "-----BEGIN AGE ENCRYPTED FILE-----"

// IsAgeData reports whether data begins as an age file does, armored or binary.
func IsAgeData(data []byte) bool {
	d := bytes.TrimLeft(data, " \t\r\n")
	return bytes.HasPrefix(d, []byte(ArmorHeader)) || bytes.HasPrefix(data, []byte("age-encryption.org/v1\n"))
}

// IsAgeFile reports whether name is an age-encrypted file by its name.
func IsAgeFile(name string) bool { return strings.HasSuffix(path.Base(name), ".age") }
