package certtree

// CA rotation, in three phases, each its own apply and commit, so that no
// host ever holds a chain that fails to verify:
//
//  1. publish: a new CA (the same subject, a new key and serial) joins the
//     trust bundle ca/<stem>.crt, after the old one; its key is written to
//     ca/<stem>.next.key.age (encrypted like the old key). No leaf changes.
//  2. reissue: once every host has rolled phase 1 (the caller says so),
//     every leaf the CA signs is reissued by the new CA. The bundle still
//     holds both, so a host that has rolled phase 2 (new leaf) and one that
//     has not (old leaf) still verify each other.
//  3. drop: once every host has rolled phase 2, the bundle holds the new CA
//     alone, the new key moves to ca/<stem>.key.age, and the old key and
//     ca/<stem>.next.key.age are deleted (git history still holds the old
//     key, encrypted).
//
// Throughout, the first certificate of ca/<stem>.crt is the one whose key is
// ca/<stem>.key.age: old first, new after it. Kubernetes components read the
// bundle as a pool, where order does not matter; a tool that takes the
// first certificate of the file as "the CA" (kubeadm's loaders, a
// tls.X509KeyPair of the bundle and its key) keeps a matching pair until
// phase 3 swaps both at once.
//
// ca/<stem>.rotation (JSON, a Rotation) records the last phase applied; it
// is deleted by phase 3. A normal apply during a rotation signs new leaves
// with the old CA after phase 1 and with the new CA from phase 2 on.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/ducksnest/nestbot/pki"
)

// ErrRotationRefused is matched (errors.Is) by an error of RotateCA that
// refused to run a phase out of order or unconfirmed; nothing was written.
var ErrRotationRefused = errors.New("CA rotation phase refused")

// RotationStatus reads where every CA rotation in the tree stands, sorted by
// CA. A marker that does not agree with its bundle is an error naming both.
func RotationStatus(fsys fs.FS) ([]pki.Rotation, error) {
	var out []pki.Rotation
	var errs []error
	for _, ca := range pki.CAIDs() {
		var bundle []*x509.Certificate
		if _, err := fs.Stat(fsys, pki.RotationPath(ca)); err == nil {
			data, err := fs.ReadFile(fsys, pki.CACertPath(ca))
			if err == nil {
				bundle, err = pki.ParseCertificatesPEM(data)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", pki.CACertPath(ca), err))
			}
		}
		r, err := loadRotation(fsys, ca, bundle)
		if err != nil {
			errs = append(errs, err)
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, errors.Join(errs...)
}

// loadRotation reads CA ca's marker, if any, and checks it against the
// certificates of its bundle (old, then new).
func loadRotation(fsys fs.FS, ca string, bundle []*x509.Certificate) (*pki.Rotation, error) {
	p := pki.RotationPath(ca)
	data, err := fs.ReadFile(fsys, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var r pki.Rotation
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w; it records a CA rotation in progress: restore it from git", p, err)
	}
	if r.CA != ca {
		return nil, fmt.Errorf("%s: records a rotation of %q, want %q; restore it from git", p, r.CA, ca)
	}
	if r.Phase != pki.PhasePublish && r.Phase != pki.PhaseReissue {
		return nil, fmt.Errorf("%s: phase %q; a marker records publish or reissue (drop deletes it)", p, r.Phase)
	}
	var have []string
	for _, c := range bundle {
		have = append(have, serialHex(c))
	}
	if len(bundle) != 2 || have[0] != r.OldSerial || have[1] != r.NewSerial {
		return nil, fmt.Errorf("%s records the rotation of %s at %s with old serial %s and new serial %s, but %s holds serials [%s]; restore both files from git",
			p, ca, r.Phase, r.OldSerial, r.NewSerial, pki.CACertPath(ca), strings.Join(have, ", "))
	}
	return &r, nil
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// checkPhase refuses a phase that does not follow cur, or that needs every
// host to have rolled the previous one and rolled is false.
func checkPhase(cur *pki.Rotation, ca string, want pki.RotationPhase, rolled bool) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrRotationRefused, fmt.Sprintf(format, args...))
	}
	switch want {
	case pki.PhasePublish:
		if cur != nil {
			return refuse("a rotation of %s is already at %s, applied %s; phase 1 again would replace the new CA that hosts may already trust; %s",
				ca, cur.Phase, cur.Updated.UTC().Format(time.DateOnly), cur.Next())
		}
		return nil
	case pki.PhaseReissue, pki.PhaseDrop:
	default:
		return refuse("unknown phase %q; want publish, reissue or drop", want)
	}
	if cur == nil {
		return refuse("no rotation of %s is in progress (no %s); start with %s", ca, pki.RotationPath(ca), pki.PhasePublish)
	}
	prev := pki.PhasePublish
	if want == pki.PhaseDrop {
		prev = pki.PhaseReissue
	}
	switch {
	case cur.Phase == want:
		return refuse("%s of %s was already applied %s; %s", want, ca, cur.Updated.UTC().Format(time.DateOnly), cur.Next())
	case cur.Phase != prev:
		return refuse("%s of %s cannot follow %s: dropping the old CA now would break every leaf it still signs; run %s first",
			want, ca, cur.Phase, prev)
	case !rolled:
		what := "reissues every leaf under the new CA, which a host that has not rolled phase 1 does not trust yet"
		if want == pki.PhaseDrop {
			what = "removes the old CA from the bundle, which breaks every host still holding a leaf from before phase 2"
		}
		return refuse("%s %s; confirm that every host has rolled the commit of %s (nestbot rollout status) and run it again with that confirmation",
			want, what, prev)
	}
	return nil
}

