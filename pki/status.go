package pki

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ducksnest/nestbot/nest"
)

// CertStatus is how one certificate stands, as nestbot certs status shows it.
type CertStatus string

// The statuses, from the most urgent.
const (
	StatusExpired CertStatus = "expired" // past its not-after
	StatusReissue CertStatus = "reissue" // broken as it is: unreadable, its key missing, its chain does not verify
	StatusMissing CertStatus = "missing" // nest.yaml needs it; the tree lacks it
	StatusDrift   CertStatus = "drift"   // differs from nest.yaml (or, without it, from the kubeadm layout): subject, SANs, usages or recipients; or no host needs it
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
// the kubeadm layout fixes for its place in the tree (LayoutSpecs): its
// subject, usages, whether it is a CA, and that it names its host. A CA in
// rotation gets a second row, "<ca>.next", for its new CA.
func StatusRows(obs map[string]ObservedCert, specs []Spec, now time.Time, renewBefore time.Duration) []StatusRow {
	byID := ByID(specs)
	var layout map[string]*Spec
	if specs == nil {
		layout = ByID(LayoutSpecs(obs))
	}
	var rows []StatusRow
	for id, c := range obs {
		j := judge{spec: byID[id], declared: specs != nil, layout: layout[id], obs: obs, now: now, renewBefore: renewBefore}
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
	d := daysLeft(c.NotAfter, j.now)
	row.DaysLeft = &d
	due, why := RenewalDue(c.NotBefore, c.NotAfter, j.now, j.renewBefore)
	// RenewalDue words renew_before as a Go duration (720h0m0s); a person reads days.
	why = strings.Replace(why, "renew_before "+j.renewBefore.String(), "renew_before "+roughly(j.renewBefore), 1)
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
		ca := signerForStem(strings.TrimSuffix(path.Base(c.CertPath), ".crt"))
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
		return driftFindings(drift(*j.spec, &c), *j.spec, c), !sameRecipients(c.Recipients, j.spec.Recipients)
	case j.declared:
		if !strings.HasSuffix(c.ID, ".next") {
			return []string{"no host needs it any more"}, false
		}
	case j.layout != nil && !c.KeyOnly:
		where := fmt.Sprintf(" (the kubeadm layout for %s/)", path.Dir(c.CertPath))
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

// layoutDrift compares what the kubeadm layout fixes whatever nest.yaml
// says: the subject, the usages, whether it is a CA, and that a
// certificate that names its host (apiserver, etcd-server, etcd-peer,
// kubelet-serving) does. Recipients, IPs and the names that depend on the
// cluster domain or the tailnet are unknown without nest.yaml.
func layoutDrift(s Spec, c ObservedCert) []string {
	var attrs []string
	if c.CommonName != s.CommonName {
		attrs = append(attrs, "common_name")
	}
	if !slices.Equal(sortedUnique(c.Organization), sortedUnique(s.Organization)) {
		attrs = append(attrs, "organization")
	}
	if !slices.Equal(sortedUnique(c.Usages), sortedUnique(s.Usages)) {
		attrs = append(attrs, "usages")
	}
	if c.IsCA != s.IsCA {
		attrs = append(attrs, "is_ca")
	}
	out := driftFindings(attrs, s, c)
	if s.Host != "" && slices.Contains(s.DNSNames, s.Host) && !slices.Contains(c.DNSNames, s.Host) {
		out = append(out, "dns_names: lacks "+s.Host)
	}
	return out
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
	for _, x := range sortedUnique(a) {
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

// nodeCerts are the certificates every host gets; any other leaf of the
// layout marks its host as a control plane.
var nodeCerts = []string{"kubelet", "kubelet-serving", "kube-proxy"}

// layoutAdmin stands in for pki.admins in the nest.yaml LayoutSpecs writes:
// recipients are not judged without nest.yaml.
const layoutAdmin = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

// LayoutSpecs is the certificate set a tree implies without nest.yaml, as
// kubeadm lays it out: a host for every derived/<host>/, a control plane
// when it holds a control-plane certificate (apiserver, etcd-*, …), a
// worker otherwise. It is Set of a nest.yaml written for those hosts, with
// the defaults nest.yaml gets; the recipients, IPs, cluster domain and
// tailnet names in it are placeholders, not facts. Nil when the tree's
// host names do not make a valid fleet.
func LayoutSpecs(obs map[string]ObservedCert) []Spec {
	controlPlane := map[string]bool{}
	for id := range obs {
		host, name, ok := strings.Cut(id, "/")
		if !ok {
			continue
		}
		_, known := leafSigners()[name]
		controlPlane[host] = controlPlane[host] || known && !slices.Contains(nodeCerts, name)
	}
	// The set needs a control plane; a tree of workers alone borrows one
	// under a name none of its hosts has, whose certificates are never looked up.
	if !slices.Contains(slices.Collect(maps.Values(controlPlane)), true) {
		cp := "layout-control-plane"
		for i := 2; ; i++ {
			if _, taken := controlPlane[cp]; !taken {
				break
			}
			cp = fmt.Sprintf("layout-control-plane-%d", i)
		}
		controlPlane[cp] = true
	}
	var y strings.Builder
	fmt.Fprintf(&y, "version: 1\nname: tree\npki:\n  dir: .\n  admins: [%s]\nhosts:\n", layoutAdmin)
	for _, host := range slices.Sorted(maps.Keys(controlPlane)) {
		role := "worker"
		if controlPlane[host] {
			role = "control-plane"
		}
		fmt.Fprintf(&y, "  %s: {roles: [%s]}\n", strconv.Quote(host), role)
	}
	f, err := nest.Parse("the tree's layout", []byte(y.String()))
	if err != nil {
		return nil
	}
	return Set(f, nil, nil)
}

// CheckTree returns an error when dir holds neither ca/ nor derived/: it
// is not a certificate tree, most often a parent of one (the repository,
// or the directory above pki.dir). The error names the trees it finds up
// to four levels down, which covers pki.dir from the repository's root.
func CheckTree(dir string) error {
	const expected = "expected ca/ and derived/<host>/, the layout of pki.dir"
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%s: %w (%s)", dir, unwrapPath(err), expected)
	} else if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory (%s)", dir, expected)
	}
	if isTree(dir) {
		return nil
	}
	msg := fmt.Sprintf("%s: no certificate tree here (%s)", dir, expected)
	if found := treesBelow(dir, 4); len(found) > 0 {
		msg += "; did you mean " + strings.Join(found, " or ") + "?"
	}
	return errors.New(msg)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func isTree(dir string) bool {
	for _, sub := range []string{caDirName, derivedDirName} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// treesBelow lists up to three certificate trees within depth levels
// under dir, nearest first. It skips hidden directories and stops after
// reading a thousand, so a large checkout costs little.
func treesBelow(dir string, depth int) []string {
	const most, budget = 3, 1000
	var found []string
	level, read := []string{dir}, 0
	for range depth {
		var next []string
		for _, d := range level {
			if read++; read > budget {
				return found
			}
			entries, err := os.ReadDir(d)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				p := filepath.Join(d, e.Name())
				if !isTree(p) {
					next = append(next, p)
				} else if found = append(found, p); len(found) == most {
					return found
				}
			}
		}
		level = next
	}
	return found
}

// The columns of the status table.
var statusColumns = []string{"CERTIFICATE", "SUBJECT", "SANS", "USAGES", "DAYS", "CHAIN", "STATUS", "REASON"}

// WriteStatusTable writes rows as an aligned plain-text table, then one
// line counting each status. The cluster-wide certificates come first,
// then each host's under a "<host>/" heading, so the host is not repeated
// on every line. A cell holds what a person scans for: the first SANs and
// how many more, the days left, "yes" or "no" for the chain; every
// finding gets a line of its own in the REASON column. The issuer, the
// not-after date and the full SAN list are in --json.
func WriteStatusTable(w io.Writer, rows []StatusRow) error {
	rows = slices.Clone(rows)
	host := func(r StatusRow) string { // "" for the cluster-wide ones
		if h, _, ok := strings.Cut(r.ID, "/"); ok {
			return h
		}
		return ""
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if hi, hj := host(rows[i]), host(rows[j]); hi != hj {
			return hi < hj
		}
		return rows[i].ID < rows[j].ID
	})
	type line struct {
		heading string   // a host's heading, on a line of its own
		cells   []string // or a row's cells
	}
	var lines []line
	width := make([]int, len(statusColumns))
	add := func(cells []string) {
		for i, c := range cells[:len(cells)-1] { // the last column is not padded
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
		lines = append(lines, line{cells: cells})
	}
	add(statusColumns)
	last := ""
	for _, r := range rows {
		name := r.ID
		if h := host(r); h != "" {
			if h != last {
				lines = append(lines, line{heading: h + "/"})
				last = h
			}
			name = "  " + strings.TrimPrefix(r.ID, h+"/")
		}
		findings := r.Findings
		if len(findings) == 0 && r.Reason != "" {
			findings = []string{r.Reason}
		}
		reason := "-"
		if len(findings) > 0 {
			reason = findings[0]
		}
		add([]string{name, orDash(subject(r)), orDash(sansCell(r.SANs)), orDash(usagesCell(r.Usages)),
			daysCell(r.DaysLeft), chainCell(r.Verifies), string(r.Status), reason})
		for _, f := range findings[min(1, len(findings)):] {
			cells := make([]string, len(statusColumns))
			cells[len(cells)-1] = f
			lines = append(lines, line{cells: cells})
		}
	}
	var b strings.Builder
	for _, l := range lines {
		if l.cells == nil {
			b.WriteString(l.heading + "\n")
			continue
		}
		var s strings.Builder
		for i, c := range l.cells {
			s.WriteString(c)
			if i < len(l.cells)-1 {
				s.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteString(strings.TrimRight(s.String(), " ") + "\n")
	}
	b.WriteString("\n" + StatusSummary(rows) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func subject(r StatusRow) string {
	s := ""
	if r.CommonName != "" {
		s = "CN=" + r.CommonName
	}
	if len(r.Organization) > 0 {
		s = strings.TrimSpace(s + " O=" + strings.Join(r.Organization, "+"))
	}
	return s
}

// sansCell shows the first SANs that fit in about twenty characters (at
// least one), then how many more there are.
func sansCell(sans []string) string {
	const budget = 20
	if len(sans) == 0 {
		return ""
	}
	n := 1
	for n < len(sans) && len(strings.Join(sans[:n+1], ",")) <= budget {
		n++
	}
	s := strings.Join(sans[:n], ",")
	if more := len(sans) - n; more > 0 {
		s += fmt.Sprintf(" +%d more", more)
	}
	return s
}

// usagesCell leaves out the key pair's algorithm, which --json shows.
func usagesCell(usages []string) string {
	if len(usages) == 1 && strings.HasPrefix(usages[0], "key pair") {
		return "key pair"
	}
	return strings.Join(usages, ",")
}

func daysCell(d *int) string {
	if d == nil {
		return "-"
	}
	return strconv.Itoa(*d)
}

func chainCell(v *bool) string {
	switch {
	case v == nil:
		return "-"
	case *v:
		return "yes"
	}
	return "no"
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
