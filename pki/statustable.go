package pki

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

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
	// The rows go through a tabwriter; a host's heading, on a line of its
	// own, is put in after, before the row it heads (a line without cells
	// would end tabwriter's column block, so the hosts' rows would not
	// line up with each other).
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	headings := map[int]string{} // table line → the heading before it
	n := 0
	row := func(cells ...string) {
		for i, c := range cells {
			cells[i] = cellText.Replace(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		n++
	}
	row(statusColumns...)
	last := ""
	for _, r := range rows {
		name := r.ID
		if h := host(r); h != "" {
			if h != last {
				headings[n] = h + "/"
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
		row(name, orDash(subject(r)), orDash(sansCell(r.SANs)), orDash(usagesCell(r.Usages)),
			daysCell(r.DaysLeft), chainCell(r.Verifies), string(r.Status), reason)
		for _, f := range findings[min(1, len(findings)):] {
			cells := make([]string, len(statusColumns))
			cells[len(cells)-1] = f
			row(cells...)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for i, l := range strings.SplitAfter(strings.TrimSuffix(table.String(), "\n"), "\n") {
		if h, ok := headings[i]; ok {
			b.WriteString(h + "\n")
		}
		b.WriteString(strings.TrimRight(l, " \n") + "\n")
	}
	b.WriteString("\n" + StatusSummary(rows) + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// cellText keeps a cell on its line and in its column: tabwriter's cell
// and line separators in a name or a finding become spaces.
var cellText = strings.NewReplacer("\t", " ", "\n", " ", "\v", " ", "\f", " ", "\r", " ")

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
