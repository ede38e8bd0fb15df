package certtree

import (
	"cmp"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

// Applier brings a certificate tree in line with a certificate set: it
// issues what is missing, renews what is due, reissues what drifted,
// re-encrypts keys whose recipients changed, and rewrites secrets.nix.
// Nothing is written unless every step succeeded first. A CA moves only
// through RotateCA; while one rotates, Apply signs with its old key after
// phase 1 and with its new key from phase 2 on.
type Applier struct {
	Files Files // the tree at pki.dir
	// Identity decrypts the keys the apply must reuse: a CA's, to sign, and
	// any key it re-encrypts. It may be nil when neither is needed.
	Identity    *Identity
	Issuer      *pki.Issuer   // clock and randomness; nil means the real ones
	RenewBefore time.Duration // pki.renew_before
	Logger      *slog.Logger  // nil discards
	Parallel    int           // certificates issued at once; 0 means GOMAXPROCS
}

// task is the apply's plan for one Spec.
type task struct {
	spec   pki.Spec
	have   *pki.ObservedCert // nil when missing
	action pki.Action
	reason string
	keyPEM []byte // rekey: the decrypted key, re-encrypted as is

	// A CA in rotation: its new key, rekeyed with the old one.
	nextKeyPath    string   // NextKeyPath of the CA; "" when not rotating
	nextRecipients []string // as secrets.nix records them
	nextKeyPEM     []byte   // rekey: the decrypted new key

	// filled in by run
	issued   *pki.KeyPair
	writes   []fileWrite
	notAfter time.Time
}

type fileWrite struct {
	path string
	data []byte
}

func (a *Applier) issuer() *pki.Issuer {
	if a.Issuer == nil {
		return &pki.Issuer{}
	}
	return a.Issuer
}

func (a *Applier) log() *slog.Logger { return logs.Or(a.Logger) }

// Apply brings the tree in line with specs (as Set returns them), taken
// as they are, and reports what it did per certificate. A leaf nestbot
// issued that specs lack is deleted; nothing else is.
func (a *Applier) Apply(ctx context.Context, specs []pki.Spec) (*pki.Report, error) {
	return a.apply(ctx, func(tree map[string]pki.ObservedCert) (*pki.Desire, error) {
		d := &pki.Desire{Specs: specs}
		want := map[string]bool{}
		for _, s := range specs {
			want[s.ID] = true
		}
		for _, id := range slices.Sorted(maps.Keys(tree)) {
			if c := tree[id]; !want[id] && c.IssuedByNestbot && strings.HasPrefix(c.CertPath, pki.DerivedDirName+"/") {
				d.Remove = append(d.Remove, pki.Removal{ID: id, CertPath: c.CertPath, KeyPath: c.KeyPath, IssuedByNestbot: true, Reason: "no host needs it any more"})
			}
		}
		return d, nil
	})
}

// ApplyFleet brings the tree in line with fleet f: the Desire (Desired)
// of the tree as it observes it, so that it adopts what the tree holds
// exactly as a plan of the same tree does.
func (a *Applier) ApplyFleet(ctx context.Context, f *nest.Fleet, hostKeys map[string]string, facts map[string]pki.HostFacts) (*pki.Report, error) {
	return a.apply(ctx, func(tree map[string]pki.ObservedCert) (*pki.Desire, error) {
		return pki.Desired(f, hostKeys, facts, tree)
	})
}

func (a *Applier) apply(ctx context.Context, desire func(map[string]pki.ObservedCert) (*pki.Desire, error)) (*pki.Report, error) {
	is := a.issuer()
	now := is.Time()
	o := observeTree(a.Files, "", now)
	if err := errors.Join(o.fatal...); err != nil {
		return nil, fmt.Errorf("pki: apply: %w", err)
	}
	d, err := desire(o.out)
	if err != nil {
		return nil, fmt.Errorf("pki: apply: %w", err)
	}
	recipients, err := checkSpecs(d.Specs)
	if err != nil {
		return nil, fmt.Errorf("pki: apply: %w", err)
	}
	tasks := a.decide(d.Specs, o, now)
	signers, err := a.loadKeys(tasks, o)
	if err != nil {
		return nil, fmt.Errorf("pki: apply: %w", err)
	}
	w := &issuing{issuer: is, recipients: recipients, signers: signers, parallel: a.Parallel}
	if st, ok := a.Files.(Stager); ok {
		if w.staging, err = st.Stage(); err != nil {
			return nil, fmt.Errorf("pki: apply: nothing written: %w", err)
		}
		defer w.staging.Discard() // what was not put into place
	}
	err = cmp.Or(w.run(ctx, tasks), ctx.Err())
	if serr := w.staged(); serr != nil {
		return nil, fmt.Errorf("pki: apply: nothing written: %w", serr)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: apply: %w", err)
	}
	kept := map[string][]string{} // secrets.nix's rules of the keys still there
	for p, rs := range o.rules {
		if o.exists(p) {
			kept[p] = rs
		}
	}
	return a.write(tasks, d.Remove, kept, w.staging)
}

// checkSpecs refuses a set that could not be written: duplicate ids, bad
// paths, recipients that do not parse, signers that are not in the set. It
// returns every recipient, parsed.
func checkSpecs(specs []pki.Spec) (map[string]age.Recipient, error) {
	var errs []error
	parsed := map[string]age.Recipient{}
	bad := map[string]bool{} // reported once, for the first spec that has it
	ids := map[string]bool{}
	cas := map[string]bool{}
	for _, s := range specs {
		if s.IsCA {
			cas[s.ID] = true
		}
	}
	for _, s := range specs {
		if ids[s.ID] {
			errs = append(errs, fmt.Errorf("%s: listed twice", s.ID))
		}
		ids[s.ID] = true
		if !fs.ValidPath(s.KeyPath) || !strings.HasSuffix(s.KeyPath, ".key.age") {
			errs = append(errs, fmt.Errorf("%s: key path %q is not a relative …key.age path", s.ID, s.KeyPath))
		}
		if !s.KeyOnly && (!fs.ValidPath(s.CertPath) || !strings.HasSuffix(s.CertPath, ".crt")) {
			errs = append(errs, fmt.Errorf("%s: certificate path %q is not a relative ….crt path", s.ID, s.CertPath))
		}
		if s.Signer != "" && !cas[s.Signer] {
			errs = append(errs, fmt.Errorf("%s: its signer %s is not a CA of the set", s.ID, s.Signer))
		}
		if len(s.Recipients) == 0 {
			errs = append(errs, fmt.Errorf("%s: no recipients for its key; list pki.admins", s.ID))
		}
		for _, r := range s.Recipients {
			if _, ok := parsed[r]; ok || bad[r] {
				continue
			}
			rec, err := ParseRecipient(r)
			if err != nil {
				bad[r] = true
				errs = append(errs, fmt.Errorf("%s (and every key of the same host or admins): %w", s.ID, err))
				continue
			}
			parsed[r] = rec
		}
	}
	return parsed, errors.Join(errs...)
}

// decide plans every Spec, CAs first.
func (a *Applier) decide(specs []pki.Spec, o *observer, now time.Time) []*task {
	ordered := slices.Clone(specs)
	rank := func(s pki.Spec) int {
		switch {
		case s.IsCA:
			return 0
		case s.KeyOnly:
			return 1
		}
		return 2
	}
	sort.SliceStable(ordered, func(i, j int) bool { return rank(ordered[i]) < rank(ordered[j]) })
	newCA := map[string]bool{}
	var tasks []*task
	for _, s := range ordered {
		t := &task{spec: s}
		if c, ok := o.out[s.ID]; ok {
			t.have = &c
		}
		if s.IsCA {
			a.decideCA(t, o, now)
			if t.action == pki.Issued {
				newCA[s.ID] = true
			}
		} else {
			a.decideLeaf(t, o, newCA, now)
		}
		tasks = append(tasks, t)
	}
	return tasks
}

// decideCA is Judge's verdict, but for a CA in rotation: it is held, and
// its new key is rekeyed with the old one.
func (a *Applier) decideCA(t *task, o *observer, now time.Time) {
	s, have := t.spec, t.have
	rot := o.rotations[s.ID]
	if rot == nil || have == nil {
		v := pki.Judge(s, have, false, now, a.RenewBefore)
		t.action, t.reason = v.Action, v.Reason
		return
	}
	t.nextKeyPath = pki.NextKeyPath(s.ID)
	if have.Next != nil {
		t.nextRecipients = have.Next.Recipients
	}
	hold := fmt.Sprintf("rotation at %s, applied %s; %s", rot.Phase, rot.Updated.UTC().Format(time.DateOnly), rot.Next())
	if !have.HasKey {
		hold = "its key " + s.KeyPath + " is missing; " + hold
	}
	differ, _ := have.Keys().Differ(s.Recipients)
	if have.HasKey && have.Error == "" && (differ || !pki.SameRecipients(t.nextRecipients, s.Recipients)) {
		t.action, t.reason = pki.Rekeyed, pki.JoinReasons("recipients changed; the key is re-encrypted, not reissued", hold)
		return
	}
	t.action, t.reason = pki.Held, hold
}

// decideLeaf is Judge's verdict, and what only the tree's signatures tell:
// a leaf its CA's current key did not sign is reissued.
func (a *Applier) decideLeaf(t *task, o *observer, newCA map[string]bool, now time.Time) {
	s, have := t.spec, t.have
	v := pki.Judge(s, have, newCA[s.Signer], now, a.RenewBefore)
	t.action, t.reason = v.Action, v.Reason
	if (v.Action == pki.Unchanged || v.Action == pki.Rekeyed) && !s.KeyOnly {
		if ok, why := o.signedByCurrent(have.CertPath, s.Signer); !ok {
			t.action, t.reason = pki.Reissued, why
		}
	}
}

// signedByCurrent reports whether the certificate at p was signed by a CA
// that may sign leaves of ca now: any CA of its bundle, but only the new one
// once a rotation has reached phase 2. why says what is wrong.
func (o *observer) signedByCurrent(p, ca string) (ok bool, why string) {
	caPath := pki.CACertPath(ca)
	if r := o.rotations[ca]; r != nil && r.Phase == pki.PhaseReissue {
		leaf := o.certs[p]
		if len(leaf) > 0 && leaf[0].CheckSignatureFrom(o.certs[caPath][1]) != nil {
			return false, fmt.Sprintf("signed by the old %s, which is being rotated (%s applied): its leaves move to the new CA", ca, pki.PhaseReissue)
		}
		return true, ""
	}
	if !o.signedBy(p, caPath) {
		return false, "not signed by the CA in " + caPath
	}
	return true, ""
}

// signedBy reports whether the certificate at p was signed by a CA in the
// file caPath; an unreadable CA file cannot say no.
func (o *observer) signedBy(p, caPath string) bool {
	leaf, cas := o.certs[p], o.certs[caPath]
	if len(leaf) == 0 || len(cas) == 0 {
		return true
	}
	for _, ca := range cas {
		if leaf[0].CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// loadKeys decrypts the CA keys that sign in this apply and the keys it
// re-encrypts. Any failure stops the apply before anything is issued.
func (a *Applier) loadKeys(tasks []*task, o *observer) (map[string]*pki.KeyPair, error) {
	var errs []error
	// Keys to re-encrypt first: one that does not match turns into a reissue,
	// which may need its CA.
	for _, t := range tasks {
		if t.action != pki.Rekeyed {
			continue
		}
		keyPEM, key, err := a.decryptKey(t.spec.KeyPath)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if pub := o.publicKey(t.have); pub == nil || !pki.KeyMatches(key, pub) {
			clear(keyPEM)
			if t.spec.IsCA {
				errs = append(errs, fmt.Errorf("%s does not match %s; a CA is replaced only through nestbot certs rotate-ca", t.spec.KeyPath, t.have.CertPath))
				continue
			}
			t.action, t.reason = pki.Reissued, "its key does not match its "+path.Base(t.have.CertPath)
			continue
		}
		t.keyPEM = keyPEM
		if t.nextKeyPath != "" {
			nextPEM, next, err := a.decryptKey(t.nextKeyPath)
			switch {
			case err != nil:
				errs = append(errs, err)
			case !pki.KeyMatches(next, o.certs[t.spec.CertPath][1].PublicKey):
				clear(nextPEM)
				errs = append(errs, fmt.Errorf("%s does not match the new CA in %s; restore both from git", t.nextKeyPath, t.spec.CertPath))
			default:
				t.nextKeyPEM = nextPEM
			}
		}
	}
	needCA := map[string]bool{}
	for _, t := range tasks {
		if t.spec.Signer != "" && (t.action == pki.Issued || t.action == pki.Reissued || t.action == pki.Renewed) {
			needCA[t.spec.Signer] = true
		}
	}
	signers := map[string]*pki.KeyPair{}
	for _, t := range tasks {
		if t.spec.IsCA && needCA[t.spec.ID] && t.action != pki.Issued {
			kp, err := a.loadCA(t, o)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			signers[t.spec.ID] = kp
		}
	}
	if err := errors.Join(errs...); err != nil {
		for _, t := range tasks {
			clear(t.keyPEM)
			clear(t.nextKeyPEM)
		}
		return nil, err
	}
	return signers, nil
}

func (a *Applier) loadCA(t *task, o *observer) (*pki.KeyPair, error) {
	certs := o.certs[t.spec.CertPath]
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s is needed to sign but unreadable", t.spec.CertPath)
	}
	// From phase 2 of a rotation on, the new CA signs.
	keyPath := t.spec.KeyPath
	if r := o.rotations[t.spec.ID]; r != nil && r.Phase == pki.PhaseReissue {
		keyPath = t.nextKeyPath
	}
	keyPEM, key, err := a.decryptKey(keyPath)
	clear(keyPEM)
	if err != nil {
		return nil, err
	}
	// The file may be a rotation bundle: sign with the CA whose key this is.
	for _, c := range certs {
		if c.IsCA && pki.KeyMatches(key, c.PublicKey) {
			return &pki.KeyPair{Cert: c, Key: key}, nil
		}
	}
	return nil, fmt.Errorf("%s does not match any CA certificate in %s", keyPath, t.spec.CertPath)
}

// decryptKey reads, decrypts and parses one .key.age file.
func (a *Applier) decryptKey(p string) ([]byte, crypto.Signer, error) {
	if a.Identity == nil {
		return nil, nil, fmt.Errorf("%s must be decrypted, but no identity was given: set NEST_AGE_IDENTITY (an age identity or OpenSSH ed25519 key among pki.admins)", p)
	}
	data, err := fs.ReadFile(a.Files, p)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", p, err)
	}
	plain, err := Decrypt(data, a.Identity)
	if err != nil {
		return nil, nil, fmt.Errorf("decrypt %s: %w; is the bot's recipient among pki.admins?", p, err)
	}
	key, err := pki.ParsePrivateKeyPEM(plain)
	if err != nil {
		clear(plain)
		return nil, nil, fmt.Errorf("%s: %w", p, err)
	}
	return plain, key, nil
}

// publicKey is the public key the observed certificate or key pair holds.
func (o *observer) publicKey(c *pki.ObservedCert) crypto.PublicKey {
	if c == nil {
		return nil
	}
	if certs := o.certs[c.CertPath]; len(certs) > 0 {
		return certs[0].PublicKey
	}
	if c.KeyOnly {
		if data, err := fs.ReadFile(o.fsys, c.CertPath); err == nil {
			if pub, err := pki.ParsePublicKeyPEM(data); err == nil {
				return pub
			}
		}
	}
	return nil
}
