package pki

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// CertStatus is how one certificate stands, as nestbot certs status shows it.
type CertStatus string

// The statuses, from the most urgent.
const (
	StatusExpired CertStatus = "expired" // past its not-after
	StatusReissue CertStatus = "reissue" // broken as it is: unreadable, its key missing, its chain does not verify
	StatusMissing CertStatus = "missing" // nest.yaml needs it; the tree lacks it
	StatusDrift   CertStatus = "drift"   // differs from nest.yaml: subject, SANs, usages or recipients; or no host needs it
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
	Status       CertStatus `json:"status"`
	Reason       string     `json:"reason,omitempty"`
}

// StatusRows are the rows of nestbot certs status, sorted by ID: one per
// certificate observed (as Observe returns them, at now) and, when specs is
// not nil (nest.yaml is at hand), one per certificate it declares but the
// tree lacks. Without specs, a status follows from expiry, the chain and
// the key file alone; with them, drift from the declaration counts too. A
// CA in rotation gets a second row, "<ca>.next", for its new CA.
func StatusRows(obs map[string]ObservedCert, specs []Spec, now time.Time, renewBefore time.Duration) []StatusRow {
	byID := ByID(specs)
	var rows []StatusRow
	for id, c := range obs {
		rows = append(rows, statusRow(c, byID[id], specs != nil, obs, now, renewBefore))
		if c.Next != nil {
			rows = append(rows, statusRow(*c.Next, byID[id], specs != nil, obs, now, renewBefore))
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
			Status: StatusMissing, Reason: "declared, not in the tree"}
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

// statusRow judges one observed certificate; s is its spec (nil when none
// or when there is no nest.yaml: declared says which).
func statusRow(c ObservedCert, s *Spec, declared bool, obs map[string]ObservedCert, now time.Time, renewBefore time.Duration) StatusRow {
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
	var reasons []string
	mark := func(st CertStatus, why string) {
		if st.rank() > row.Status.rank() {
			row.Status = st
		}
		reasons = append(reasons, why)
	}
	if c.Error != "" {
		no := false
		row.Verifies = &no
		mark(StatusReissue, "unreadable: "+c.Error)
		row.Reason = strings.Join(reasons, "; ")
		return row
	}
	if !c.KeyOnly {
		row.Verifies = &c.Verified
		d := daysLeft(c.NotAfter, now)
		row.DaysLeft = &d
		switch due, why := RenewalDue(c.NotBefore, c.NotAfter, now, renewBefore); {
		case !now.Before(c.NotAfter):
			mark(StatusExpired, why)
		case !c.Verified:
			mark(StatusReissue, fmt.Sprintf("chain does not verify against %s: %s", orDash(c.SignerPath), c.VerifyError))
		case due:
			mark(StatusRenew, why)
		}
		if c.Verified && !c.IsCA {
			ca := signerForStem(strings.TrimSuffix(pathBase(c.CertPath), ".crt"))
			if r := obs[ca].Rotation; r != nil && r.Phase == PhaseReissue && c.IssuerSerial == r.OldSerial {
				mark(StatusReissue, fmt.Sprintf("signed by the old %s, which is being rotated (%s applied); nestbot certs apply moves it to the new CA", ca, r.Phase))
			}
		}
	}
	if !c.HasKey {
		mark(StatusReissue, "its key "+c.KeyPath+" is missing")
	}
	switch {
	case s != nil:
		if d := drift(*s, &c); len(d) > 0 {
			mark(StatusDrift, strings.Join(d, ", ")+" changed")
		}
		if !sameRecipients(c.Recipients, s.Recipients) {
			mark(StatusDrift, "recipients changed (rekey)")
		}
	case declared && !strings.HasSuffix(c.ID, ".next"):
		mark(StatusDrift, "no host needs it any more")
	}
	if c.IsCA && row.Status != StatusOK {
		reasons = append(reasons, "a CA moves only through nestbot certs rotate-ca")
	}
	if c.Rotation != nil {
		reasons = append(reasons, fmt.Sprintf("rotating: %s applied %s; %s (%s.next is the new CA)",
			c.Rotation.Phase, c.Rotation.Updated.UTC().Format(time.DateOnly), c.Rotation.Next(), c.ID))
	}
	row.Reason = strings.Join(reasons, "; ")
	return row
}

func pathBase(p string) string { return p[strings.LastIndex(p, "/")+1:] }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteStatusTable writes rows as an aligned plain-text table, then one
// line counting each status.
func WriteStatusTable(w io.Writer, rows []StatusRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSUBJECT\tSANS\tUSAGES\tISSUER\tNOT AFTER\tDAYS\tCHAIN\tSTATUS\tREASON")
	for _, r := range rows {
		subject := ""
		if r.CommonName != "" {
			subject = "CN=" + r.CommonName
		}
		if len(r.Organization) > 0 {
			subject = strings.TrimSpace(subject + " O=" + strings.Join(r.Organization, "+"))
		}
		notAfter, days, chain := "-", "-", "-"
		if !r.NotAfter.IsZero() {
			notAfter = r.NotAfter.UTC().Format(time.DateOnly)
		}
		if r.DaysLeft != nil {
			days = fmt.Sprint(*r.DaysLeft)
		}
		if r.Verifies != nil {
			chain = map[bool]string{true: "yes", false: "no"}[*r.Verifies]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, orDash(subject), orDash(strings.Join(r.SANs, ",")),
			orDash(strings.Join(r.Usages, ",")), orDash(r.Issuer), notAfter, days, chain, r.Status, orDash(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\n"+StatusSummary(rows))
	return err
}

// StatusSummary counts the rows by status: "12 certificates: 9 ok, 1 renew, 2 reissue".
func StatusSummary(rows []StatusRow) string {
	n := map[CertStatus]int{}
	for _, r := range rows {
		n[r.Status]++
	}
	var parts []string
	for _, st := range []CertStatus{StatusOK, StatusRenew, StatusDrift, StatusMissing, StatusReissue, StatusExpired} {
		if n[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[st], st))
		}
	}
	noun := "certificates"
	if len(rows) == 1 {
		noun = "certificate"
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d %s", len(rows), noun)
	}
	return fmt.Sprintf("%d %s: %s", len(rows), noun, strings.Join(parts, ", "))
}

// WriteStatusJSON writes rows as {"certificates": [...]}, indented.
func WriteStatusJSON(w io.Writer, rows []StatusRow) error {
	if rows == nil {
		rows = []StatusRow{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Certificates []StatusRow `json:"certificates"`
	}{rows})
}
