package certtree

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/ducksnest/nestbot/pki"
	"golang.org/x/crypto/ssh"
)

func TestEncryptDecryptWithEitherIdentity(t *testing.T) {
	xid, xrecip, _ := newAgeIdentity(t)
	host := newSSHKey(t)
	sid, err := ParseIdentity(host.private)
	if err != nil {
		t.Fatal(err)
	}
	if got := sid.Recipients(); len(got) != 1 || got[0] != pki.NormalizeRecipient(host.pub) {
		t.Fatalf("ssh identity recipient %q, want %q", got, host.pub)
	}
	plain := []byte("-----BEGIN EC PRIVATE KEY-----\nnot really\n-----END EC PRIVATE KEY-----\n")
	enc, err := Encrypt(plain, []string{xrecip, host.pub + " root@host"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc, []byte(pki.ArmorHeader)) || !pki.IsAgeData(enc) {
		t.Fatalf("not armored:\n%s", enc)
	}
	if pki.ContainsPlaintextKey(enc) {
		t.Fatal("the encrypted file scans as a plaintext key")
	}
	for name, id := range map[string]*Identity{"x25519": xid, "ssh-ed25519": sid} {
		got, err := Decrypt(enc, id)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: decrypt %q, %v", name, got, err)
		}
	}
	other, _, _ := newAgeIdentity(t)
	if _, err := Decrypt(enc, other); err == nil || !strings.Contains(err.Error(), other.Recipients()[0]) {
		t.Errorf("a stranger decrypted, or the error does not say who tried: %v", err)
	}
}

func TestDecryptReadsBinary(t *testing.T) {
	xid, xrecip, _ := newAgeIdentity(t)
	r, _ := age.ParseX25519Recipient(xrecip)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("binary"))
	w.Close()
	if !pki.IsAgeData(buf.Bytes()) {
		t.Fatal("binary age file not recognised")
	}
	got, err := Decrypt(buf.Bytes(), xid)
	if err != nil || string(got) != "binary" {
		t.Fatalf("decrypt %q, %v", got, err)
	}
}

func TestAgeCLIDecryptsWhatWeEncrypt(t *testing.T) {
	ageBin := tool(t, "age")
	host := newSSHKey(t)
	_, xrecip, xsecret := newAgeIdentity(t)
	plain := []byte("secret key material\n")
	enc, err := Encrypt(plain, []string{xrecip, host.pub})
	if err != nil {
		t.Fatal(err)
	}
	encFile := writeTemp(t, "k.key.age", enc)
	for name, idFile := range map[string]string{
		"ssh":    writeTemp(t, "id_ed25519", host.private),
		"x25519": writeTemp(t, "id.txt", []byte(xsecret+"\n")),
	} {
		if got := run(t, nil, ageBin, "-d", "-i", idFile, encFile); !bytes.Equal(got, plain) {
			t.Errorf("age -d with the %s identity: %q", name, got)
		}
	}
}

func TestWeDecryptWhatAgeCLIEncrypts(t *testing.T) {
	ageBin := tool(t, "age")
	host := newSSHKey(t)
	pubFile := writeTemp(t, "host.pub", []byte(host.pub+" root@host\n"))
	id, err := ParseIdentity(host.private)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("from the age CLI\n")
	for _, args := range [][]string{{"-R", pubFile, "-a"}, {"-R", pubFile}} {
		enc := run(t, plain, ageBin, args...)
		got, err := Decrypt(enc, id)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("age %s: decrypt %q, %v", strings.Join(args, " "), got, err)
		}
	}
}

func TestRecipientErrorsNameTheRecipient(t *testing.T) {
	_, good, secret := newAgeIdentity(t)
	bad := []string{"age1notarecipient", "ssh-ed25519 AAAAnotbase64", "ssh-rsa AAAAB3NzaC1yc2E", "bob@example.com"}
	_, err := Encrypt([]byte("x"), append([]string{good}, bad...))
	if err == nil {
		t.Fatal("bad recipients accepted")
	}
	for _, b := range bad {
		if !strings.Contains(err.Error(), b) {
			t.Errorf("error does not name %q: %v", b, err)
		}
	}
	if strings.Contains(err.Error(), good) {
		t.Errorf("error names the good recipient: %v", err)
	}
	// A private key given as a recipient is refused and never repeated.
	_, err = Encrypt([]byte("x"), []string{secret})
	if err == nil || strings.Contains(err.Error(), secret[16:]) {
		t.Fatalf("secret recipient: %v", err)
	}
	if _, err := Encrypt([]byte("x"), nil); err == nil {
		t.Fatal("no recipients accepted")
	}
}

