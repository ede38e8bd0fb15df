package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Key algorithms, as spelled in nest.yaml's pki.key_algorithm. A
// certificate found in the tree may also be RSA 3072 or ECDSA P-384, which
// its renewal keeps.
const (
	AlgECDSAP256 = "ecdsa-p256"
	AlgECDSAP384 = "ecdsa-p384"
	AlgRSA2048   = "rsa-2048"
	AlgRSA3072   = "rsa-3072"
	AlgRSA4096   = "rsa-4096"
)

// nestbotPolicy marks the certificates nestbot issues: a certificate
// policy (RFC 5280, 4.2.1.4) whose OID is a UUID under 2.25 (ITU-T X.667),
// which needs no registration. No verifier enforces it (Kubernetes and
// openssl verify check no policies unless asked). A certificate without it
// was found in the tree: nestbot adopts it as it is, keeps it so when it
// renews it, and never deletes it unless pki.remove says so.
var nestbotPolicy = mustOID("2.25.120396705655279000396925251121495075031")

func mustOID(s string) x509.OID {
	oid, err := x509.ParseOID(s)
	if err != nil {
		panic(err)
	}
	return oid
}

// IsNestbotIssued reports whether c carries nestbotPolicy.
func IsNestbotIssued(c *x509.Certificate) bool {
	return slices.ContainsFunc(c.Policies, func(o x509.OID) bool { return o.Equal(nestbotPolicy) })
}

// Backdate is how far before the issuer's clock a new certificate's NotBefore
// lies, so that a host whose clock runs a little behind already accepts it.
// NotBefore is whole seconds (X.509 has no finer time) and NotAfter is
// NotBefore plus the declared validity, exactly, for any validity in whole
// seconds.
const Backdate = 5 * time.Minute

// Issuer makes certificates and keys as a Spec declares them.
type Issuer struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of serial numbers and keys; nil means crypto/rand.
	// (Since Go 1.26 the standard library draws keys from its own secure
	// source regardless; Rand still decides the serials.)
	Rand io.Reader

	mu sync.Mutex // guards Rand, which need not be safe for concurrent use
}

// KeyPair is an issued certificate (nil for a key-only Spec) and its private
// key. It never prints its key: fmt and slog show the certificate's subject only.
type KeyPair struct {
	Cert    *x509.Certificate
	CertPEM []byte // the certificate, PEM; nil for a key pair without one
	Key     crypto.Signer
}

// KeyPEM encodes the private key as PEM: SEC 1 ("EC PRIVATE KEY") for ECDSA
// and PKCS #1 ("RSA PRIVATE KEY") for RSA, as kubeadm and cfssl write them.
// The result belongs in an .age file and nowhere else.
func (k *KeyPair) KeyPEM() ([]byte, error) {
	return encodeKeyPEM(k.Key)
}

// PublicKeyPEM encodes the public key as a PKIX "PUBLIC KEY" block, the
// form of the service account's sa.pub.
func (k *KeyPair) PublicKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// String names the key pair without its key.
func (k KeyPair) String() string {
	if k.Key == nil {
		return "empty key pair"
	}
	if k.Cert == nil {
		return fmt.Sprintf("key pair (%s, private key redacted)", AlgorithmOf(k.Key.Public()))
	}
	return fmt.Sprintf("certificate %q serial %x (private key redacted)", k.Cert.Subject.CommonName, k.Cert.SerialNumber)
}

// Format makes every fmt verb, %#v and %+v included, print String.
func (k KeyPair) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue makes slog print String.
func (k KeyPair) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Time is the Issuer's clock's reading: Now, or else time.Now.
func (is *Issuer) Time() time.Time {
	if is.Now != nil {
		return is.Now()
	}
	return time.Now()
}

// issuerRand draws from an Issuer's Rand, one caller at a time.
type issuerRand struct{ is *Issuer }

func (r issuerRand) Read(p []byte) (int, error) {
	if r.is.Rand == nil {
		return rand.Read(p)
	}
	r.is.mu.Lock()
	defer r.is.mu.Unlock()
	return io.ReadFull(r.is.Rand, p)
}

