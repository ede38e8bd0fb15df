package pki

import (
	"bytes"
	"strings"
	"testing"
)

// TestStatusTableKeepsEveryCellInItsColumn: a subject from a certificate
// in the repository is adversarial; a tab or a newline in it (the
// tabwriter's separators) stays inside its cell, so the rows after it keep
// their columns and no line of the table is forged.
func TestStatusTableKeepsEveryCellInItsColumn(t *testing.T) {
	days := 100
	yes := true
	rows := []StatusRow{
		{ID: "ca", CommonName: "kubernetes", Usages: []string{"ca"}, DaysLeft: &days, Verifies: &yes, Status: StatusOK},
		{ID: "h1/kubelet", CommonName: "evil\tname\nCERTIFICATE  forged", Usages: []string{"client"}, DaysLeft: &days, Verifies: &yes,
			Status: StatusDrift, Findings: []string{"subject\tdiffers", "second finding"}},
		{ID: "h2/kubelet", CommonName: "system:node:h2", Usages: []string{"client"}, DaysLeft: &days, Verifies: &yes, Status: StatusOK},
	}
	var b bytes.Buffer
	if err := WriteStatusTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	status := strings.Index(lines[0], "STATUS")
	want := map[int]string{1: "ok", 3: "drift", 6: "ok"} // 0 header, 1 ca, 2 h1/, 3 kubelet, 4 its second finding, 5 h2/, 6 kubelet
	for i, st := range want {
		if len(lines) <= i || len(lines[i]) < status || !strings.HasPrefix(lines[i][status:], st+" ") {
			t.Errorf("line %d does not have %s under STATUS:\n%s", i, st, b.String())
		}
	}
	if lines[2] != "h1/" || lines[5] != "h2/" {
		t.Errorf("the hosts' headings are not on lines of their own:\n%s", b.String())
	}
	if strings.Count(b.String(), "CERTIFICATE") != 2 || strings.Contains(b.String(), "\t") {
		t.Errorf("the subject's tab or newline reached the table:\n%s", b.String())
	}
}
