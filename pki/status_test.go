package pki

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/nest"
)

func statusByID(rows []StatusRow) map[string]StatusRow {
	m := map[string]StatusRow{}
	for _, r := range rows {
		m[r.ID] = r
	}
	return m
}

// nestbot certs status on a tree openssl and age wrote: without nest.yaml
// it judges expiry, chains and keys; with it, drift and missing certificates too.
func TestStatusRowsOfATreeOpenSSLWrote(t *testing.T) {
	t.Parallel()
	_, recipient, _ := newAgeIdentity(t)
	dir := opensslTree(t, recipient)
	now := time.Now()
	obs, _ := Observe(dir, now) // the error names the unreadable kubelet.crt, which has its row

	type want struct {
		status CertStatus
		reason string // a part of it
		chain  string
	}
	check := func(name string, rows []StatusRow, wants map[string]want) {
		t.Helper()
		got := statusByID(rows)
		for id, w := range wants {
			r, ok := got[id]
			chain := "-"
			if r.Verifies != nil {
				chain = fmt.Sprint(*r.Verifies)
			}
			if !ok || r.Status != w.status || !strings.Contains(r.Reason, w.reason) || chain != w.chain {
				t.Errorf("%s: %s: %s %q chain %s; want %s %q chain %s", name, id, r.Status, r.Reason, chain, w.status, w.reason, w.chain)
			}
		}
		for id, r := range got {
			if _, ok := wants[id]; !ok && r.Status != StatusMissing {
				t.Errorf("%s: unexpected row %s: %s %q", name, id, r.Status, r.Reason)
			}
		}
	}

	// Without nest.yaml.
	rows := StatusRows(obs, nil, now, nest.DefaultRenewBefore)
	check("no nest.yaml", rows, map[string]want{
		CA:                   {StatusOK, "", "true"},
		EtcdCA:               {StatusOK, "", "true"},
		"h1/kubelet-serving": {StatusRenew, "renew_before", "true"},
		"h1/etcd-server":     {StatusReissue, "chain does not verify against ca/etcd.crt", "false"},
		"h1/kubelet":         {StatusReissue, "unreadable", "false"},
		"h1/kube-proxy":      {StatusOK, "", "true"}, // its drift shows only against nest.yaml
	})
	if len(rows) != 6 {
		t.Errorf("%d rows without nest.yaml, want 6", len(rows))
	}
	ks := statusByID(rows)["h1/kubelet-serving"]
	if ks.CommonName != "system:node:h1" || fmt.Sprint(ks.Organization) != "[system:nodes]" || fmt.Sprint(ks.SANs) != "[h1 10.0.0.5]" ||
		fmt.Sprint(ks.Usages) != "[server]" || ks.Issuer != "kubernetes" || ks.DaysLeft == nil || *ks.DaysLeft < 9 || *ks.DaysLeft > 10 {
		t.Errorf("kubelet-serving row %+v", ks)
	}
	// Eleven days on, it has expired.
	if r := statusByID(StatusRows(obs, nil, now.Add(11*24*time.Hour), nest.DefaultRenewBefore))["h1/kubelet-serving"]; r.Status != StatusExpired || !strings.Contains(r.Reason, "expired") {
		t.Errorf("eleven days on: %s %q", r.Status, r.Reason)
	}

	// With nest.yaml: h1 is a control plane, so much of its set is missing,
	// and kube-proxy's organization has drifted.
	f, err := nest.Parse("nest.yaml", fmt.Appendf(nil, `version: 1
name: scripted
tailnet: {domain: scripted.ts.net, tags: [tag:nest]}
hosts:
  h1: {roles: [control-plane], addresses: [10.0.0.5]}
pki:
  dir: certs
  admins: [%s]
`, recipient))
	if err != nil {
		t.Fatal(err)
	}
	specs := Set(f, nil, nil)
	rows = StatusRows(obs, specs, now, f.PKI.RenewBefore.Duration)
	check("nest.yaml", rows, map[string]want{
		CA:                   {StatusOK, "", "true"},
		EtcdCA:               {StatusOK, "", "true"},
		"h1/kubelet-serving": {StatusRenew, "renew_before", "true"},
		"h1/etcd-server":     {StatusReissue, "chain does not verify", "false"},
		"h1/kubelet":         {StatusReissue, "unreadable", "false"},
		"h1/kube-proxy":      {StatusDrift, "organization changed", "true"},
	})
	if len(rows) != len(specs) {
		t.Errorf("%d rows for %d declared certificates (all present in the tree are declared)", len(rows), len(specs))
	}
	got := statusByID(rows)
	for _, id := range []string{FrontProxyCA, ServiceAccount, "h1/apiserver", "h1/etcd-peer"} {
		if r := got[id]; r.Status != StatusMissing || r.Verifies != nil || r.DaysLeft != nil {
			t.Errorf("%s: %+v, want missing", id, r)
		}
	}
	if r := got["h1/apiserver"]; r.Issuer != "kubernetes" || !strings.Contains(strings.Join(r.SANs, ","), "kubernetes.default.svc") {
		t.Errorf("missing apiserver row: %+v", r)
	}
	if s := StatusSummary(rows); !strings.HasPrefix(s, fmt.Sprintf("%d certificates: 2 ok, 1 renew, 1 drift, ", len(rows))) || !strings.HasSuffix(s, ", 2 reissue") {
		t.Errorf("summary %q", s)
	}

	// The table: a header, one aligned line per row, the summary.
	var table bytes.Buffer
	if err := WriteStatusTable(&table, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(table.String(), "\n"), "\n")
	if len(lines) != len(rows)+3 || lines[len(lines)-1] != StatusSummary(rows) {
		t.Fatalf("table of %d rows has %d lines:\n%s", len(rows), len(lines), table.String())
	}
	col := strings.Index(lines[0], "STATUS")
	for i, r := range rows {
		line := lines[i+1]
		if !strings.HasPrefix(line, r.ID+" ") || len(line) < col || !strings.HasPrefix(line[col:], string(r.Status)+" ") {
			t.Errorf("line %d not aligned under STATUS (column %d):\n%s\n%s", i+1, col, lines[0], line)
		}
	}
	if !strings.Contains(table.String(), "CN=system:kube-proxy O=system:masters") {
		t.Errorf("subject not shown:\n%s", table.String())
	}

	// JSON reads back as the rows.
	var js bytes.Buffer
	if err := WriteStatusJSON(&js, rows); err != nil {
		t.Fatal(err)
	}
	var back struct{ Certificates []StatusRow }
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Certificates, rows) {
		t.Errorf("JSON does not read back as the rows:\n%s", js.String())
	}
	if !bytes.Contains(js.Bytes(), []byte(`"status": "drift"`)) || !bytes.Contains(js.Bytes(), []byte(`"chain_verifies": false`)) {
		t.Errorf("JSON:\n%s", js.String())
	}
}