// RotateCA applies one phase of the rotation of CA ca (ca, etcd-ca or
// front-proxy-ca), as the comment at the top of rotate.go describes, and
// reports what it wrote; specs is the certificate set, as Set returns it.
// rolled asserts that every host has rolled the commit of the previous
// phase: phases 2 and 3 refuse to run without it, and every phase refuses
// to run out of order (errors.Is(err, ErrRotationRefused)). Nothing is
// written unless every step succeeded first. Phases 2 and 3 decrypt the new
// CA key with a.Identity.
func (a *Applier) RotateCA(ctx context.Context, specs []pki.Spec, ca string, phase pki.RotationPhase, rolled bool) (*pki.Report, error) {
	rep, err := a.rotateCA(ctx, specs, ca, phase, rolled)
	if err != nil {
		return rep, fmt.Errorf("pki: rotate %s: %w", ca, err)
	}
	return rep, nil
}

func (a *Applier) rotateCA(ctx context.Context, specs []pki.Spec, ca string, phase pki.RotationPhase, rolled bool) (*pki.Report, error) {
	is := a.issuer()
	now := is.Time()
	caSpec := pki.ByID(specs)[ca]
	if caSpec == nil || !caSpec.IsCA {
		var cas []string
		for _, s := range specs {
			if s.IsCA {
				cas = append(cas, s.ID)
			}
		}
		return nil, fmt.Errorf("%w: %q is not a CA of the set; want %s", ErrRotationRefused, ca, strings.Join(cas, ", "))
	}
	recipients, err := checkSpecs(specs)
	if err != nil {
		return nil, err
	}
	o := observeTree(a.Files, "", now)
	if err := errors.Join(o.fatal...); err != nil {
		return nil, err
	}
	cur := o.rotations[ca]
	if err := checkPhase(cur, ca, phase, rolled); err != nil {
		return nil, err
	}
	have, ok := o.out[ca]
	switch {
	case !ok:
		return nil, fmt.Errorf("%s is missing: there is no CA to rotate (nestbot certs apply issues one)", caSpec.CertPath)
	case have.Error != "":
		return nil, fmt.Errorf("%s is unreadable (%s): restore it from git before rotating", have.CertPath, have.Error)
	case !have.HasKey:
		return nil, fmt.Errorf("%s is missing: restore it from git before rotating", have.KeyPath)
	}
	r := &rotation{a: a, o: o, ca: ca, spec: *caSpec, cur: cur, now: now, rules: cloneRules(o.rules)}
	switch phase {
	case pki.PhasePublish:
		err = r.publish(is, recipients)
	case pki.PhaseReissue:
		err = r.reissue(ctx, is, recipients, specs)
	case pki.PhaseDrop:
		err = r.drop()
	}
	if err != nil {
		return nil, err
	}
	return r.write()
}

// rotation is the in-memory work of one phase.
type rotation struct {
	a    *Applier
	o    *observer
	ca   string
	spec pki.Spec      // the CA's
	cur  *pki.Rotation // before this phase; nil for phase 1
	now  time.Time

	next     *pki.Rotation // the marker after this phase; nil once dropped
	results  []pki.Result
	keys     []fileWrite
	certs    []fileWrite
	removals []string
	rules    map[string][]string // secrets.nix after this phase
	report   pki.Rotation        // the Report's record of this phase
}

