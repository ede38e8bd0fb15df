package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
)

// issueAll issues every spec with is, CAs first, and returns the key pairs by ID.
func issueAll(t testing.TB, is *Issuer, specs []Spec) map[string]*KeyPair {
	t.Helper()
	out := map[string]*KeyPair{}
	for _, pass := range []bool{true, false} {
		for _, s := range specs {
			if s.IsCA != pass {
				continue
			}
			kp, err := is.Issue(s, out[s.Signer])
			if err != nil {
				t.Fatalf("issue %s: %v", s.ID, err)
			}
			out[s.ID] = kp
		}
	}
	return out
}

func ekuFor(u string) x509.ExtKeyUsage {
	if u == UsageServer {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

func TestIssueFollowsSpec(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	specs := fx.specs()
	is := &Issuer{Now: func() time.Time { return t0 }}
	kps := issueAll(t, is, specs)
	serials := map[string]string{}
	for _, s := range specs {
		kp := kps[s.ID]
		if s.KeyOnly {
			if kp.Cert != nil || kp.CertPEM != nil {
				t.Errorf("%s: a key-only spec got a certificate", s.ID)
			}
			if k, ok := kp.Key.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
				t.Errorf("%s: service account key is %s, want rsa-2048", s.ID, AlgorithmOf(kp.Key.Public()))
			}
			continue
		}
		c := kp.Cert
		t.Run(s.ID, func(t *testing.T) {
			if c.Subject.CommonName != s.CommonName {
				t.Errorf("CN %q, want %q", c.Subject.CommonName, s.CommonName)
			}
			if !slices.Equal(c.Subject.Organization, s.Organization) {
				t.Errorf("O %q, want %q", c.Subject.Organization, s.Organization)
			}
			if !slices.Equal(c.DNSNames, s.DNSNames) {
				t.Errorf("DNS SANs %q, want %q", c.DNSNames, s.DNSNames)
			}
			if got := CertIPs(c); !slices.Equal(got, s.IPs) {
				t.Errorf("IP SANs %q, want %q", got, s.IPs)
			}
			if got := UsageNames(c); !slices.Equal(got, s.Usages) {
				t.Errorf("usages %q, want %q", got, s.Usages)
			}
			if !c.BasicConstraintsValid || c.IsCA != s.IsCA {
				t.Errorf("basic constraints valid=%v CA=%v, want CA=%v", c.BasicConstraintsValid, c.IsCA, s.IsCA)
			}
			wantKU := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
			if s.IsCA {
				wantKU = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
			}
			if c.KeyUsage != wantKU {
				t.Errorf("key usage %b, want %b", c.KeyUsage, wantKU)
			}
			if d := c.NotAfter.Sub(c.NotBefore); d != s.Validity {
				t.Errorf("validity %s, want %s", d, s.Validity)
			}
			if !c.NotBefore.Equal(t0.Add(-Backdate)) {
				t.Errorf("not before %s, want the clock minus %s", c.NotBefore, Backdate)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %x is not a positive 128-bit number", c.SerialNumber)
			}
			if prev, dup := serials[c.SerialNumber.String()]; dup {
				t.Errorf("serial shared with %s", prev)
			}
			serials[c.SerialNumber.String()] = s.ID
			if ski, _ := subjectKeyID(c.PublicKey); !bytes.Equal(c.SubjectKeyId, ski) || len(ski) != 20 {
				t.Errorf("subject key id %x, want %x", c.SubjectKeyId, ski)
			}
			if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Errorf("key %s, want ecdsa-p256 by default", AlgorithmOf(c.PublicKey))
			}
			if s.IsCA {
				if !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
					t.Errorf("self-signed CA's authority key id %x is not its own %x", c.AuthorityKeyId, c.SubjectKeyId)
				}
				if err := c.CheckSignatureFrom(c); err != nil {
					t.Errorf("not self-signed: %v", err)
				}
				return
			}
			ca := kps[s.Signer].Cert
			if !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) {
				t.Errorf("authority key id %x, want its CA's %x", c.AuthorityKeyId, ca.SubjectKeyId)
			}
			if c.Issuer.CommonName != ca.Subject.CommonName {
				t.Errorf("issuer %q, want %q", c.Issuer.CommonName, ca.Subject.CommonName)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			for _, u := range s.Usages {
				opts := x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{ekuFor(u)}}
				if u == UsageServer {
					opts.DNSName = s.DNSNames[0]
				}
				if _, err := c.Verify(opts); err != nil {
					t.Errorf("does not verify for %s: %v", u, err)
				}
			}
			// And not for a usage it was not given.
			for _, u := range []string{UsageServer, UsageClient} {
				if !slices.Contains(s.Usages, u) {
					if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{ekuFor(u)}}); err == nil {
						t.Errorf("verifies for %s, which it was not given", u)
					}
				}
			}
			// Nor against another CA.
			other := x509.NewCertPool()
			for _, id := range []string{CA, EtcdCA, FrontProxyCA} {
				if id != s.Signer {
					other.AddCert(kps[id].Cert)
				}
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: other, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				t.Errorf("verifies against a CA that did not sign it")
			}
		})
	}
}

