package pki

import (
	"slices"
	"strings"
	"testing"
)

// drift names the attributes; a status row says what changed in them.
func TestDriftFindingsSayWhatChanged(t *testing.T) {
	t.Parallel()
	s := Spec{CommonName: "kube-apiserver", Usages: []string{UsageServer}, DNSNames: []string{"kubernetes", "node1"}, IPs: []string{"10.0.0.1"}}
	c := ObservedCert{CommonName: "apiserver", Organization: []string{"system:masters"}, Usages: []string{UsageClient, UsageServer},
		DNSNames: []string{"kubernetes", "node2"}, IPs: []string{"10.0.0.1", "10.0.0.9"}, IsCA: true}
	got := driftFindings(Drift(s, &c), s, c)
	want := []string{
		"common_name: is apiserver, want kube-apiserver",
		"organization: has system:masters, want none",
		"usages: has client",
		"dns_names: lacks node1, has node2",
		"ips: has 10.0.0.9",
		"is_ca: is a CA, want a leaf",
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings\n%q\nwant\n%q", got, want)
	}
	// When a host's facts are unknown, names beyond the known ones are no drift.
	s.SANsIncomplete = true
	got = driftFindings(Drift(s, &c), s, c)
	if !slices.Contains(got, "dns_names: lacks node1") || slices.ContainsFunc(got, func(f string) bool { return strings.HasPrefix(f, "ips") }) {
		t.Errorf("incomplete SANs: %q", got)
	}
	if f := listDrift("dns_names", nil, []string{"a", "b", "c", "d", "e", "f"}, true); f != "dns_names: lacks a b c d and 2 more" {
		t.Errorf("a long list: %q", f)
	}
}
