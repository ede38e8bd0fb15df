package pki

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

// Desire is the certificate set a fleet wants of the tree it has: the
// certificates its roles call for (Set), with every certificate the tree
// already holds adopted as it is, and what is to be deleted.
//
// A certificate nestbot did not issue (it lacks nestbot's certificate
// policy) is desired as it is — its CA, subject, SANs, usages, key type,
// lifetime and file name — unless nest.yaml says otherwise: the SANs
// nest.yaml names for it (hosts.<host>.addresses, pki.extra_sans) are
// added. Its renewal keeps the rest and re-signs it with the same CA, as
// kubeadm certs renew does. It is never deleted unless pki.remove lists it.
// A certificate nestbot issued follows the roles exactly, and is deleted
// when no host needs it any more. A CA is never deleted but through
// pki.remove.
type Desire struct {
	Layout string
	// LayoutFromTree is set when pki.layout is unset and the tree decided it.
	LayoutFromTree bool
	Specs          []Spec    // sorted by ID
	Remove         []Removal // sorted by ID
	// Notes say what is kept as it is and not managed, and what pki.remove
	// lists that the tree does not hold.
	Notes []string
}

// Removal is a certificate (or key pair) and its key, to be deleted.
type Removal struct {
	ID       string
	CertPath string // the .crt, or a key pair's .pub
	KeyPath  string
	IsCA     bool
	// IssuedByNestbot is false for a certificate nestbot adopted: only
	// pki.remove deletes one, and a plan says so loudly.
	IssuedByNestbot bool
	Reason          string
}

// DetectLayout is the layout of a tree: k8nix when it holds K8Nix's CA
// (ca/k8s.crt) and not kubeadm's, else kubeadm.
func DetectLayout(tree map[string]ObservedCert) string {
	_, k8s := tree[K8sCA]
	_, kubeadm := tree[CA]
	if k8s && !kubeadm {
		return nest.LayoutK8Nix
	}
	return nest.LayoutKubeadm
}

