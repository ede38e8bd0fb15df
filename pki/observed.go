package pki

import (
	"crypto/x509"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// ObservedCert is one certificate (or key pair) as a tree holds it. Its
// first fields are those of reconcile.Cert; the rest are for status.
type ObservedCert struct {
	CommonName   string    `json:"common_name,omitempty"`
	Organization []string  `json:"organization,omitempty"`
	DNSNames     []string  `json:"dns_names,omitempty"`
	IPs          []string  `json:"ips,omitempty"`    // DNS names and IPs in the certificate's order
	Usages       []string  `json:"usages,omitempty"` // server, client, in the certificate's order
	IsCA         bool      `json:"is_ca,omitempty"`
	Issuer       string    `json:"issuer,omitempty"` // the issuer's common name
	NotBefore    time.Time `json:"not_before,omitzero"`
	NotAfter     time.Time `json:"not_after,omitzero"`
	Recipients   []string  `json:"recipients,omitempty"` // of the .key.age, from secrets.nix

	ID           string `json:"id"`                    // as Spec.ID
	CertPath     string `json:"cert_path"`             // the .crt, or the .pub of a key pair
	KeyPath      string `json:"key_path"`              // the .key.age beside it
	HasKey       bool   `json:"has_key"`               // the .key.age exists
	KeyOnly      bool   `json:"key_only,omitempty"`    // a key pair with no certificate
	KeyAlgorithm string `json:"key_algorithm"`         // ecdsa-p256, rsa-2048, …
	Serial       string `json:"serial,omitempty"`      // hex
	SignerPath   string `json:"signer_path,omitempty"` // the CA file its chain was checked against
	Verified     bool   `json:"verified"`              // the chain verifies now (a key pair: trivially)
	VerifyError  string `json:"verify_error,omitempty"`
	DaysLeft     int    `json:"days_left"` // whole days until NotAfter; negative once expired
	// IssuerSerial is the serial (hex) of the CA its chain verified
	// against: which of the two CAs of a rotation bundle signed it.
	IssuerSerial string `json:"issuer_serial,omitempty"`
	// Rotation is set on a CA whose rotation is in progress; Next is then
	// the new CA of its bundle (whose key is NextKeyPath), the entry itself
	// being the old one, which the bundle lists first.
	Rotation *Rotation     `json:"rotation,omitempty"`
	Next     *ObservedCert `json:"next,omitempty"`
	// Error says why the file could not be read; the certificate's own
	// fields (subject, SANs, dates, …) are then empty.
	Error string `json:"error,omitempty"`
	// Signer is the CA (its id, as Spec.Signer) whose file in ca/ signed
	// it: the one its file name names (<ca>-<name>.crt), else any whose key
	// signed it. Empty for a CA, a key pair, or a leaf no CA in ca/ signed.
	Signer string `json:"signer,omitempty"`
	// IssuedByNestbot is set when the certificate carries nestbot's
	// certificate policy: nestbot issued it. One without was found in the
	// tree and is adopted as it is.
	IssuedByNestbot bool `json:"issued_by_nestbot,omitempty"`
	// KeyStanzas are the recipient stanzas of the key's age header
	// (KeyStanzas), read when secrets.nix does not list the key.
	KeyStanzas []string `json:"key_stanzas,omitempty"`
	// RawSubject is the subject, DER, as the certificate holds it.
	RawSubject []byte `json:"-"`
}

// Keys is what is known of whom its key is encrypted to.
func (c *ObservedCert) Keys() KeyRecipients {
	return KeyRecipients{Recorded: c.Recipients, Stanzas: c.KeyStanzas}
}

func DaysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

func CertIPs(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap().String())
		}
	}
	return out // in the certificate's order, which a renewal keeps
}

// UsageNames spells a certificate's extended key usages as specs do, in
// the order the certificate lists them.
func UsageNames(c *x509.Certificate) []string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageServerAuth: UsageServer, x509.ExtKeyUsageClientAuth: UsageClient,
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageCodeSigning: "code-signing",
		x509.ExtKeyUsageEmailProtection: "email-protection", x509.ExtKeyUsageTimeStamping: "time-stamping",
		x509.ExtKeyUsageOCSPSigning: "ocsp-signing",
	}
	var out []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("eku-%d", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out // in the certificate's order, which a renewal keeps
}
