package reconcile

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

// PKINotePrefix begins every note the certificate plane makes.
const PKINotePrefix = "pki: "

func (p *planner) pki() {
	if p.f.PKI == nil {
		return
	}
	tree := observedTree(p.live.PKI.Certs)
	desire, err := pki.Desired(p.f, p.d.HostKeys, p.hostFacts(), tree)
	if err != nil {
		p.errorf("%v", err)
	}
	now := p.live.ObservedAt
	renewBefore := p.f.PKI.RenewBefore.Duration
	for _, n := range desire.Notes {
		p.note("%s%s", PKINotePrefix, n)
	}
	// A CA that is issued in this plan takes every leaf it signs with it.
	newCA := map[string]bool{}
	for _, s := range desire.Specs {
		if _, ok := tree[s.ID]; s.IsCA && !ok {
			newCA[s.ID] = true
		}
	}
	for _, name := range p.hostNames() {
		if p.d.HostKeys[name] == "" {
			p.note("%s%s has no pinned host key (%s/hosts/%s.pub): its keys are encrypted to the admins only until it is learned", PKINotePrefix, name, p.f.PKI.Dir, name)
		}
	}
	for _, s := range desire.Specs {
		addr := CertAddress(s.ID)
		var have *pki.ObservedCert
		if c, ok := tree[s.ID]; ok {
			have = &c
		}
		if have != nil && s.Host != "" && p.created[s.Host] && s.FactSANs && !s.Adopted && !newCA[s.Signer] && len(have.IPs) > 0 {
			// A new instance for the host: its addresses change, and the
			// apply reissues the certificate once the instance has joined.
			p.add(Step{Plane: PlanePKI, Action: ActionReissue, Address: addr, Reason: "its host gets a new instance, with new addresses",
				Changes: []Change{{Attr: "ips", Before: strings.Join(sortedCopy(have.IPs), ", "), After: KnownAfterApply}}})
			continue
		}
		v := pki.Judge(s, have, newCA[s.Signer], now, renewBefore)
		switch v.Action {
		case pki.Issued:
			reason := v.Reason
			if s.Host != "" && p.created[s.Host] && !newCA[s.Signer] {
				reason = "new host"
			}
			if s.SANsIncomplete {
				reason += "; its addresses are added once the host has joined"
			}
			p.add(Step{Plane: PlanePKI, Action: ActionIssue, Address: addr, Reason: reason, Changes: specChanges(s)})
		case pki.Reissued:
			p.add(Step{Plane: PlanePKI, Action: ActionReissue, Address: addr, Reason: v.Reason, Changes: certDrift(s, *have, v.Drift)})
		case pki.Renewed:
			p.add(Step{Plane: PlanePKI, Action: ActionRenew, Address: addr, Reason: v.Reason,
				Changes: []Change{{Attr: "not_after", Before: have.NotAfter.UTC().Format(time.DateOnly), After: now.Add(s.Validity).UTC().Format(time.DateOnly)}}})
		case pki.Rekeyed:
			before := recipientsString(have.Recipients)
			if have.Recipients == nil {
				before = "(" + strings.Join(have.KeyStanzas, ", ") + ")"
			}
			p.add(Step{Plane: PlanePKI, Action: ActionRekey, Address: addr, Reason: v.Reason,
				Changes: []Change{{Attr: "recipients", Before: before, After: recipientsString(s.Recipients)}}})
		case pki.Held:
			// Reported, not changed: the apply holds a CA, so a step to
			// renew it would never be done.
			p.add(Step{Plane: PlanePKI, Action: ActionDrift, Address: addr, Reason: v.Reason})
		case pki.Unchanged:
			if have != nil && len(p.live.PKI.Certs[s.ID].NotRolled) > 0 {
				p.add(Step{Plane: PlanePKI, Action: ActionDrift, Address: addr,
					Reason: "not yet rolled: " + strings.Join(p.live.PKI.Certs[s.ID].NotRolled, ", ") + " still serve an older certificate"})
			}
		}
	}
	for _, r := range desire.Remove {
		p.add(Step{Plane: PlanePKI, Action: ActionDelete, Address: CertAddress(r.ID), Reason: pki.RemovalReason(r)})
		if !r.IssuedByNestbot {
			p.warn("This plan deletes %s, which nestbot did not issue (it lacks nestbot's certificate policy): %s", r.CertPath, r.Reason)
		}
	}
}

// observedTree is the tree as the live snapshot holds it, in the form pki
// judges it. A snapshot without the adoption fields (written before them)
// reads as a tree nestbot issued.
func observedTree(certs map[string]Cert) map[string]pki.ObservedCert {
	out := make(map[string]pki.ObservedCert, len(certs))
	for id, c := range certs {
		out[id] = pki.ObservedCert{ID: id, CertPath: c.Path, KeyPath: pki.KeyPathFor(c.Path), HasKey: true, KeyOnly: c.KeyOnly,
			CommonName: c.CommonName, Organization: c.Organization, DNSNames: c.DNSNames, IPs: c.IPs, Usages: c.Usages,
			IsCA: c.IsCA, Issuer: c.Issuer, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Recipients: c.Recipients,
			KeyStanzas: c.KeyStanzas, KeyAlgorithm: c.KeyAlgorithm, Signer: c.Signer, IssuedByNestbot: !c.Adopted}
	}
	return out
}

// certDrift lists the attributes of drift, with the values the
// certificate has and its spec wants.
func certDrift(s pki.Spec, c pki.ObservedCert, drift []string) []Change {
	join := func(v []string) string { return strings.Join(sortedCopy(v), ", ") }
	values := map[string][2]string{
		"common_name":  {c.CommonName, s.CommonName},
		"organization": {join(c.Organization), join(s.Organization)},
		"usages":       {join(c.Usages), join(s.Usages)},
		"dns_names":    {join(c.DNSNames), join(s.DNSNames)},
		"ips":          {join(c.IPs), join(s.IPs)},
		"is_ca":        {fmt.Sprint(c.IsCA), fmt.Sprint(s.IsCA)},
	}
	var out []Change
	for _, attr := range drift {
		v := values[attr]
		out = append(out, Change{Attr: attr, Before: v[0], After: v[1]})
	}
	return out
}

func specChanges(s pki.Spec) []Change {
	var out []Change
	add := func(attr, v string) {
		if v != "" {
			out = append(out, Change{Attr: attr, After: v})
		}
	}
	if s.KeyOnly {
		add("key", "rsa-2048 key pair")
	} else {
		add("common_name", s.CommonName)
		add("organization", strings.Join(s.Organization, ", "))
		add("usages", strings.Join(s.Usages, ", "))
		add("dns_names", strings.Join(s.DNSNames, ", "))
		add("ips", strings.Join(s.IPs, ", "))
		add("signer", s.Signer)
		add("validity", nest.Duration{Duration: s.Validity}.String())
		add("cert", s.CertPath)
	}
	add("key_file", s.KeyPath)
	add("recipients", recipientsString(s.Recipients))
	return out
}

// recipientsString shortens recipients for display: the key type and the
// first characters of the key are enough to tell them apart.
func recipientsString(rs []string) string {
	out := make([]string, 0, len(rs))
	for _, r := range sortedCopy(rs) {
		if strings.HasPrefix(r, "ssh-") {
			f := strings.Fields(r)
			if len(f) >= 2 && len(f[1]) > 20 {
				r = f[0] + " …" + f[1][len(f[1])-8:]
			}
		} else if len(r) > 16 {
			r = r[:12] + "…" + r[len(r)-4:]
		}
		out = append(out, r)
	}
	return strings.Join(out, ", ")
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}
