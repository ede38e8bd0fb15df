package certtree

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ducksnest/nestbot/pki"
)

// Observe reads the certificate tree at dir as of now: every .crt under
// ca/ and derived/<host>/, the service account's public key, and who each
// key is encrypted to (from secrets.nix). The map is keyed by Spec.ID. A
// file that cannot be read is in the map with Error set, and the returned
// error names every such file; the rest of the tree is still read.
func Observe(dir string, now time.Time) (map[string]pki.ObservedCert, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("pki: observe: %w", err)
	}
	return observe(Dir(dir), dir, now) // through no symbolic link
}

// ObserveFS is Observe for a tree in any fs.FS (a git commit, a test map).
func ObserveFS(fsys fs.FS, now time.Time) (map[string]pki.ObservedCert, error) {
	return observe(fsys, "", now)
}

type observer struct {
	fsys   fs.FS
	root   string // for error messages
	now    time.Time
	out    map[string]pki.ObservedCert
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
	rotations map[string]*pki.Rotation
}

func observe(fsys fs.FS, root string, now time.Time) (map[string]pki.ObservedCert, error) {
	o := observeTree(fsys, root, now)
	return o.out, errors.Join(append(o.fatal, o.errs...)...)
}

// observeTree reads the tree; fatal holds what makes the whole tree
// unreadable (its secrets.nix, a directory), errs the single files.
func observeTree(fsys fs.FS, root string, now time.Time) *observer {
	o := &observer{fsys: fsys, root: root, now: now, out: map[string]pki.ObservedCert{},
		pools: map[string]*x509.CertPool{}, certs: map[string][]*x509.Certificate{}, allCAs: x509.NewCertPool(),
		rotations: map[string]*pki.Rotation{}}
	o.rules = o.secretsNix()
	caFiles := o.list(pki.CADirName, func(p string) bool { return strings.HasSuffix(p, ".crt") || strings.HasSuffix(p, ".pub") })
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
	for _, ca := range pki.CAIDs() {
		r, err := loadRotation(fsys, ca, o.certs[pki.CACertPath(ca)])
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
		next := o.describe(ca+".next", pki.CACertPath(ca), o.certs[pki.CACertPath(ca)][1:])
		next.KeyPath = pki.NextKeyPath(ca)
		next.Recipients, next.HasKey = o.rules[next.KeyPath], o.exists(next.KeyPath)
		c.Rotation, c.Next = r, &next
		o.out[ca] = c
	}
	var leaves []string
	for _, host := range o.list(pki.DerivedDirName, func(string) bool { return true }) {
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
	data, err := io.ReadAll(io.LimitReader(f, pki.MaxKeyHeader))
	if err != nil {
		return nil
	}
	stanzas, _ := pki.KeyStanzas(data)
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
		if dir == pki.DerivedDirName && !e.IsDir() {
			continue
		}
		if dir != pki.DerivedDirName && e.IsDir() {
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
	data, err := fs.ReadFile(o.fsys, pki.SecretsNixPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		o.fatal = append(o.fatal, fmt.Errorf("%s: %w", o.name(pki.SecretsNixPath), err))
		return nil
	}
	m, err := pki.ParseSecretsNix(o.name(pki.SecretsNixPath), data)
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
		if certs, err = pki.ParseCertificatesPEM(data); err == nil {
			o.certs[p] = certs
			return certs
		}
	}
	o.fail(p, err)
	if id, ok := pki.IDForPath(p); ok {
		o.out[id] = pki.ObservedCert{ID: id, CertPath: p, KeyPath: pki.KeyPathFor(p), Error: err.Error()}
	}
	return nil
}

// cert records the first of certs (the rest are its chain or, for a CA file,
// the other CAs of a rotation bundle).
func (o *observer) cert(p string, certs []*x509.Certificate) {
	if len(certs) == 0 {
		return
	}
	id, ok := pki.IDForPath(p)
	if !ok {
		return
	}
	o.out[id] = o.describe(id, p, certs)
}

// describe reads the first of certs, from file p, and checks its chain.
func (o *observer) describe(id, p string, certs []*x509.Certificate) pki.ObservedCert {
	c := certs[0]
	oc := pki.ObservedCert{
		ID: id, CertPath: p, KeyPath: pki.KeyPathFor(p),
		CommonName: c.Subject.CommonName, Organization: c.Subject.Organization,
		DNSNames: c.DNSNames, IPs: pki.CertIPs(c), Usages: pki.UsageNames(c),
		IsCA: c.IsCA, Issuer: c.Issuer.CommonName,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		KeyAlgorithm: pki.AlgorithmOf(c.PublicKey), Serial: fmt.Sprintf("%x", c.SerialNumber),
		DaysLeft: pki.DaysLeft(c.NotAfter, o.now), IssuedByNestbot: pki.IsNestbotIssued(c), RawSubject: c.RawSubject,
	}
	roots := o.allCAs
	if dir, _ := path.Split(p); strings.TrimSuffix(dir, "/") == pki.CADirName {
		roots, oc.SignerPath = o.pools[p], p
	} else if caPath := o.signerPath(p, c); caPath != "" {
		oc.SignerPath = caPath
		oc.Signer, _ = pki.IDForPath(caPath)
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
	if signer := pki.SignerForStem(stem); signer != "" {
		return pki.CACertPath(signer)
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
	id, ok := pki.IDForPath(p)
	if !ok {
		return
	}
	oc := pki.ObservedCert{ID: id, CertPath: p, KeyPath: pki.KeyPathFor(p), KeyOnly: true}
	data, err := fs.ReadFile(o.fsys, p)
	if err == nil {
		var pub any
		if pub, err = pki.ParsePublicKeyPEM(data); err == nil {
			oc.KeyAlgorithm, oc.Verified = pki.AlgorithmOf(pub), true
		}
	}
	if err != nil {
		o.fail(p, err)
		oc.Error = err.Error()
	}
	o.out[id] = oc
}