// Desired is the Desire of fleet f for tree (as Observe reads it): Set,
// in the layout pki.layout names or, unset, the tree's (DetectLayout),
// with the tree adopted. An error says what nest.yaml asks that cannot be
// done: pki.remove listing a certificate the roles need, or a CA that
// signs certificates the set keeps.
func Desired(f *nest.Fleet, hostKeys map[string]string, facts map[string]HostFacts, tree map[string]ObservedCert) (*Desire, error) {
	if f.PKI == nil {
		return &Desire{}, nil
	}
	k := *f.PKI
	d := &Desire{Layout: k.Layout}
	if d.Layout == "" {
		d.Layout, d.LayoutFromTree = DetectLayout(tree), true
		if d.Layout == nest.LayoutK8Nix {
			d.Notes = append(d.Notes, "pki.layout is not set and the tree holds K8Nix's CA (ca/k8s.crt): planned as pki.layout: k8nix")
		}
	}
	k.Layout = d.Layout
	if ca, ok := tree[K8sCA]; ok && d.Layout == nest.LayoutK8Nix && k.Organization == "" && len(ca.Organization) > 0 {
		k.Organization = ca.Organization[0] // the CA's O= is the fleet's
	}
	ff := *f
	ff.PKI = &k
	admins := NormalizeRecipients(k.Admins)
	hostOfDir := map[string]string{}
	for name, h := range f.Hosts {
		hostOfDir[hostDir(h)] = name
	}
	recipientsFor := func(dir string) []string {
		key := hostKeys[path.Base(dir)]
		if host, ok := hostOfDir[dir]; ok {
			key = hostKeys[host]
		}
		return SortedUnique(appendKey(slices.Clone(admins), key))
	}

	profile := Set(&ff, hostKeys, facts)
	d.Specs = make([]Spec, 0, len(profile))
	want := make(map[string]bool, len(profile))
	cas := map[string]bool{}
	var errs []string
	for _, s := range profile {
		want[s.ID] = true
		if s.IsCA {
			cas[s.ID] = true
		}
	}
	removed := map[string]bool{} // pki.remove entries that match something
	listedIn := func(p string) string {
		for _, r := range k.Remove {
			if p == r || strings.HasSuffix(r, "/") && strings.HasPrefix(p, r) {
				removed[r] = true
				return r
			}
		}
		return ""
	}
	for _, s := range profile {
		c, found := tree[s.ID]
		if r := listedIn(s.CertPath + PublicKeyPath(s)); r != "" {
			what := "is a CA of the " + d.Layout + " layout"
			if s.Host != "" {
				what = "is a certificate host " + s.Host + "'s roles need; remove the host or the role instead"
			}
			errs = append(errs, fmt.Sprintf("pki.remove lists %s, but %s %s", r, s.CertPath+PublicKeyPath(s), what))
		}
		if found && c.Error == "" && !c.KeyOnly && !c.IssuedByNestbot {
			s = adopt(s, c, cas)
		}
		d.Specs = append(d.Specs, s)
	}
	ids := slices.Sorted(maps.Keys(tree))
	for _, id := range ids {
		c := tree[id]
		if want[id] {
			continue
		}
		leaf := strings.Contains(id, "/")
		if r := listedIn(c.CertPath); r != "" {
			d.Remove = append(d.Remove, Removal{ID: id, CertPath: c.CertPath, KeyPath: c.KeyPath, IsCA: c.IsCA || !leaf,
				IssuedByNestbot: c.IssuedByNestbot, Reason: "pki.remove lists " + r})
			continue
		}
		where := cmp.Or(c.CertPath, id)
		switch {
		case c.Error != "":
			d.Notes = append(d.Notes, fmt.Sprintf("%s is unreadable and no host's role needs it: left alone (list it in pki.remove to delete it)", where))
		case leaf && c.IssuedByNestbot:
			d.Remove = append(d.Remove, Removal{ID: id, CertPath: c.CertPath, KeyPath: c.KeyPath, IssuedByNestbot: true, Reason: "no host needs it any more"})
		case c.KeyOnly:
			d.Notes = append(d.Notes, fmt.Sprintf("%s is a key pair the %s layout does not use: left alone (list it in pki.remove to delete it)", where, d.Layout))
		case !leaf && !c.IsCA:
			d.Notes = append(d.Notes, fmt.Sprintf("%s is in ca/ but not a CA: left alone (list it in pki.remove to delete it)", where))
		case !leaf:
			s := found(c)
			s.IsCA, s.Recipients, s.Adopted = true, admins, !c.IssuedByNestbot
			d.Specs = append(d.Specs, s)
			cas[id] = true
			d.Notes = append(d.Notes, fmt.Sprintf("%s is a CA the %s layout does not use: kept as it is (list it in pki.remove to delete it)", where, d.Layout))
		}
	}
	// The adopted leaves, once every CA is known.
	for _, id := range ids {
		c := tree[id]
		if want[id] || !strings.Contains(id, "/") || c.Error != "" || c.IssuedByNestbot || listedIn(c.CertPath) != "" {
			continue
		}
		dir := path.Dir(c.CertPath)
		switch {
		case c.Signer == "" || !cas[c.Signer]:
			d.Notes = append(d.Notes, fmt.Sprintf("%s is signed by no CA in ca/ (its issuer: %s): nestbot cannot renew it and leaves it alone", c.CertPath, orNone(c.Issuer)))
			continue
		case c.Signer != "" && tree[c.Signer].Error != "":
			continue // its CA is unreadable: the CA's own finding says so
		}
		s := found(c)
		s.Name = strings.TrimPrefix(strings.TrimSuffix(path.Base(c.CertPath), ".crt"), CADir(c.Signer)+"-")
		s.Host, s.Signer, s.Adopted = hostOfDir[dir], c.Signer, true
		s.Recipients = recipientsFor(dir)
		if why := CanIssue(s); why != "" {
			d.Notes = append(d.Notes, fmt.Sprintf("%s has %s: nestbot cannot renew it and leaves it alone", c.CertPath, why))
			continue
		}
		d.Specs = append(d.Specs, s)
	}
	for _, s := range d.Specs {
		if s.Signer == "" {
			continue
		}
		for _, r := range d.Remove {
			if r.ID == s.Signer {
				errs = append(errs, fmt.Sprintf("pki.remove lists %s, but it signs %s, which the set keeps", r.CertPath, s.CertPath))
			}
		}
	}
	for _, r := range k.Remove {
		if !removed[r] {
			d.Notes = append(d.Notes, fmt.Sprintf("pki.remove lists %s, which the tree does not hold (deleted already?): the entry can go", r))
		}
	}
	sortSpecs(d.Specs)
	slices.SortFunc(d.Remove, func(a, b Removal) int { return strings.Compare(a.ID, b.ID) })
	if len(errs) > 0 {
		return d, fmt.Errorf("pki: %s", strings.Join(compactSorted(errs), "; "))
	}
	return d, nil
}

// found is the Spec of certificate c as the tree holds it: its subject,
// SANs, usages, key type, lifetime and files.
func found(c ObservedCert) Spec {
	s := Spec{ID: c.ID, Name: c.ID, CertPath: c.CertPath, KeyPath: c.KeyPath}
	return adopt(s, c, nil)
}

// adopt makes s what the tree's certificate c is: its subject, usages,
// key type, lifetime and CA (when that CA is one of cas), and its SANs
// with those nest.yaml requires added.
func adopt(s Spec, c ObservedCert, cas map[string]bool) Spec {
	s.Adopted = !c.IssuedByNestbot
	s.CommonName, s.Organization, s.RawSubject = c.CommonName, slices.Clone(c.Organization), c.RawSubject
	s.Usages = slices.Compact(slices.Clone(c.Usages)) // in its order
	s.KeyAlgorithm = c.KeyAlgorithm
	if life := c.NotAfter.Sub(c.NotBefore); life > 0 {
		s.Validity = life
	}
	// In the certificate's order, which the renewal keeps; what nest.yaml
	// requires after.
	s.DNSNames = appendMissing(c.DNSNames, dnsOnly(s.RequiredSANs))
	s.IPs = appendMissing(c.IPs, ipsOnly(s.RequiredSANs))
	s.SANsIncomplete, s.FactSANs = false, false
	if c.Signer != "" && cas[c.Signer] {
		s.Signer = c.Signer
	}
	return s
}

// appendMissing is have, then what of more it lacks.
func appendMissing(have, more []string) []string {
	out := slices.Clone(have)
	for _, m := range more {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func compactSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
