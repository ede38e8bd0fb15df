package pki

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// CertStatus is how one certificate stands, as nestbot certs status shows it.
type CertStatus string

// The statuses, from the most urgent.
const (
	StatusExpired CertStatus = "expired" // past its not-after
	StatusReissue CertStatus = "reissue" // broken as it is: unreadable, its key missing, its chain does not verify
	StatusMissing CertStatus = "missing" // nest.yaml needs it; the tree lacks it
	StatusDrift   CertStatus = "drift"   // differs from nest.yaml (or, without it, from the tree's layout): subject, SANs, usages or recipients; or no host needs it
	StatusRenew   CertStatus = "renew"   // due by renew_before or past 2/3 of its lifetime
	StatusOK      CertStatus = "ok"
)

func (s CertStatus) rank() int {
	switch s {
	case StatusExpired:
		return 5
	case StatusReissue:
		return 4
	case StatusMissing:
		return 3
	case StatusDrift:
		return 2
	case StatusRenew:
		return 1
	}
	return 0
}

// StatusRow is one line of nestbot certs status.
type StatusRow struct {
	ID           string     `json:"id"`
	Path         string     `json:"path,omitempty"` // the .crt (or .pub), relative to pki.dir
	CommonName   string     `json:"common_name,omitempty"`
	Organization []string   `json:"organization,omitempty"`
	SANs         []string   `json:"sans,omitempty"`   // DNS names, then IP addresses
	Usages       []string   `json:"usages,omitempty"` // server, client; "ca" for a CA; "key pair" for the service account
	Issuer       string     `json:"issuer,omitempty"` // the issuer's common name
	NotAfter     time.Time  `json:"not_after,omitzero"`
	DaysLeft     *int       `json:"days_left,omitempty"`      // nil when missing or unreadable
	Verifies     *bool      `json:"chain_verifies,omitempty"` // nil for a key pair or a missing certificate
	Status       CertStatus `json:"status"`                   // the most urgent of the findings
	Reason       string     `json:"reason,omitempty"`         // the findings, joined by "; "
	Findings     []string   `json:"findings,omitempty"`       // every finding, and a note on what to do or a rotation in progress
}

