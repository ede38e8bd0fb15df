package certtree

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

func statusByID(rows []pki.StatusRow) map[string]pki.StatusRow {
	m := map[string]pki.StatusRow{}
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
		status pki.CertStatus
		reason string // a part of it
		chain  string
	}
	check := func(name string, rows []pki.StatusRow, wants map[string]want) {
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
			if _, ok := wants[id]; !ok && r.Status != pki.StatusMissing {
				t.Errorf("%s: unexpected row %s: %s %q", name, id, r.Status, r.Reason)
			}
		}
	}

	// Without nest.yaml.
	rows := pki.StatusRows(obs, nil, now, nest.DefaultRenewBefore)
	check("no nest.yaml", rows, map[string]want{
		pki.CA:               {pki.StatusOK, "", "true"},
		pki.EtcdCA:           {pki.StatusOK, "", "true"},
		"h1/kubelet-serving": {pki.StatusRenew, "renew_before", "true"},
		"h1/etcd-server":     {pki.StatusReissue, "chain does not verify against ca/etcd.crt", "false"},
		"h1/kubelet":         {pki.StatusReissue, "unreadable", "false"},
		// Without nest.yaml, the kubeadm layout still fixes kube-proxy's subject.
		"h1/kube-proxy": {pki.StatusDrift, "organization: has system:masters, want none (the kubeadm layout for derived/h1/)", "true"},
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
	if r := statusByID(pki.StatusRows(obs, nil, now.Add(11*24*time.Hour), nest.DefaultRenewBefore))["h1/kubelet-serving"]; r.Status != pki.StatusExpired || !strings.Contains(r.Reason, "expired") {
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
	specs := pki.Set(f, nil, nil)
	rows = pki.StatusRows(obs, specs, now, f.PKI.RenewBefore.Duration)
	check("nest.yaml", rows, map[string]want{
		pki.CA:               {pki.StatusOK, "", "true"},
		pki.EtcdCA:           {pki.StatusOK, "", "true"},
		"h1/kubelet-serving": {pki.StatusRenew, "renew_before", "true"},
		"h1/etcd-server":     {pki.StatusReissue, "chain does not verify", "false"},
		"h1/kubelet":         {pki.StatusReissue, "unreadable", "false"},
		"h1/kube-proxy":      {pki.StatusDrift, "organization: has system:masters, want none", "true"},
	})
	if len(rows) != len(specs) {
		t.Errorf("%d rows for %d declared certificates (all present in the tree are declared)", len(rows), len(specs))
	}
	got := statusByID(rows)
	for _, id := range []string{pki.FrontProxyCA, pki.ServiceAccount, "h1/apiserver", "h1/etcd-peer"} {
		if r := got[id]; r.Status != pki.StatusMissing || r.Verifies != nil || r.DaysLeft != nil {
			t.Errorf("%s: %+v, want missing", id, r)
		}
	}
	if r := got["h1/apiserver"]; r.Issuer != "kubernetes" || !strings.Contains(strings.Join(r.SANs, ","), "kubernetes.default.svc") {
		t.Errorf("missing apiserver row: %+v", r)
	}
	if s := pki.StatusSummary(rows); !strings.HasPrefix(s, fmt.Sprintf("%d certificates: 2 ok, 1 renew, 1 drift, ", len(rows))) || !strings.HasSuffix(s, ", 2 reissue") {
		t.Errorf("summary %q", s)
	}
	if strings.Contains(fmt.Sprint(rows), "720h") {
		t.Errorf("a duration is worded in hours: %+v", rows)
	}

	checkTable(t, rows)
	var table bytes.Buffer
	if err := pki.WriteStatusTable(&table, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "CN=system:kube-proxy O=system:masters") {
		t.Errorf("subject not shown:\n%s", table.String())
	}

	// JSON reads back as the rows.
	var js bytes.Buffer
	if err := pki.WriteStatusJSON(&js, rows); err != nil {
		t.Fatal(err)
	}
	var back struct{ Certificates []pki.StatusRow }
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Certificates, rows) {
		t.Errorf("JSON does not read back as the rows:\n%s", js.String())
	}
	if !bytes.Contains(js.Bytes(), []byte(`"status": "drift"`)) || !bytes.Contains(js.Bytes(), []byte(`"chain_verifies": false`)) {
		t.Errorf("JSON:\n%s", js.String())
	}

	// Its key gone, the certificate expiring in nine days is broken: the
	// status says reissue, and the days and the expiry still show.
	if err := os.Remove(filepath.Join(dir, "derived/h1/kubernetes-kubelet-serving.key.age")); err != nil {
		t.Fatal(err)
	}
	obs, _ = Observe(dir, now)
	r := statusByID(pki.StatusRows(obs, nil, now, nest.DefaultRenewBefore))["h1/kubelet-serving"]
	if r.Status != pki.StatusReissue || r.DaysLeft == nil || *r.DaysLeft < 9 || len(r.Findings) != 2 ||
		r.Findings[0] != "expires in 9 days (renew_before 30 days)" || r.Findings[1] != "its key derived/h1/kubernetes-kubelet-serving.key.age is missing" {
		t.Errorf("expiring, key missing: %s, days %s, findings %q", r.Status, daysText(r.DaysLeft), r.Findings)
	}
	table.Reset()
	if err := pki.WriteStatusTable(&table, []pki.StatusRow{r}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(table.String(), "\n")
	if days := strings.Index(lines[0], "DAYS"); len(lines) < 3 || !strings.HasPrefix(lines[2][days:], daysText(r.DaysLeft)+" ") {
		t.Errorf("days left not in the table:\n%s", table.String())
	}
}

// checkTable writes rows as a table and checks its shape: a header, each
// host's heading, one line per row whose cells sit under their headers,
// a line of its own for every further finding, then the summary.
func checkTable(t *testing.T, rows []pki.StatusRow) {
	t.Helper()
	var b bytes.Buffer
	if err := pki.WriteStatusTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if lines[len(lines)-1] != pki.StatusSummary(rows) || lines[len(lines)-2] != "" {
		t.Fatalf("no summary at the end:\n%s", table)
	}
	header := lines[0]
	col := func(name string) int { return strings.Index(header, name) }
	hosts := map[string]bool{}
	want := 1 + 2 // the header, the blank line and the summary
	for _, r := range rows {
		name := r.ID
		if host, leaf, ok := strings.Cut(r.ID, "/"); ok {
			if !hosts[host] {
				hosts[host] = true
				want++
				if !slices.Contains(lines, host+"/") {
					t.Errorf("no heading %s/:\n%s", host, table)
				}
			}
			name = "  " + leaf
		}
		i := slices.IndexFunc(lines, func(l string) bool {
			return strings.HasPrefix(l, name+" ") && len(l) > col("STATUS") && strings.HasPrefix(l[col("STATUS"):], string(r.Status)+" ")
		})
		if i < 0 {
			t.Errorf("no line for %s (%s under STATUS):\n%s", r.ID, r.Status, table)
			continue
		}
		want += max(1, len(r.Findings))
		for k, f := range r.Findings {
			if l := lines[i+k]; len(l) < col("REASON") || l[col("REASON"):] != f {
				t.Errorf("%s: finding %d %q not on its own line under REASON:\n%s", r.ID, k, f, table)
			}
		}
	}
	if len(lines) != want {
		t.Errorf("%d lines, want %d:\n%s", len(lines), want, table)
	}
}

// A tree openssl wrote, judged without nest.yaml by what the kubeadm layout
// fixes: node1's apiserver names node2 instead of node1, node3's kubelet
// is node1's. The names and addresses only nest.yaml and the live hosts
// know (cluster domain, tailnet names, IPs) are not judged.
func TestStatusJudgesATreeOpenSSLWroteByItsLayout(t *testing.T) {
	t.Parallel()
	openssl, ageBin := tool(t, "openssl"), tool(t, "age")
	_, recipient, _ := newAgeIdentity(t)
	dir, work := t.TempDir(), t.TempDir()
	tree := func(name string) string { return filepath.Join(dir, filepath.FromSlash(name)) }
	for _, d := range []string{"ca", "derived/node1", "derived/node2", "derived/node3"} {
		if err := os.MkdirAll(tree(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	caKey := filepath.Join(work, "ca.key")
	run(t, nil, openssl, append(append([]string{"req", "-x509"}, ec...), "-keyout", caKey, "-out", tree("ca/kubernetes.crt"), "-subj", "/CN=kubernetes", "-days", "3650",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")...)
	run(t, nil, ageBin, "-r", recipient, "-o", tree("ca/kubernetes.key.age"), caKey)
	leaf := func(out, subj, ext string) {
		base := filepath.Join(work, filepath.Base(filepath.Dir(out))+"-"+filepath.Base(out))
		if err := os.WriteFile(base+".ext", []byte(ext), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, nil, openssl, append(append([]string{"req", "-new"}, ec...), "-keyout", base+".key", "-out", base+".csr", "-subj", subj)...)
		run(t, nil, openssl, "x509", "-req", "-in", base+".csr", "-CA", tree("ca/kubernetes.crt"), "-CAkey", caKey,
			"-set_serial", "0x99", "-days", "365", "-extfile", base+".ext", "-out", tree(out))
		run(t, nil, ageBin, "-r", recipient, "-o", tree(pki.KeyPathFor(out)), base+".key")
	}
	const server = "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
	const client = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
	leaf("derived/node1/kubernetes-apiserver.crt", "/CN=kube-apiserver",
		"subjectAltName=DNS:node2,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1\n"+server)
	leaf("derived/node2/kubernetes-apiserver.crt", "/CN=kube-apiserver",
		"subjectAltName=DNS:node2,DNS:node2.corp.ts.net,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.corp.example,IP:10.0.0.2,IP:10.100.0.1\n"+server)
	leaf("derived/node3/kubernetes-kubelet-serving.crt", "/O=system:nodes/CN=system:node:node3", "subjectAltName=DNS:node3,IP:192.168.1.3\n"+server)
	leaf("derived/node3/kubernetes-kubelet.crt", "/O=system:nodes/CN=system:node:node1", client)

	now := time.Now()
	obs, err := Observe(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	rows := pki.StatusRows(obs, nil, now, nest.DefaultRenewBefore)
	got := statusByID(rows)
	for id, w := range map[string]struct {
		status   pki.CertStatus
		findings []string
	}{
		pki.CA:                  {pki.StatusOK, nil},
		"node1/apiserver":       {pki.StatusDrift, []string{"dns_names: lacks node1 (the kubeadm layout for derived/node1/)"}},
		"node2/apiserver":       {pki.StatusOK, nil},
		"node3/kubelet-serving": {pki.StatusOK, nil},
		"node3/kubelet":         {pki.StatusDrift, []string{"common_name: is system:node:node1, want system:node:node3 (the kubeadm layout for derived/node3/)"}},
	} {
		if r := got[id]; r.Status != w.status || !slices.Equal(r.Findings, w.findings) {
			t.Errorf("%s: %s %q; want %s %q", id, r.Status, r.Findings, w.status, w.findings)
		}
	}
	if len(rows) != 5 {
		t.Errorf("%d rows, want 5: %+v", len(rows), rows)
	}
	checkTable(t, rows)
}

// A CA needs nestbot certs rotate-ca to be renewed or replaced, but not to
// be re-encrypted to new recipients.
func TestStatusHintsRotateCAOnlyForTheCertificate(t *testing.T) {
	t.Parallel()
	_, admin, _ := newAgeIdentity(t)
	_, other, _ := newAgeIdentity(t)
	f, err := nest.Parse("nest.yaml", fmt.Appendf(nil, "version: 1\nname: n\nhosts:\n  cp: {roles: [control-plane]}\npki:\n  dir: certs\n  admins: [%s]\n", admin))
	if err != nil {
		t.Fatal(err)
	}
	specs := pki.Set(f, nil, nil)
	ca := func(cn string, notAfter time.Time, recipient string) pki.ObservedCert {
		return pki.ObservedCert{ID: pki.CA, CertPath: "ca/kubernetes.crt", KeyPath: "ca/kubernetes.key.age", HasKey: true, IsCA: true,
			CommonName: cn, Issuer: cn, NotBefore: t0.Add(-24 * time.Hour), NotAfter: notAfter, Verified: true, Recipients: []string{recipient}}
	}
	for _, c := range []struct {
		name   string
		cert   pki.ObservedCert
		status pki.CertStatus
		hint   bool
	}{
		{"rekey", ca("kubernetes", t0.AddDate(10, 0, 0), other), pki.StatusDrift, false},
		{"ok", ca("kubernetes", t0.AddDate(10, 0, 0), admin), pki.StatusOK, false},
		{"subject drift", ca("k8s", t0.AddDate(10, 0, 0), admin), pki.StatusDrift, true},
		{"due", ca("kubernetes", t0.AddDate(0, 0, 10), admin), pki.StatusRenew, true},
		{"expired", ca("kubernetes", t0.Add(-time.Hour), admin), pki.StatusExpired, true},
	} {
		for _, judged := range []string{"nest.yaml", "layout"} {
			sp := specs
			if judged == "layout" {
				sp = nil
			}
			r := statusByID(pki.StatusRows(map[string]pki.ObservedCert{pki.CA: c.cert}, sp, t0, nest.DefaultRenewBefore))[pki.CA]
			status := c.status
			if judged == "layout" && c.name == "rekey" {
				status = pki.StatusOK // recipients are judged only against nest.yaml
			}
			if hint := strings.Contains(r.Reason, "nestbot certs rotate-ca --ca ca"); r.Status != status || hint != c.hint {
				t.Errorf("%s, by %s: %s %q; want %s, hint %v", c.name, judged, r.Status, r.Reason, status, c.hint)
			}
		}
	}
}

// Without nest.yaml, the hosts of the tree make a fleet: a tree of
// workers alone still has a layout; host names that are no host names
// have none, and the tree is judged without it.
func TestLayoutSpecsOfATree(t *testing.T) {
	t.Parallel()
	workers := map[string]pki.ObservedCert{"w1/kubelet": {ID: "w1/kubelet"}, "w1/kube-proxy": {ID: "w1/kube-proxy"}, pki.CA: {ID: pki.CA}}
	byID := pki.ByID(pki.LayoutSpecs(workers))
	if s := byID["w1/kubelet"]; s == nil || s.CommonName != "system:node:w1" || byID["w1/apiserver"] != nil || byID[pki.CA] == nil {
		t.Errorf("workers' layout: %+v", byID)
	}
	cp := map[string]pki.ObservedCert{"c1/etcd-peer": {ID: "c1/etcd-peer"}}
	if s := pki.ByID(pki.LayoutSpecs(cp))["c1/apiserver"]; s == nil || !slices.Contains(s.DNSNames, "c1") {
		t.Errorf("a host with an etcd certificate is no control plane: %+v", s)
	}
	bad := map[string]pki.ObservedCert{"Not_A_Host/kubelet": {ID: "Not_A_Host/kubelet", CertPath: "derived/Not_A_Host/kubernetes-kubelet.crt", CommonName: "x",
		HasKey: true, Verified: true, NotBefore: t0, NotAfter: t0.AddDate(1, 0, 0)}}
	if specs := pki.LayoutSpecs(bad); specs != nil {
		t.Errorf("a layout for a host name that is none: %d specs", len(specs))
	}
	if r := pki.StatusRows(bad, nil, t0, nest.DefaultRenewBefore); len(r) != 1 || r[0].Status != pki.StatusOK {
		t.Errorf("a tree with no layout: %+v", r)
	}
}

func TestCheckTreeSuggestsTheTreeBelow(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	certs := filepath.Join(root, "infra", "nix", "secrets", "certs")
	for _, d := range []string{filepath.Join(certs, "ca"), filepath.Join(root, ".git", "x", "ca"), filepath.Join(root, "empty")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckTree(certs); err != nil {
		t.Errorf("a tree: %v", err)
	}
	for _, c := range []struct{ dir, want string }{
		{filepath.Join(root, "infra", "nix", "secrets"), "no certificate tree here (expected ca/ and derived/<host>/, the layout of pki.dir); did you mean " + certs + "?"},
		{root, "did you mean " + certs + "?"}, // four levels down; .git is not searched
		{filepath.Join(root, "empty"), "empty: no certificate tree here (expected ca/ and derived/<host>/, the layout of pki.dir)"},
		{filepath.Join(root, "missing"), "missing: no such file or directory (expected"},
	} {
		err := CheckTree(c.dir)
		if err == nil || !strings.HasSuffix(err.Error(), c.want) && !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckTree(%s) = %v, want %q", c.dir, err, c.want)
		}
		if err != nil && strings.Contains(c.dir, "empty") && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("CheckTree(%s) suggests a tree that is not below it: %v", c.dir, err)
		}
	}
}

// daysText is a row's days left as the status table prints them.
func daysText(d *int) string {
	if d == nil {
		return "-"
	}
	return strconv.Itoa(*d)
}
