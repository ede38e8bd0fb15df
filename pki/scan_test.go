package pki

import (
	"bytes"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

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