func TestIssueValidityHonoured(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	is := &Issuer{Now: func() time.Time { return t0 }}
	kps := issueAll(t, is, fx.specs())
	for id, want := range map[string]time.Duration{
		CA:                        5 * 365 * 24 * time.Hour,
		"cp-1/apiserver":          90 * 24 * time.Hour,
		"w-1/kubelet-serving":     90 * 24 * time.Hour,
		"cp-1/etcd-peer":          90 * 24 * time.Hour,
		"cp-1/front-proxy-client": 90 * 24 * time.Hour,
	} {
		c := kps[id].Cert
		if got := c.NotAfter.Sub(c.NotBefore); got != want {
			t.Errorf("%s: lifetime %s, declared %s", id, got, want)
		}
	}
	// openssl reads the same dates.
	openssl := tool(t, "openssl")
	c := kps["cp-1/apiserver"].Cert
	out := string(run(t, kps["cp-1/apiserver"].CertPEM, openssl, "x509", "-noout", "-startdate", "-enddate"))
	const layout = "Jan _2 15:04:05 2006 MST"
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got, err := time.Parse(layout, v)
		if err != nil {
			t.Fatalf("openssl date %q: %v", v, err)
		}
		want := map[string]time.Time{"notBefore": c.NotBefore, "notAfter": c.NotAfter}[k]
		if !got.Equal(want) {
			t.Errorf("openssl %s %s, want %s", k, got, want)
		}
	}
}

func TestIssueRSAKeys(t *testing.T) {
	t.Parallel()
	is := &Issuer{Now: func() time.Time { return t0 }}
	for _, tc := range []struct {
		alg  string
		bits int
	}{{AlgRSA2048, 2048}, {AlgRSA4096, 4096}} {
		t.Run(tc.alg, func(t *testing.T) {
			t.Parallel()
			if tc.bits > 2048 && testing.Short() {
				t.Skip("a 4096-bit key takes seconds under -race; CI runs it")
			}
			ca, err := is.Issue(Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour, KeyAlgorithm: AlgECDSAP256}, nil)
			if err != nil {
				t.Fatal(err)
			}
			kp, err := is.Issue(Spec{ID: "h/x", Signer: "ca", CommonName: "x", Usages: []string{UsageClient}, Validity: time.Hour, KeyAlgorithm: tc.alg}, ca)
			if err != nil {
				t.Fatal(err)
			}
			k, ok := kp.Cert.PublicKey.(*rsa.PublicKey)
			if !ok || k.N.BitLen() != tc.bits {
				t.Fatalf("key %s, want %s", AlgorithmOf(kp.Cert.PublicKey), tc.alg)
			}
			pemKey, err := kp.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePrivateKeyPEM(pemKey)
			if err != nil || !KeyMatches(back, kp.Cert.PublicKey) {
				t.Fatalf("key PEM does not round-trip: %v", err)
			}
		})
	}
}

func TestIssueRejects(t *testing.T) {
	t.Parallel()
	is := &Issuer{Now: func() time.Time { return t0 }}
	ca, err := is.Issue(Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := Spec{ID: "h/x", Signer: "ca", CommonName: "x", Usages: []string{UsageClient}, Validity: time.Hour}
	for name, tc := range map[string]struct {
		s      Spec
		signer *KeyPair
		want   string
	}{
		"no signer":     {leaf, nil, "signer"},
		"zero validity": {Spec{ID: "h/x", Signer: "ca", CommonName: "x", Validity: 0}, ca, "validity"},
		"bad usage":     {Spec{ID: "h/x", Signer: "ca", Usages: []string{"code"}, Validity: time.Hour}, ca, `usage "code"`},
		"bad IP":        {Spec{ID: "h/x", Signer: "ca", IPs: []string{"10.0.0"}, Validity: time.Hour}, ca, "10.0.0"},
		"bad algorithm": {Spec{ID: "h/x", Signer: "ca", Validity: time.Hour, KeyAlgorithm: "dsa"}, ca, `"dsa"`},
	} {
		if _, err := is.Issue(tc.s, tc.signer); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", name, err, tc.want)
		}
	}
}

// A reader that repeats one byte gives the same serial every time; the
// Issuer must draw serials from the Rand it is given.
func TestIssueSerialFromRand(t *testing.T) {
	t.Parallel()
	is := &Issuer{Now: func() time.Time { return t0 }, Rand: bytes.NewReader(bytes.Repeat([]byte{0x42}, 1<<20))}
	kp, err := is.Issue(Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := new(big.Int).SetString(strings.Repeat("42", 16), 16)
	if kp.Cert.SerialNumber.Cmp(want) != 0 {
		t.Fatalf("serial %x, want %x from Rand", kp.Cert.SerialNumber, want)
	}
}

func TestKeyPairNeverPrintsItsKey(t *testing.T) {
	t.Parallel()
	is := &Issuer{Now: func() time.Time { return t0 }}
	kp, err := is.Issue(Spec{ID: "ca", IsCA: true, CommonName: "kubernetes", Validity: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := kp.Key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secret := new(big.Int).SetBytes(raw).String()
	secretHex := fmt.Sprintf("%x", raw)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		out := fmt.Sprintf(verb, kp)
		if strings.Contains(out, secret) || strings.Contains(out, secretHex) || strings.Contains(out, "PRIVATE") {
			t.Errorf("%s printed the key: %s", verb, out)
		}
	}
	// Also as a value, and inside a struct.
	for _, out := range []string{fmt.Sprintf("%+v", *kp), fmt.Sprintf("%+v", struct{ K *KeyPair }{kp})} {
		if strings.Contains(out, secret) || strings.Contains(out, secretHex) {
			t.Errorf("printed the key: %s", out)
		}
	}
}