// publish is phase 1: a new CA, appended to the bundle; its key beside the old.
func (r *rotation) publish(is *pki.Issuer, recipients map[string]age.Recipient) error {
	bundle := r.o.certs[r.spec.CertPath]
	if len(bundle) != 1 {
		return fmt.Errorf("%s holds %d certificates, but no rotation is recorded in %s; keep only the CA whose key is %s, then start again",
			r.spec.CertPath, len(bundle), pki.RotationPath(r.ca), r.spec.KeyPath)
	}
	kp, err := is.Issue(r.spec, nil)
	if err != nil {
		return err
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		return fmt.Errorf("new %s: %w", r.ca, err)
	}
	enc, err := (&issuing{recipients: recipients}).encrypt(keyPEM, r.spec.Recipients)
	clear(keyPEM)
	if err != nil {
		return fmt.Errorf("new %s: %s: %w", r.ca, pki.NextKeyPath(r.ca), err)
	}
	old, err := fs.ReadFile(r.o.fsys, r.spec.CertPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", r.spec.CertPath, err)
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	r.keys = append(r.keys, fileWrite{pki.NextKeyPath(r.ca), enc})
	r.certs = append(r.certs, fileWrite{r.spec.CertPath, append(old, kp.CertPEM...)})
	r.rules[pki.NextKeyPath(r.ca)] = r.spec.Recipients
	r.next = &pki.Rotation{CA: r.ca, Phase: pki.PhasePublish, Started: r.now, Updated: r.now,
		OldSerial: serialHex(bundle[0]), NewSerial: serialHex(kp.Cert), NewNotAfter: kp.Cert.NotAfter.UTC()}
	r.results = append(r.results, pki.Result{ID: r.ca, Action: pki.Rotated, NotAfter: kp.Cert.NotAfter,
		Reason: fmt.Sprintf("%s: a new CA (serial %s) joins %s after the old one; its key is %s; no leaf changes",
			pki.PhasePublish, pki.ShortSerial(r.next.NewSerial), r.spec.CertPath, pki.NextKeyPath(r.ca)),
		Files: []string{pki.NextKeyPath(r.ca), r.spec.CertPath, pki.RotationPath(r.ca)}})
	return nil
}

// nextSigner decrypts the new CA's key and pairs it with the new certificate.
func (r *rotation) nextSigner() (*pki.KeyPair, error) {
	newCert := r.o.certs[r.spec.CertPath][1] // loadRotation checked the bundle
	keyPEM, key, err := r.a.decryptKey(pki.NextKeyPath(r.ca))
	clear(keyPEM)
	if err != nil {
		return nil, err
	}
	if !pki.KeyMatches(key, newCert.PublicKey) {
		return nil, fmt.Errorf("%s does not match the new CA (serial %s) in %s; restore both from git",
			pki.NextKeyPath(r.ca), pki.ShortSerial(r.cur.NewSerial), r.spec.CertPath)
	}
	return &pki.KeyPair{Cert: newCert, Key: key}, nil
}

// reissue is phase 2: every leaf of the CA, signed by the new CA.
func (r *rotation) reissue(ctx context.Context, is *pki.Issuer, recipients map[string]age.Recipient, specs []pki.Spec) error {
	signer, err := r.nextSigner()
	if err != nil {
		return err
	}
	var tasks []*task
	for _, s := range specs {
		if s.Signer != r.ca || s.KeyOnly {
			continue
		}
		t := &task{spec: s, action: pki.Issued, reason: "missing; signed by the new " + r.ca}
		if c, ok := r.o.out[s.ID]; ok {
			t.have = &c
			t.action, t.reason = pki.Reissued, fmt.Sprintf("%s of %s: signed by the new CA", pki.PhaseReissue, r.ca)
		}
		tasks = append(tasks, t)
	}
	w := &issuing{issuer: is, recipients: recipients, signers: map[string]*pki.KeyPair{r.ca: signer}, parallel: r.a.Parallel}
	if err := w.runAll(ctx, tasks); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, t := range tasks {
		res := pki.Result{ID: t.spec.ID, Action: t.action, Reason: t.reason, NotAfter: t.notAfter}
		for _, f := range t.writes {
			res.Files = append(res.Files, f.path)
			if pki.IsAgeFile(f.path) {
				r.keys = append(r.keys, f)
			} else {
				r.certs = append(r.certs, f)
			}
		}
		r.rules[t.spec.KeyPath] = t.spec.Recipients
		r.results = append(r.results, res)
	}
	next := *r.cur
	next.Phase, next.Updated = pki.PhaseReissue, r.now
	r.next = &next
	r.results = append(r.results, pki.Result{ID: r.ca, Action: pki.Rotated, NotAfter: next.NewNotAfter,
		Reason: fmt.Sprintf("%s: %d leaves now signed by the new CA (serial %s); %s still holds both CAs",
			pki.PhaseReissue, len(tasks), pki.ShortSerial(next.NewSerial), r.spec.CertPath),
		Files: []string{pki.RotationPath(r.ca)}})
	return nil
}

// drop is phase 3: the bundle holds the new CA alone, whose key replaces the old.
func (r *rotation) drop() error {
	signer, err := r.nextSigner() // the new key must work before the old one is deleted
	if err != nil {
		return err
	}
	var stillOld []string
	for _, c := range r.o.out {
		if c.IsCA || c.SignerPath != r.spec.CertPath || c.Error != "" {
			continue
		}
		if leaf := r.o.certs[c.CertPath]; len(leaf) > 0 && leaf[0].CheckSignatureFrom(signer.Cert) != nil {
			stillOld = append(stillOld, c.CertPath)
		}
	}
	if len(stillOld) > 0 {
		sort.Strings(stillOld)
		return fmt.Errorf("%w: %s %s not signed by the new CA and would stop verifying once the old one is dropped; run nestbot certs apply first (during a rotation at phase 2 it reissues them under the new CA, and deletes those no host needs), let the hosts roll it, then drop",
			ErrRotationRefused, strings.Join(stillOld, ", "), map[bool]string{true: "is", false: "are"}[len(stillOld) == 1])
	}
	nextKey, err := fs.ReadFile(r.o.fsys, pki.NextKeyPath(r.ca))
	if err != nil {
		return fmt.Errorf("read %s: %w", pki.NextKeyPath(r.ca), err)
	}
	keyRecipients, ok := r.rules[pki.NextKeyPath(r.ca)]
	if !ok {
		keyRecipients = r.spec.Recipients
	}
	r.keys = append(r.keys, fileWrite{r.spec.KeyPath, nextKey}) // moved as is: already encrypted
	r.certs = append(r.certs, fileWrite{r.spec.CertPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signer.Cert.Raw})})
	r.removals = append(r.removals, pki.NextKeyPath(r.ca), pki.RotationPath(r.ca))
	r.rules[r.spec.KeyPath] = keyRecipients
	delete(r.rules, pki.NextKeyPath(r.ca))
	r.report = *r.cur
	r.report.Phase, r.report.Updated = pki.PhaseDrop, r.now
	r.results = append(r.results, pki.Result{ID: r.ca, Action: pki.Rotated, NotAfter: signer.Cert.NotAfter,
		Reason: fmt.Sprintf("%s: %s holds the new CA (serial %s) alone, its key is now %s; the old CA and its key are gone",
			pki.PhaseDrop, r.spec.CertPath, pki.ShortSerial(r.cur.NewSerial), r.spec.KeyPath),
		Files: []string{r.spec.KeyPath, r.spec.CertPath, pki.NextKeyPath(r.ca), pki.RotationPath(r.ca)}})
	return nil
}

