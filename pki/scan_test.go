package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestContainsPlaintextKey(t *testing.T) {
	is := &Issuer{Now: func() time.Time { return t0 }}
	kp, err := is.Issue(Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
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
		if !ContainsPlaintextKey(data) {
			t.Errorf("%s: not detected", name)
		}
	}
	for name, data := range map[string][]byte{
		"certificate":   kp.CertPEM,
		"public key":    pub,
		"ssh public":    []byte(ssh.pub),
		"age recipient": []byte(recip),
		"age file":      enc,
		"secrets.nix":   RenderSecretsNix(map[string][]string{"ca/kubernetes.key.age": {recip, ssh.pub}}),
		"prose":         []byte("the private key lives in ca/kubernetes.key.age"),
	} {
		if ContainsPlaintextKey(data) {
			t.Errorf("%s: flagged", name)
		}
	}
}

// FuzzContainsPlaintextKey: a PEM private-key header anywhere in any input
// is found.
func FuzzContainsPlaintextKey(f *testing.F) {
	f.Add([]byte("hello"), []byte("world"), "EC")
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n"), []byte{0, 1, 2}, "")
	f.Fuzz(func(t *testing.T, before, after []byte, kind string) {
		kind = strings.Map(func(r rune) rune {
			if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' ' {
				return r
			}
			return -1
		}, kind)
		if kind != "" {
			kind += " "
		}
		data := bytes.Join([][]byte{before, []byte("-----BEGIN " + kind + "PRIVATE KEY-----"), after}, nil)
		if !ContainsPlaintextKey(data) {
			t.Fatalf("missed %q", data)
		}
		ContainsPlaintextKey(before) // must not panic
	})
}

// FuzzParseCertificatesPEM: no input panics; what parses re-encodes to
// the same certificates.
func FuzzParseCertificatesPEM(f *testing.F) {
	is := &Issuer{Now: func() time.Time { return t0 }}
	kp, _ := is.Issue(Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
	f.Add(kp.CertPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificatesPEM(data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for _, c := range certs {
			pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		back, err := ParseCertificatesPEM(buf.Bytes())
		if err != nil || len(back) != len(certs) {
			t.Fatalf("re-encoded certificates do not parse: %v", err)
		}
		for i := range certs {
			if !certs[i].Equal(back[i]) {
				t.Fatalf("certificate %d changed", i)
			}
		}
	})
}

// FuzzParsePrivateKeyPEM: no input panics, and no error quotes the input.
func FuzzParsePrivateKeyPEM(f *testing.F) {
	is := &Issuer{Now: func() time.Time { return t0 }}
	kp, _ := is.Issue(Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
	sec1, _ := kp.KeyPEM()
	f.Add(sec1)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParsePrivateKeyPEM(data)
		if err == nil {
			if key == nil {
				t.Fatal("no key and no error")
			}
			return
		}
		b, _ := pem.Decode(data)
		if b == nil {
			return
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if len(line) >= 12 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
				t.Fatalf("error quotes the input line %q: %v", line, err)
			}
		}
	})
}
