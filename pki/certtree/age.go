package certtree

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"github.com/ducksnest/nestbot/pki"
	"golang.org/x/crypto/ssh"
)

// maxAgeFile bounds what Decrypt reads: a private key is a few kilobytes.
const maxAgeFile = 1 << 20

// ParseRecipient reads one age recipient: an X25519 key (age1…) or an SSH
// ed25519 public key (ssh-ed25519 AAAA…, comment optional). The error names
// the recipient, unless it looks like a private key, which it never repeats.
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case looksSecret(s):
		return nil, errors.New("a private key was given where a recipient (age1… or ssh-ed25519 …) belongs; it is not repeated here")
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: not a valid age X25519 recipient", pki.Truncate(s, 80))
		}
		return r, nil
	case strings.HasPrefix(s, "ssh-ed25519 "):
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: not a valid ssh-ed25519 public key", pki.Truncate(s, 120))
		}
		return r, nil
	}
	return nil, fmt.Errorf("recipient %q: want an age X25519 recipient (age1…) or an ssh-ed25519 public key", pki.Truncate(s, 80))
}

func looksSecret(s string) bool {
	return strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY-") || pki.ContainsPlaintextKey([]byte(s))
}

// Encrypt encrypts plaintext to every recipient as an ASCII-armored age
// file. Every recipient that cannot be parsed is named in the error.
func Encrypt(plaintext []byte, recipients []string) ([]byte, error) {
	rs, err := parseRecipients(recipients, nil)
	if err != nil {
		return nil, err
	}
	return encrypt(plaintext, rs)
}

// parseRecipients parses every recipient, through cache when it is given
// (read only: callers share it across goroutines).
func parseRecipients(recipients []string, cache map[string]age.Recipient) ([]age.Recipient, error) {
	if len(recipients) == 0 {
		return nil, errors.New("age: no recipients; a private key must be encrypted to someone")
	}
	rs := make([]age.Recipient, 0, len(recipients))
	var errs []error
	for _, s := range recipients {
		if r, ok := cache[s]; ok {
			rs = append(rs, r)
			continue
		}
		r, err := ParseRecipient(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rs = append(rs, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	return rs, nil
}

func encrypt(plaintext []byte, rs []age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, rs...)
	if err != nil {
		return nil, fmt.Errorf("age: encrypt: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, fmt.Errorf("age: encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("age: encrypt: %w", err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("age: armor: %w", err)
	}
	return buf.Bytes(), nil
}

// Decrypt decrypts an age file, armored or binary, with id.
func Decrypt(data []byte, id *Identity) ([]byte, error) {
	if id == nil || len(id.ids) == 0 {
		return nil, errors.New("age: no identity to decrypt with; set NEST_AGE_IDENTITY or its _FILE")
	}
	var src io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(pki.ArmorHeader)) {
		src = armor.NewReader(bytes.NewReader(bytes.TrimLeft(data, " \t\r\n")))
	}
	r, err := age.Decrypt(src, id.ids...)
	if err != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) {
			return nil, fmt.Errorf("age: not encrypted to %s", strings.Join(id.recipients, " or "))
		}
		return nil, fmt.Errorf("age: decrypt: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, maxAgeFile+1))
	if err != nil {
		return nil, fmt.Errorf("age: decrypt: %w", err)
	}
	if len(out) > maxAgeFile {
		return nil, fmt.Errorf("age: decrypted file is larger than %d bytes; not a private key", maxAgeFile)
	}
	return out, nil
}

// Identity is what decrypts age files: the bot's age X25519 identities or
// its OpenSSH ed25519 private key. It never prints its secret.
type Identity struct {
	ids        []age.Identity
	recipients []string
}

// ParseIdentity reads an identity: an age identity file (lines of
// AGE-SECRET-KEY-1…, # comments allowed) or an unencrypted OpenSSH ed25519
// private key. Errors never quote the input.
func ParseIdentity(data []byte) (*Identity, error) {
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return parseSSHIdentity(trimmed)
	}
	id := &Identity{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		x, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, fmt.Errorf("identity line %d: not an age X25519 identity (AGE-SECRET-KEY-1…) nor an OpenSSH private key", n)
		}
		id.ids = append(id.ids, x)
		id.recipients = append(id.recipients, x.Recipient().String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if len(id.ids) == 0 {
		return nil, errors.New("identity: empty; want an AGE-SECRET-KEY-1… line or an OpenSSH ed25519 private key")
	}
	return id, nil
}

func parseSSHIdentity(pemBytes []byte) (*Identity, error) {
	raw, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, errors.New("identity: the OpenSSH private key is passphrase-protected; nestbot needs an unencrypted key (keep it in a secret, not on disk)")
		}
		return nil, errors.New("identity: not a readable OpenSSH private key")
	}
	var key ed25519.PrivateKey
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		key = k
	case *ed25519.PrivateKey:
		key = *k
	default:
		return nil, fmt.Errorf("identity: an OpenSSH %T key; only ed25519 keys are age identities here", raw)
	}
	ai, err := agessh.NewEd25519Identity(key)
	if err != nil {
		return nil, errors.New("identity: not a usable ed25519 key")
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, errors.New("identity: not a usable ed25519 key")
	}
	return &Identity{ids: []age.Identity{ai}, recipients: []string{sshKeyString(pub)}}, nil
}

// Recipients are the public halves of the identity, as recipients are written.
func (id *Identity) Recipients() []string { return append([]string(nil), id.recipients...) }

// String shows the identity's public recipients only.
func (id Identity) String() string {
	if len(id.recipients) == 0 {
		return "empty age identity"
	}
	return "age identity for " + strings.Join(id.recipients, ", ")
}

// Format makes every fmt verb print String.
func (id Identity) Format(f fmt.State, _ rune) { io.WriteString(f, id.String()) }

// LogValue makes slog print String.
func (id Identity) LogValue() slog.Value { return slog.StringValue(id.String()) }

func sshKeyString(pub ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// IdentityEnv names the bot's age identity: an age X25519 secret key or an
// OpenSSH ed25519 private key, in the variable or in a file named by
// NEST_AGE_IDENTITY_FILE. It decrypts the CA keys; it stays in memory.
const IdentityEnv = "NEST_AGE_IDENTITY"

// IdentityFromEnv reads the bot's identity from IdentityEnv (or the file
// IdentityEnv_FILE names, whose content it hands to mask, so that a runner
// can hide it in logs); nil when neither is set.
func IdentityFromEnv(getenv func(string) string, mask func(string)) (*Identity, error) {
	data := []byte(getenv(IdentityEnv))
	if len(data) == 0 {
		file := getenv(IdentityEnv + "_FILE")
		if file == "" {
			return nil, nil
		}
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("%s_FILE: %w", IdentityEnv, err)
		}
		mask(string(data)) // from a file: the runner does not know it
	}
	id, err := ParseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", IdentityEnv, err)
	}
	return id, nil
}