// write checks every file of the phase, then writes keys, certificates, the
// marker, removals and secrets.nix, in that order.
func (r *rotation) write() (*pki.Report, error) {
	rep := &pki.Report{Results: r.results}
	if r.next != nil {
		rep.Rotation = r.next
		data, err := json.MarshalIndent(r.next, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", pki.RotationPath(r.ca), err)
		}
		r.certs = append(r.certs, fileWrite{pki.RotationPath(r.ca), append(data, '\n')})
	} else {
		rep.Rotation = &r.report
	}
	sort.Slice(rep.Results, func(i, j int) bool { return rep.Results[i].ID < rep.Results[j].ID })
	files, err := r.a.checkFiles(r.keys, r.certs, r.removals, r.rules)
	if err != nil {
		return nil, err
	}
	for _, res := range rep.Results {
		r.a.log().Info("pki: certificate", "id", res.ID, "action", string(res.Action), "reason", res.Reason, "files", res.Files)
	}
	if err := r.a.writeFiles(files, nil, rep); err != nil {
		return rep, err
	}
	r.a.log().Info("pki: rotate-ca done", "ca", r.ca, "phase", string(rep.Rotation.Phase), "summary", rep.Summary())
	return rep, nil
}

// cloneRules copies secrets.nix as read, for a phase to change.
func cloneRules(m map[string][]string) map[string][]string {
	if m == nil {
		return map[string][]string{}
	}
	return maps.Clone(m)
}
