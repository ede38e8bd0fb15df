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

// CertAddress returns the plan address of a certificate or key.
func CertAddress(id string) string {
	if id == pki.ServiceAccount {
		return "pki.key." + id
	}
	return "pki.cert." + id
}

func (p *planner) pki() {
	if p.f.PKI == nil {
		return
	}
	specs := pki.Set(p.f, p.d.HostKeys, p.hostFacts())
	certs := p.live.PKI.Certs
	now := p.live.ObservedAt
	renewBefore := p.f.PKI.RenewBefore.Duration
	// A CA that is issued (or reissued) in this plan takes every leaf it signs with it.
	newCA := map[string]bool{}
	for _, s := range specs {
		if s.IsCA {
			if _, ok := certs[s.ID]; !ok {
				newCA[s.ID] = true
			}
		}
	}
	for _, name := range p.hostNames() {
		if p.d.HostKeys[name] == "" {
			p.note("%s has no pinned host key (%s/hosts/%s.pub): its keys are encrypted to the admins only until it is learned", name, p.f.PKI.Dir, name)
		}
	}
	for _, s := range specs {
		addr := CertAddress(s.ID)
		have, ok := certs[s.ID]
		if !ok {
			reason := "missing"
			switch {
			case s.Signer != "" && newCA[s.Signer]:
				reason = "new " + s.Signer
			case s.Host != "" && p.created[s.Host]:
				reason = "new host"
			}
			if s.SANsIncomplete {
				reason += "; its addresses are added once the host has joined"
			}
			p.add(Step{Plane: PlanePKI, Action: ActionIssue, Address: addr, Reason: reason, Changes: specChanges(s)})
			continue
		}
		if s.Signer != "" && newCA[s.Signer] {
			p.add(Step{Plane: PlanePKI, Action: ActionReissue, Address: addr, Reason: "its CA " + s.Signer + " is new"})
			continue
		}
		if s.Host != "" && p.created[s.Host] && len(have.IPs) > 0 {
			// A new instance for the host: its addresses change, and the
			// apply reissues the certificate once the instance has joined.
			p.add(Step{Plane: PlanePKI, Action: ActionReissue, Address: addr, Reason: "its host gets a new instance, with new addresses",
				Changes: []Change{{Attr: "ips", Before: strings.Join(sortedCopy(have.IPs), ", "), After: KnownAfterApply}}})
			continue
		}
		if drift := certDrift(s, have); len(drift) > 0 {
			var attrs []string
			for _, c := range drift {
				attrs = append(attrs, c.Attr)
			}
			p.add(Step{Plane: PlanePKI, Action: ActionReissue, Address: addr, Reason: strings.Join(attrs, ", ") + " changed", Changes: drift})
			continue
		}
		if !s.KeyOnly {
			if due, why := pki.RenewalDue(have.NotBefore, have.NotAfter, now, renewBefore); due {
				reason := why
				if s.IsCA {
					reason += "; a CA is rotated in phases: nestbot certs rotate-ca"
				}
				p.add(Step{Plane: PlanePKI, Action: ActionRenew, Address: addr, Reason: reason,
					Changes: []Change{{Attr: "not_after", Before: have.NotAfter.UTC().Format(time.DateOnly), After: now.Add(s.Validity).UTC().Format(time.DateOnly)}}})
				continue
			}
		}
		if !sameRecipients(have.Recipients, s.Recipients) {
			p.add(Step{Plane: PlanePKI, Action: ActionRekey, Address: addr, Reason: "recipients changed; the key is re-encrypted, not reissued",
				Changes: []Change{{Attr: "recipients", Before: recipientsString(have.Recipients), After: recipientsString(s.Recipients)}}})
			continue
		}
		if len(have.NotRolled) > 0 {
			p.add(Step{Plane: PlanePKI, Action: ActionDrift, Address: addr,
				Reason: "not yet rolled: " + strings.Join(have.NotRolled, ", ") + " still serve an older certificate"})
		}
	}
	// Certificates in the tree that no host needs any more.
	want := map[string]bool{}
	for _, s := range specs {
		want[s.ID] = true
	}
	var stale []string
	for id := range certs {
		if !want[id] {
			stale = append(stale, id)
		}
	}
	sort.Strings(stale)
	for _, id := range stale {
		p.add(Step{Plane: PlanePKI, Action: ActionDelete, Address: CertAddress(id), Reason: "no host needs it any more"})
	}
}

// certDrift lists what a certificate says that its spec no longer does
// (pki.Drift), with the values before and after.
func certDrift(s pki.Spec, c Cert) []Change {
	drift := pki.Drift(s, &pki.ObservedCert{CommonName: c.CommonName, Organization: c.Organization,
		Usages: c.Usages, DNSNames: c.DNSNames, IPs: c.IPs, IsCA: c.IsCA})
	if len(drift) == 0 {
		return nil
	}
	join := func(v []string) string { return strings.Join(sortedCopy(v), ", ") }
	values := map[string][2]string{
		"common_name":  {c.CommonName, s.CommonName},
		"organization": {join(c.Organization), join(s.Organization)},
		"usages":       {join(c.Usages), join(s.Usages)},
		"dns_names":    {join(c.DNSNames), join(s.DNSNames)},
		"ips":          {join(c.IPs), join(s.IPs)},
		"is_ca":        {fmt.Sprint(c.IsCA), fmt.Sprint(s.IsCA)},
	}
	out := make([]Change, 0, len(drift))
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

// sameRecipients reports whether the recipients a key was encrypted to are
// want (normalized, sorted and unique, as pki.Set gives them). A list that
// is already want's, as after every apply, is compared without normalizing.
func sameRecipients(have, want []string) bool {
	return slices.Equal(have, want) || slices.Equal(normalizedRecipients(have), want)
}

func normalizedRecipients(rs []string) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, pki.NormalizeRecipient(r))
	}
	sort.Strings(out)
	return slices.Compact(out)
}