// Issue makes the key (and certificate) that s declares. A self-signed Spec
// (a CA, or the key-only service account) takes a nil signer; a leaf takes
// its CA's key pair. Issue is safe for concurrent use.
func (is *Issuer) Issue(s Spec, signer *KeyPair) (*KeyPair, error) {
	key, err := generateKey(s.KeyAlgorithm, issuerRand{is})
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", s.ID, err)
	}
	if s.KeyOnly {
		return &KeyPair{Key: key}, nil
	}
	if s.Validity <= 0 {
		return nil, fmt.Errorf("issue %s: validity %s is not positive", s.ID, s.Validity)
	}
	if (s.Signer == "") != (signer == nil) {
		return nil, fmt.Errorf("issue %s: signer %q does not match the signing key pair given", s.ID, s.Signer)
	}
	tmpl, err := is.template(s, key.Public())
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", s.ID, err)
	}
	parent, parentKey := tmpl, key
	if signer != nil {
		if signer.Cert == nil || !signer.Cert.IsCA {
			return nil, fmt.Errorf("issue %s: signer %s is not a CA certificate", s.ID, s.Signer)
		}
		parent, parentKey = signer.Cert, signer.Key
	}
	der, err := x509.CreateCertificate(issuerRand{is}, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("issue %s: sign: %w", s.ID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue %s: read back: %w", s.ID, err)
	}
	return &KeyPair{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key}, nil
}

// template is the certificate s declares, for public key pub.
func (is *Issuer) template(s Spec, pub crypto.PublicKey) (*x509.Certificate, error) {
	serial, err := is.serial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	notBefore := is.Time().Add(-Backdate).UTC().Truncate(time.Second)
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: s.CommonName, Organization: s.Organization},
		RawSubject:            s.RawSubject, // an adopted certificate's subject, as it was
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(s.Validity),
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
	}
	if !s.Adopted {
		t.Policies = []x509.OID{nestbotPolicy}
	}
	if s.IsCA {
		t.IsCA = true
		t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		t.AuthorityKeyId = ski // self-signed: its own key identifies its authority
		return t, nil
	}
	t.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	for _, u := range s.Usages {
		eku, ok := extKeyUsages()[u]
		if !ok {
			return nil, fmt.Errorf("unknown usage %q; want %s or %s", u, UsageServer, UsageClient)
		}
		t.ExtKeyUsage = append(t.ExtKeyUsage, eku)
	}
	t.DNSNames = s.DNSNames
	for _, a := range s.IPs {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("IP SAN %q is not an IP address", a)
		}
		t.IPAddresses = append(t.IPAddresses, ip.Unmap().AsSlice())
	}
	return t, nil
}

// serial is a random positive 128-bit serial number.
func (is *Issuer) serial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := (issuerRand{is}).Read(b); err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is the leftmost 160 bits of the SHA-256 of the subject
// public key (RFC 7093, section 2, method 1).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// extKeyUsages are the extended key usages a Spec can name, by the names
// UsageNames gives them.
func extKeyUsages() map[string]x509.ExtKeyUsage {
	return map[string]x509.ExtKeyUsage{
		UsageServer: x509.ExtKeyUsageServerAuth, UsageClient: x509.ExtKeyUsageClientAuth,
		"any": x509.ExtKeyUsageAny, "code-signing": x509.ExtKeyUsageCodeSigning,
		"email-protection": x509.ExtKeyUsageEmailProtection, "time-stamping": x509.ExtKeyUsageTimeStamping,
		"ocsp-signing": x509.ExtKeyUsageOCSPSigning,
	}
}

// CanIssue says why a key type or usage cannot be issued ("" when it can):
// a certificate found in the tree may hold what nestbot does not make.
func CanIssue(s Spec) string {
	if !slices.Contains([]string{"", AlgECDSAP256, AlgECDSAP384, AlgRSA2048, AlgRSA3072, AlgRSA4096}, s.KeyAlgorithm) {
		return "key type " + s.KeyAlgorithm + ", which nestbot does not issue"
	}
	for _, u := range s.Usages {
		if _, ok := extKeyUsages()[u]; !ok {
			return fmt.Sprintf("extended key usage %s, which nestbot does not issue", u)
		}
	}
	return ""
}

func generateKey(alg string, r io.Reader) (crypto.Signer, error) {
	switch alg {
	case AlgECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), r)
	case AlgECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), r)
	case AlgRSA2048:
		return rsa.GenerateKey(r, 2048)
	case AlgRSA3072:
		return rsa.GenerateKey(r, 3072)
	case AlgRSA4096:
		return rsa.GenerateKey(r, 4096)
	}
	return nil, fmt.Errorf("key algorithm %q; want %s, %s or %s", alg, AlgECDSAP256, AlgRSA2048, AlgRSA4096)
}

// AlgorithmOf names a public key as key_algorithm does, or describes it.
func AlgorithmOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return AlgECDSAP256
		case elliptic.P384():
			return AlgECDSAP384
		}
		return "ecdsa-" + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, errors.New("encode EC private key failed")
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	}
	return nil, fmt.Errorf("encode private key: unsupported type %T", key)
}
