package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
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

// Observe reads the certificate tree at dir as of now: every .crt under
// ca/ and derived/<host>/, the service account's public key, and who each
// key is encrypted to (from secrets.nix). The map is keyed by Spec.ID. A
// file that cannot be read is in the map with Error set, and the returned
// error names every such file; the rest of the tree is still read.
func Observe(dir string, now time.Time) (map[string]ObservedCert, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("pki: observe: %w", err)
	}
	return observe(Dir(dir), dir, now) // through no symbolic link
}

// ObserveFS is Observe for a tree in any fs.FS (a git commit, a test map).
func ObserveFS(fsys fs.FS, now time.Time) (map[string]ObservedCert, error) {
	return observe(fsys, "", now)
}

type observer struct {
	fsys   fs.FS
	root   string // for error messages
	now    time.Time
	out    map[string]ObservedCert
	fatal  []error
	errs   []error
	pools  map[string]*x509.CertPool      // by CA file path
	certs  map[string][]*x509.Certificate // every readable certificate file, by path
	allCAs *x509.CertPool
	rules  map[string][]string // secrets.nix: .age path → recipients
	// caFiles are the certificate files in ca/, sorted.
	caFiles []string
	// rotations are the CA rotations in progress, by CA id, each checked
	// against its bundle (a marker that disagrees is fatal).
	rotations map[string]*Rotation
}

func observe(fsys fs.FS, root string, now time.Time) (map[string]ObservedCert, error) {
	o := observeTree(fsys, root, now)
	return o.out, errors.Join(append(o.fatal, o.errs...)...)
}

// observeTree reads the tree; fatal holds what makes the whole tree
// unreadable (its secrets.nix, a directory), errs the single files.
func observeTree(fsys fs.FS, root string, now time.Time) *observer {
	o := &observer{fsys: fsys, root: root, now: now, out: map[string]ObservedCert{},
		pools: map[string]*x509.CertPool{}, certs: map[string][]*x509.Certificate{}, allCAs: x509.NewCertPool(),
		rotations: map[string]*Rotation{}}
	o.rules = o.secretsNix()
	caFiles := o.list(caDirName, func(p string) bool { return strings.HasSuffix(p, ".crt") || strings.HasSuffix(p, ".pub") })
	// CAs first: the leaves are checked against them.
	for _, p := range caFiles {
		if strings.HasSuffix(p, ".crt") {
			o.caFiles = append(o.caFiles, p)
			if cs := o.readCerts(p); cs != nil {
				pool := x509.NewCertPool()
				for _, c := range cs {
					pool.AddCert(c)
					o.allCAs.AddCert(c)
				}
				o.pools[p] = pool
			}
		}
	}
	for _, ca := range caIDs() {
		r, err := loadRotation(fsys, ca, o.certs[caCertPath(ca)])
		if err != nil {
			o.fatal = append(o.fatal, err)
		} else if r != nil {
			o.rotations[ca] = r
		}
	}
	for _, p := range caFiles {
		if strings.HasSuffix(p, ".pub") {
			o.keyPair(p)
		} else {
			o.cert(p, o.certs[p])
		}
	}
	for ca, r := range o.rotations {
		c, ok := o.out[ca]
		if !ok {
			continue
		}
		next := o.describe(ca+".next", caCertPath(ca), o.certs[caCertPath(ca)][1:])
		next.KeyPath = NextKeyPath(ca)
		next.Recipients, next.HasKey = o.rules[next.KeyPath], o.exists(next.KeyPath)
		c.Rotation, c.Next = r, &next
		o.out[ca] = c
	}
	var leaves []string
	for _, host := range o.list(derivedDirName, func(string) bool { return true }) {
		leaves = append(leaves, o.list(host, func(p string) bool { return strings.HasSuffix(p, ".crt") })...)
	}
	for _, p := range leaves {
		o.cert(p, o.readCerts(p))
	}
	for id, c := range o.out {
		rs, recorded := o.rules[c.KeyPath]
		if recorded {
			c.Recipients = rs
		}
		c.HasKey = o.exists(c.KeyPath)
		if c.HasKey && !recorded {
			// Not in secrets.nix (a tree nestbot did not write): its header
			// says what it can of the recipients.
			c.KeyStanzas = o.keyStanzas(c.KeyPath)
		}
		o.out[id] = c
	}
	return o
}

// keyStanzas reads the recipient stanzas of the key file at p, from its
// first 64 KiB only (a header is a few hundred bytes; the file may come
// from a pull request). Nil when it is not an age file, or not a regular
// file of the tree.
func (o *observer) keyStanzas(p string) []string {
	// Only a file of the tree: a symbolic link (a pull request may hold
	// one to anywhere) is not followed.
	if lfs, ok := o.fsys.(fs.ReadLinkFS); ok {
		if fi, err := lfs.Lstat(p); err != nil || !fi.Mode().IsRegular() {
			return nil
		}
	}
	f, err := o.fsys.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyHeader))
	if err != nil {
		return nil
	}
	stanzas, _ := KeyStanzas(data)
	return stanzas
}

func (o *observer) name(p string) string {
	if o.root == "" {
		return p
	}
	return filepath.Join(o.root, filepath.FromSlash(p))
}

func (o *observer) fail(p string, err error) {
	o.errs = append(o.errs, fmt.Errorf("%s: %w", o.name(p), err))
}