// StatusRows are the rows of nestbot certs status, sorted by ID: one per
// certificate observed (as Observe returns them, at now) and, when specs is
// not nil (nest.yaml is at hand), one per certificate it declares but the
// tree lacks. With specs, drift from the declaration counts. Without them,
// a certificate is judged by its expiry, its chain, its key file, and what
// the tree's layout fixes for its place in the tree (LayoutSpecs): its
// subject, usages, whether it is a CA, and that it names its host. A CA in
// rotation gets a second row, "<ca>.next", for its new CA.
func StatusRows(obs map[string]ObservedCert, specs []Spec, now time.Time, renewBefore time.Duration) []StatusRow {
	byID := ByID(specs)
	var layout map[string]*Spec
	if specs == nil {
		layout = ByID(LayoutSpecs(obs))
	}
	layoutName := DetectLayout(obs)
	var rows []StatusRow
	for id, c := range obs {
		j := judge{spec: byID[id], declared: specs != nil, layout: layout[id], layoutName: layoutName, obs: obs, now: now, renewBefore: renewBefore}
		rows = append(rows, j.row(c))
		if c.Next != nil {
			rows = append(rows, j.row(*c.Next))
		}
	}
	for _, s := range specs {
		if _, ok := obs[s.ID]; ok {
			continue
		}
		p := s.CertPath
		if s.KeyOnly {
			p = PublicKeyPath(s)
		}
		row := StatusRow{ID: s.ID, Path: p, CommonName: s.CommonName, Organization: s.Organization,
			SANs: append(append([]string(nil), s.DNSNames...), s.IPs...), Usages: specUsages(s),
			Status: StatusMissing, Findings: []string{"declared, not in the tree"}}
		row.Reason = row.Findings[0]
		if ca := byID[s.Signer]; ca != nil {
			row.Issuer = ca.CommonName
		} else if s.IsCA {
			row.Issuer = s.CommonName // self-signed
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return rows
}

func specUsages(s Spec) []string {
	switch {
	case s.IsCA:
		return []string{"ca"}
	case s.KeyOnly:
		return []string{"key pair"}
	}
	return s.Usages
}

// judge holds what one certificate is judged against: its spec from
// nest.yaml (spec; declared says whether there is a nest.yaml at all), or
// without nest.yaml the spec its place in the layout implies (layout).
type judge struct {
	spec        *Spec
	declared    bool
	layout      *Spec
	layoutName  string // the tree's layout, for findings against it
	obs         map[string]ObservedCert
	now         time.Time
	renewBefore time.Duration
}

// row judges one observed certificate. Every finding is listed; the status
// is the most urgent of them.
func (j judge) row(c ObservedCert) StatusRow {
	row := StatusRow{ID: c.ID, Path: c.CertPath, CommonName: c.CommonName, Organization: c.Organization,
		SANs: append(append([]string(nil), c.DNSNames...), c.IPs...), Usages: c.Usages, Issuer: c.Issuer,
		NotAfter: c.NotAfter, Status: StatusOK}
	switch {
	case c.IsCA:
		row.Usages = []string{"ca"}
	case c.KeyOnly:
		row.Usages = []string{"key pair"}
		if c.KeyAlgorithm != "" {
			row.Usages = []string{"key pair (" + c.KeyAlgorithm + ")"}
		}
	}
	note := func(st CertStatus, why string) {
		if st.rank() > row.Status.rank() {
			row.Status = st
		}
		row.Findings = append(row.Findings, why)
	}
	// certWork is set by a finding that only a new certificate cures (any
	// but a rekey): for a CA, that takes nestbot certs rotate-ca.
	certWork := false
	mark := func(st CertStatus, why string) {
		note(st, why)
		certWork = true
	}
	switch {
	case c.Error != "":
		no := false
		row.Verifies = &no
		mark(StatusReissue, "unreadable: "+c.Error)
	case !c.KeyOnly:
		j.expiryAndChain(c, &row, mark)
	}
	if !c.HasKey {
		mark(StatusReissue, "its key "+c.KeyPath+" is missing")
	}
	if c.Error == "" {
		drifted, rekey := j.drift(c)
		for _, f := range drifted {
			mark(StatusDrift, f)
		}
		if rekey {
			note(StatusDrift, "recipients changed (rekey)")
		}
	}
	if ca := strings.TrimSuffix(c.ID, ".next"); certWork && j.isCA(c) {
		row.Findings = append(row.Findings, "a CA is renewed or replaced only through nestbot certs rotate-ca --ca "+ca)
	}
	if c.Rotation != nil {
		row.Findings = append(row.Findings, fmt.Sprintf("rotating: %s applied %s, %s (%s.next is the new CA)",
			c.Rotation.Phase, c.Rotation.Updated.UTC().Format(time.DateOnly), c.Rotation.Next(), c.ID))
	}
	row.Reason = strings.Join(row.Findings, "; ")
	return row
}

// expiryAndChain judges a readable certificate's dates and chain, and
// fills in its days left and whether its chain verifies.
func (j judge) expiryAndChain(c ObservedCert, row *StatusRow, mark func(CertStatus, string)) {
	row.Verifies = &c.Verified
	d := DaysLeft(c.NotAfter, j.now)
	row.DaysLeft = &d
	due, why := RenewalDue(c.NotBefore, c.NotAfter, j.now, j.renewBefore)
	expired := !j.now.Before(c.NotAfter)
	switch {
	case expired:
		mark(StatusExpired, why)
	case due:
		mark(StatusRenew, why)
	}
	// An expired certificate fails its chain for that alone, which says
	// nothing more; any other failure is a finding of its own.
	if !c.Verified && !(expired && strings.Contains(c.VerifyError, "expired or is not yet valid")) {
		issuer := ""
		if c.Issuer != "" {
			issuer = " (issued by " + c.Issuer + ")"
		}
		mark(StatusReissue, fmt.Sprintf("chain does not verify against %s%s: %s", orDash(c.SignerPath), issuer, c.VerifyError))
	}
	if c.Verified && !c.IsCA {
		ca := cmp.Or(c.Signer, SignerForStem(strings.TrimSuffix(path.Base(c.CertPath), ".crt")))
		if r := j.obs[ca].Rotation; r != nil && r.Phase == PhaseReissue && c.IssuerSerial == r.OldSerial {
			mark(StatusReissue, fmt.Sprintf("signed by the old %s, which is being rotated (%s applied); nestbot certs apply moves it to the new CA", ca, r.Phase))
		}
	}
}

// drift judges a readable certificate against nest.yaml or, without it,
// against the layout: what differs in the certificate, and whether its
// key's recipients changed.
func (j judge) drift(c ObservedCert) (findings []string, rekey bool) {
	switch {
	case j.spec != nil:
		differ, _ := c.Keys().Differ(j.spec.Recipients)
		return driftFindings(Drift(*j.spec, &c), *j.spec, c), differ
	case j.declared:
		if !strings.HasSuffix(c.ID, ".next") {
			return []string{"no host needs it any more"}, false
		}
	case j.layout != nil && !c.KeyOnly:
		where := fmt.Sprintf(" (the %s layout for %s/)", j.layoutName, path.Dir(c.CertPath))
		for _, f := range layoutDrift(*j.layout, c) {
			findings = append(findings, f+where)
		}
	}
	return findings, false
}

func (j judge) isCA(c ObservedCert) bool {
	return c.IsCA || j.spec != nil && j.spec.IsCA || j.layout != nil && j.layout.IsCA ||
		slices.Contains([]string{CA, EtcdCA, FrontProxyCA}, strings.TrimSuffix(c.ID, ".next"))
}

// driftFindings says, for each attribute drift names, what changed:
// "dns_names: lacks node1, has node2". When a spec's SANs are incomplete,
// names the certificate has beyond them are not drift and not listed.
func driftFindings(attrs []string, s Spec, c ObservedCert) []string {
	var out []string
	for _, attr := range attrs {
		switch attr {
		case "common_name":
			out = append(out, fmt.Sprintf("common_name: is %s, want %s", orNone(c.CommonName), orNone(s.CommonName)))
		case "organization":
			out = append(out, listDrift(attr, c.Organization, s.Organization, true))
		case "usages":
			out = append(out, listDrift(attr, c.Usages, s.Usages, true))
		case "dns_names":
			out = append(out, listDrift(attr, c.DNSNames, s.DNSNames, !s.SANsIncomplete))
		case "ips":
			out = append(out, listDrift(attr, c.IPs, s.IPs, !s.SANsIncomplete))
		case "is_ca":
			out = append(out, map[bool]string{true: "is_ca: is a CA, want a leaf", false: "is_ca: is a leaf, want a CA"}[c.IsCA])
		default:
			out = append(out, attr+" changed")
		}
	}
	return out
}

// layoutDrift compares what the tree's layout fixes whatever nest.yaml
// says: the subject, the usages, whether it is a CA, and that a
// certificate that names its host (apiserver, etcd-server, etcd-peer,
// kubelet-serving) does. Recipients, IPs and the names that depend on the
// cluster domain or the tailnet are unknown without nest.yaml.
func layoutDrift(s Spec, c ObservedCert) []string {
	// Of the SANs, the layout fixes only the host's own name.
	names := s.DNSNames
	s.DNSNames, s.IPs, s.SANsIncomplete = nil, nil, true
	if s.Host != "" && slices.Contains(names, s.Host) {
		s.DNSNames = []string{s.Host}
	}
	return driftFindings(Drift(s, &c), s, c)
}

// listDrift words the difference of two lists: what the certificate
// lacks and (when extra counts) what it has beyond the spec.
func listDrift(attr string, have, want []string, extra bool) string {
	lacks, has := minus(want, have), minus(have, want)
	var parts []string
	if len(lacks) > 0 {
		parts = append(parts, "lacks "+someOf(lacks))
	}
	if extra && len(has) > 0 {
		p := "has " + someOf(has)
		if len(want) == 0 {
			p += ", want none"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return attr + " changed"
	}
	return attr + ": " + strings.Join(parts, ", ")
}

// minus is a without b, sorted.
func minus(a, b []string) []string {
	var out []string
	for _, x := range SortedUnique(a) {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// someOf lists up to four values, then how many more.
func someOf(vs []string) string {
	const most = 4
	if len(vs) <= most {
		return strings.Join(vs, " ")
	}
	return strings.Join(vs[:most], " ") + fmt.Sprintf(" and %d more", len(vs)-most)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