func TestParseIdentityErrorsNeverQuoteTheInput(t *testing.T) {
	_, _, secret := newAgeIdentity(t)
	broken := secret[:len(secret)-3] + "qqq" // a bad checksum
	for name, in := range map[string]string{
		"bad checksum": broken + "\n",
		"garbage":      "# comment\nAGE-SECRET-KEY-PQ-1ZZZ\n",
		"empty":        "# nothing\n\n",
		"ssh garbage":  "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA" + secret[16:] + "\n-----END OPENSSH PRIVATE KEY-----\n",
	} {
		_, err := ParseIdentity([]byte(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), secret[16:30]) {
			t.Errorf("%s: error quotes the key: %v", name, err)
		}
	}
	// A passphrase-protected key says so. (Only its header is real: nothing
	// is decrypted without a passphrase, so the bcrypt KDF never runs.)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	header := ssh.Marshal(struct {
		CipherName, KdfName, KdfOpts string
		NumKeys                      uint32
		PubKey, PrivKeyBlock         []byte
	}{"aes256-ctr", "bcrypt", "\x00\x00\x00\x10saltsaltsaltsalt\x00\x00\x00\x10", 1, sp.Marshal(), make([]byte, 64)})
	protected := pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: append([]byte("openssh-key-v1\x00"), header...)})
	if _, err := ParseIdentity(protected); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("protected key: %v", err)
	}
}

func TestIdentityNeverPrintsItsSecret(t *testing.T) {
	id, recip, secret := newAgeIdentity(t)
	for _, out := range []string{id.String(), fmt.Sprintf("%v", id), fmt.Sprintf("%+v", id), fmt.Sprintf("%#v", id), fmt.Sprintf("%+v", *id)} {
		if strings.Contains(out, secret[16:]) || !strings.Contains(out, recip) {
			t.Errorf("identity printed as %q", out)
		}
	}
}

// FuzzParseRecipient: no input panics; an accepted recipient encrypts and a
// rejected one that looks like a private key is never repeated.
func FuzzParseRecipient(f *testing.F) {
	f.Add("age14zzepmfg3quqwpzzl4222cpcsyn2raxx69wqa0vctdr70qnh9cqs98v583")
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdgODcQSlxaluMcBch6KKPliKTSzPX9oAYsoMc2QJ56 root@host")
	f.Add("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ")
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecipient(s)
		if err == nil {
			if _, err := Encrypt([]byte("x"), []string{s}); err != nil {
				t.Fatalf("parsed, but does not encrypt: %v", err)
			}
			if r == nil {
				t.Fatal("no recipient and no error")
			}
			return
		}
		if looksSecret(strings.TrimSpace(s)) && len(s) > 20 && strings.Contains(err.Error(), strings.TrimSpace(s)[:20]) {
			t.Fatalf("error repeats a private key: %v", err)
		}
	})
}

// FuzzParseIdentity: no input panics, and every error is one of the fixed
// messages, which quote nothing of the input.
func FuzzParseIdentity(f *testing.F) {
	f.Add([]byte("# created: 2026-01-01\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n"))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"))
	fixed := regexp.MustCompile(`^identity(` +
		`: the OpenSSH private key is passphrase-protected; .*|` +
		`: not a readable OpenSSH private key|` +
		`: an OpenSSH [*a-z0-9.A-Z]+ key; only ed25519 keys are age identities here|` +
		`: not a usable ed25519 key|` +
		`: empty; want an AGE-SECRET-KEY-1… line or an OpenSSH ed25519 private key|` +
		` line \d+: not an age X25519 identity \(AGE-SECRET-KEY-1…\) nor an OpenSSH private key|` +
		`: bufio.Scanner: token too long)$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseIdentity(data); err != nil && !fixed.MatchString(err.Error()) {
			t.Fatalf("unexpected error text: %v", err)
		}
	})
}

func TestContainsPlaintextKey(t *testing.T) {
	is := &pki.Issuer{Now: func() time.Time { return t0 }}
	kp, err := is.Issue(pki.Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := kp.KeyPEM()
	der, _ := x509.MarshalPKCS8PrivateKey(kp.Key)
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	ssh := newSSHKey(t)
	_, recip, ageSecret := newAgeIdentity(t)
	enc, err := Encrypt(sec1, []string{recip})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKeyPEM()
	sshBody := strings.Split(string(ssh.private), "\n")[1] // the base64 without its armor

	for name, data := range map[string][]byte{
		"SEC 1":             sec1,
		"PKCS 8":            pkcs8,
		"PKCS 1":            []byte("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"),
		"encrypted PKCS 8":  []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----\n"),
		"OpenSSH":           ssh.private,
		"OpenSSH unarmored": []byte("key: " + sshBody),
		"age secret":        []byte("# created\n" + ageSecret + "\n"),
		"age secret lower":  []byte(strings.ToLower(ageSecret)),
		"cert then key":     append(append([]byte{}, kp.CertPEM...), sec1...),
		"in JSON":           []byte(`{"key":"` + strings.ReplaceAll(string(pkcs8), "\n", `\n`) + `"}`),
		"PuTTY":             []byte("PuTTY-User-Key-File-3: ssh-ed25519\n"),
	} {
		if !pki.ContainsPlaintextKey(data) {
			t.Errorf("%s: not detected", name)
		}
	}
	for name, data := range map[string][]byte{
		"certificate":   kp.CertPEM,
		"public key":    pub,
		"ssh public":    []byte(ssh.pub),
		"age recipient": []byte(recip),
		"age file":      enc,
		"secrets.nix":   pki.RenderSecretsNix(map[string][]string{"ca/kubernetes.key.age": {recip, ssh.pub}}),
		"prose":         []byte("the private key lives in ca/kubernetes.key.age"),
	} {
		if pki.ContainsPlaintextKey(data) {
			t.Errorf("%s: flagged", name)
		}
	}
}