// list returns the entries of dir (sorted) that keep accepts; a missing dir is empty.
func (o *observer) list(dir string, keep func(string) bool) []string {
	entries, err := fs.ReadDir(o.fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		o.fatal = append(o.fatal, fmt.Errorf("%s: %w", o.name(dir), err))
		return nil
	}
	var out []string
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") || !keep(p) {
			continue
		}
		if dir == derivedDirName && !e.IsDir() {
			continue
		}
		if dir != derivedDirName && e.IsDir() {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (o *observer) exists(p string) bool {
	_, err := fs.Stat(o.fsys, p)
	return err == nil
}

func (o *observer) secretsNix() map[string][]string {
	data, err := fs.ReadFile(o.fsys, SecretsNixPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		o.fatal = append(o.fatal, fmt.Errorf("%s: %w", o.name(SecretsNixPath), err))
		return nil
	}
	m, err := ParseSecretsNix(o.name(SecretsNixPath), data)
	if err != nil {
		o.fatal = append(o.fatal, err) // it names the file, line and column
		return nil
	}
	return m
}

// readCerts reads a certificate file, recording an entry with Error if it cannot.
func (o *observer) readCerts(p string) []*x509.Certificate {
	data, err := fs.ReadFile(o.fsys, p)
	if err == nil {
		var certs []*x509.Certificate
		if certs, err = ParseCertificatesPEM(data); err == nil {
			o.certs[p] = certs
			return certs
		}
	}
	o.fail(p, err)
	if id, ok := IDForPath(p); ok {
		o.out[id] = ObservedCert{ID: id, CertPath: p, KeyPath: KeyPathFor(p), Error: err.Error()}
	}
	return nil
}

// cert records the first of certs (the rest are its chain or, for a CA file,
// the other CAs of a rotation bundle).
func (o *observer) cert(p string, certs []*x509.Certificate) {
	if len(certs) == 0 {
		return
	}
	id, ok := IDForPath(p)
	if !ok {
		return
	}
	o.out[id] = o.describe(id, p, certs)
}

// describe reads the first of certs, from file p, and checks its chain.
func (o *observer) describe(id, p string, certs []*x509.Certificate) ObservedCert {
	c := certs[0]
	oc := ObservedCert{
		ID: id, CertPath: p, KeyPath: KeyPathFor(p),
		CommonName: c.Subject.CommonName, Organization: c.Subject.Organization,
		DNSNames: c.DNSNames, IPs: certIPs(c), Usages: usageNames(c),
		IsCA: c.IsCA, Issuer: c.Issuer.CommonName,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		KeyAlgorithm: algorithmOf(c.PublicKey), Serial: fmt.Sprintf("%x", c.SerialNumber),
		DaysLeft: daysLeft(c.NotAfter, o.now), IssuedByNestbot: issuedByNestbot(c), RawSubject: c.RawSubject,
	}
	roots := o.allCAs
	if dir, _ := path.Split(p); strings.TrimSuffix(dir, "/") == caDirName {
		roots, oc.SignerPath = o.pools[p], p
	} else if caPath := o.signerPath(p, c); caPath != "" {
		oc.SignerPath = caPath
		oc.Signer, _ = IDForPath(caPath)
		roots = o.pools[oc.SignerPath]
	}
	switch {
	case roots == nil:
		oc.VerifyError = fmt.Sprintf("its CA %s is missing or unreadable", oc.SignerPath)
	default:
		inter := x509.NewCertPool()
		for _, ic := range certs[1:] {
			inter.AddCert(ic)
		}
		chains, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: o.now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			oc.VerifyError = err.Error()
		} else {
			oc.Verified = true
			if ch := chains[0]; len(ch) > 1 {
				oc.IssuerSerial = serialHex(ch[1])
			}
		}
	}
	return oc
}

// signerPath is the CA file that signs leaf c (at p): the CA file its name
// names — derived/<host>/<ca>-<name>.crt is signed by ca/<ca>.crt, the
// longest such <ca> — or, when that file is missing, the kubeadm layout's
// CA for the name; failing both, any CA file whose key signed it. "" when
// none did.
func (o *observer) signerPath(p string, c *x509.Certificate) string {
	stem := strings.TrimSuffix(path.Base(p), ".crt")
	best := ""
	for _, ca := range o.caFiles {
		caStem := strings.TrimSuffix(path.Base(ca), ".crt")
		if strings.HasPrefix(stem, caStem+"-") && len(ca) > len(best) {
			best = ca
		}
	}
	if best != "" {
		return best
	}
	if signer := signerForStem(stem); signer != "" {
		return caCertPath(signer)
	}
	for _, ca := range o.caFiles {
		for _, cc := range o.certs[ca] {
			if c.CheckSignatureFrom(cc) == nil {
				return ca
			}
		}
	}
	return ""
}

// keyPair records a public key file (the service account's).
func (o *observer) keyPair(p string) {
	id, ok := IDForPath(p)
	if !ok {
		return
	}
	oc := ObservedCert{ID: id, CertPath: p, KeyPath: KeyPathFor(p), KeyOnly: true}
	data, err := fs.ReadFile(o.fsys, p)
	if err == nil {
		var pub any
		if pub, err = ParsePublicKeyPEM(data); err == nil {
			oc.KeyAlgorithm, oc.Verified = algorithmOf(pub), true
		}
	}
	if err != nil {
		o.fail(p, err)
		oc.Error = err.Error()
	}
	o.out[id] = oc
}

func certIPs(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap().String())
		}
	}
	return out // in the certificate's order, which a renewal keeps
}

// usageNames spells a certificate's extended key usages as specs do, in
// the order the certificate lists them.
func usageNames(c *x509.Certificate) []string {
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

func daysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}
