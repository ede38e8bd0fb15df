package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// k8nixHost is one directory of a K8Nix tree: the host's networking.hostName,
// its nest.yaml name ("" for a host nest.yaml does not list) and whether it
// holds the control plane's thirteen certificates or a worker's three.
type k8nixHost struct {
	hostName, nestName string
	controlPlane       bool
	extraIPs           []string // the apiserver's SANs beyond the profile's
}

// k8nixSeed is the DucksNest tree as it stood (DuckOriDuck/ducksnest-homelab,
// infra/nix/secrets/certs): one CA and 48 leaves in six directories, of
// which nest.yaml names three; laptop-firebat, a worker, still holds the
// control plane's certificates.
func k8nixSeed() []k8nixHost {
	return []k8nixHost{
		{hostName: "ducksnest-controlplane", nestName: "ec2-controlplane", controlPlane: true},
		{hostName: "ducksnest-laptop-firebat", nestName: "laptop-firebat", controlPlane: true, extraIPs: []string{"192.168.0.15"}},
		{hostName: "ducksnest-laptop-old"},
		{hostName: "ducksnest-laptop-ultra", nestName: "laptop-ultra"},
		{hostName: "ducksnest-test-controlplane", controlPlane: true, extraIPs: []string{"192.168.0.15", "10.100.0.2"}},
		{hostName: "ducksnest-test-worker-node"},
	}
}

// k8nixLeaf is a leaf as the DucksNest certToolkit module (modules/certs/ca.nix) declares it.
type k8nixLeafDef struct {
	name, o, cn string
	sans        []string // "HOST" is the host's name
	worker      bool     // a worker has it too
}

func k8nixLeafDefs() []k8nixLeafDef {
	return []k8nixLeafDef{
		{name: "calico-cni", cn: "calico-cni", worker: true},
		{name: "etcd-client", cn: "etcd-client"},
		{name: "etcd-peer", cn: "etcd-peer", sans: []string{"HOST", "localhost", "127.0.0.1"}},
		{name: "etcd-server", cn: "etcd", sans: []string{"HOST", "localhost", "127.0.0.1"}},
		{name: "kube-admin", o: "system:masters", cn: "kubernetes-admin"},
		{name: "kube-apiserver-etcd-client", cn: "kube-apiserver-etcd-client"},
		{name: "kube-apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client"},
		{name: "kube-apiserver", cn: "kube-apiserver", sans: []string{"HOST", "localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "127.0.0.1", "10.96.0.1"}},
		{name: "kube-controller-manager", cn: "system:kube-controller-manager"},
		{name: "kube-proxy", o: "system:node-proxier", cn: "system:kube-proxy", worker: true},
		{name: "kube-scheduler", cn: "system:kube-scheduler"},
		{name: "kubelet", o: "system:nodes", cn: "system:node:HOST", sans: []string{"HOST", "127.0.0.1"}, worker: true},
		{name: "service-account", cn: "service-accounts"},
	}
}

// k8nixTree is a K8Nix certificate tree made by openssl as K8Nix's cfssl
// scripts make it, each key encrypted by the age CLI as its rage calls do.
type k8nixTree struct {
	root, dir     string            // the repository; pki.dir in it
	adminIdentity string            // the age identity file of the admin
	admin         string            // its recipient
	hostKeys      map[string]string // hostName → the file of its ssh ed25519 private key
	leaves        []string          // every leaf, relative to dir
}

// makeK8nixTree writes the seed tree under root/infra/nix/secrets/certs,
// dated so that the CA (five years) was made caAge ago and every leaf (one
// year, 8760h as cfssl's default profile) leafAge ago, with the pinned host
// keys under hosts/: nest.yaml's hosts under their nest.yaml names, the
// others under their directory's.
func makeK8nixTree(ctx context.Context, t *testing.T, root string, caAge, leafAge time.Duration) *k8nixTree {
	t.Helper()
	for _, tool := range []string{"openssl", "age", "age-keygen"} {
		fixtures.Require(t, tool)
	}
	tr := &k8nixTree{root: root, dir: filepath.Join(root, "infra/nix/secrets/certs"), hostKeys: map[string]string{}}
	work := t.TempDir() // the plaintext keys and openssl's CA database: never in the tree
	run := func(dir string, stdin []byte, name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Stdin = dir, bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return out
	}
	for _, d := range []string{"ca", "hosts", "newcerts"} {
		os.MkdirAll(filepath.Join(work, d), 0o700)
		os.MkdirAll(filepath.Join(tr.dir, d), 0o755)
	}
	os.Remove(filepath.Join(tr.dir, "newcerts"))
	tr.adminIdentity = filepath.Join(work, "admin.txt")
	run(work, nil, "age-keygen", "-o", tr.adminIdentity)
	tr.admin = strings.TrimSpace(string(run(work, nil, "age-keygen", "-y", tr.adminIdentity)))

	// openssl ca is the one openssl command that dates a certificate in the
	// past. Its extensions are cfssl's: a CA with keyCertSign and cRLSign, a
	// leaf of the default profile (signing, key encipherment, server auth,
	// client auth), the SANs from the CSR.
	conf := `[ca]
default_ca = k8s
[k8s]
database = index.txt
new_certs_dir = newcerts
serial = serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = copy
[any]
organizationName = optional
commonName = supplied
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`
	os.WriteFile(filepath.Join(work, "ca.cnf"), []byte(conf), 0o600)
	os.WriteFile(filepath.Join(work, "index.txt"), nil, 0o600)
	os.WriteFile(filepath.Join(work, "serial"), []byte("1000\n"), 0o600)
	now := time.Now().UTC()
	date := func(at time.Time) string { return at.UTC().Format("20060102150405Z") }
	sign := func(csr, out string, ext string, notBefore time.Time, life time.Duration, selfSign bool) {
		args := []string{"ca", "-config", "ca.cnf", "-batch", "-notext", "-preserveDN", "-extensions", ext,
			"-startdate", date(notBefore), "-enddate", date(notBefore.Add(life)), "-keyfile", "ca/k8s.key", "-in", csr, "-out", out}
		if selfSign {
			args = append(args, "-selfsign")
		} else {
			args = append(args, "-cert", filepath.Join(tr.dir, "ca/k8s.crt"))
		}
		run(work, nil, "openssl", args...)
	}
	encrypt := func(key, out string, recipients ...string) {
		rf := filepath.Join(work, "recipients")
		os.WriteFile(rf, []byte(strings.Join(recipients, "\n")+"\n"), 0o600)
		run(work, nil, "age", "-e", "-R", rf, "-o", out, key) // binary, as rage -e -o writes it
	}

	// The CA: cfssl gencert -initca, five years.
	caNotBefore := now.Add(-caAge).Truncate(time.Second)
	run(work, nil, "openssl", "genrsa", "-traditional", "-out", "ca/k8s.key", "2048")
	run(work, nil, "openssl", "req", "-new", "-key", "ca/k8s.key", "-subj", "/O=DucksNest/CN=DucksNest Kubernetes Cluster CA", "-out", "ca/k8s.csr")
	sign("ca/k8s.csr", filepath.Join(tr.dir, "ca/k8s.crt"), "ca_ext", caNotBefore, 43800*time.Hour, true)
	encrypt(filepath.Join(work, "ca/k8s.key"), filepath.Join(tr.dir, "ca/k8s.key.age"), tr.admin)

	leafNotBefore := now.Add(-leafAge).Truncate(time.Second)
	for _, h := range k8nixSeed() {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sshPub, _ := ssh.NewPublicKey(pub)
		authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
		block, _ := ssh.MarshalPrivateKey(priv, "")
		tr.hostKeys[h.hostName] = filepath.Join(work, "hosts", h.hostName)
		os.WriteFile(tr.hostKeys[h.hostName], pem.EncodeToMemory(block), 0o600)
		pinnedAs := h.nestName
		if pinnedAs == "" {
			pinnedAs = h.hostName
		}
		os.WriteFile(filepath.Join(tr.dir, "hosts", pinnedAs+".pub"), []byte(authorized+"\n"), 0o644)

		hostDir := filepath.Join("derived", h.hostName)
		os.MkdirAll(filepath.Join(tr.dir, hostDir), 0o755)
		os.MkdirAll(filepath.Join(work, hostDir), 0o700)
		for _, l := range k8nixLeafDefs() {
			if !l.worker && !h.controlPlane {
				continue
			}
			o := l.o
			if o == "" {
				o = "DucksNest"
			}
			stem := filepath.Join(hostDir, "k8s-"+l.name)
			args := []string{"req", "-new", "-key", stem + ".key", "-subj", "/O=" + o + "/CN=" + strings.ReplaceAll(l.cn, "HOST", h.hostName), "-out", stem + ".csr"}
			if len(l.sans) > 0 {
				sans := slices.Clone(l.sans)
				if l.name == "kube-apiserver" {
					sans = slices.Insert(sans, len(sans)-1, h.extraIPs...)
				}
				var ext []string
				for _, s := range sans {
					s = strings.ReplaceAll(s, "HOST", h.hostName)
					if strings.Trim(s, "0123456789.") == "" {
						ext = append(ext, "IP:"+s)
					} else {
						ext = append(ext, "DNS:"+s)
					}
				}
				args = append(args, "-addext", "subjectAltName="+strings.Join(ext, ","))
			}
			run(work, nil, "openssl", "genrsa", "-traditional", "-out", stem+".key", "2048")
			run(work, nil, "openssl", args...)
			sign(stem+".csr", filepath.Join(tr.dir, stem+".crt"), "leaf_ext", leafNotBefore, 8760*time.Hour, false)
			encrypt(filepath.Join(work, stem+".key"), filepath.Join(tr.dir, stem+".key.age"), tr.admin, authorized)
			tr.leaves = append(tr.leaves, filepath.ToSlash(stem+".crt"))
		}
	}
	return tr
}

// k8nixNestYAML is the seed owner's nest.yaml: three hosts under the names
// their flake uses, each with its networking.hostName; layout "" leaves
// pki.layout out.
func k8nixNestYAML(admin, layout string) string {
	y := `version: 1
name: ducksnest
hosts:
  ec2-controlplane: {roles: [control-plane], host_name: ducksnest-controlplane}
  laptop-firebat:   {roles: [worker], host_name: ducksnest-laptop-firebat}
  laptop-ultra:     {roles: [worker], host_name: ducksnest-laptop-ultra}
pki:
  dir: infra/nix/secrets/certs
`
	if layout != "" {
		y += "  layout: " + layout + "\n"
	}
	return y + "  admins: [" + admin + "]\n"
}

// certFacts is what openssl says of a certificate: its subject, issuer and
// SANs, one line each.
func certFacts(ctx context.Context, t *testing.T, file string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "openssl", "x509", "-in", file, "-noout", "-subject", "-issuer", "-ext", "subjectAltName,extendedKeyUsage", "-nameopt", "compat").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 %s: %v\n%s", file, err, out)
	}
	return string(out)
}

// treeFiles lists every file under dir, relative, with its contents.
func treeFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestK8NixTreeRenewedInPlace takes over the seed owner's K8Nix tree: 49
// certificates made by openssl the way K8Nix's cfssl scripts make them, the
// leaves past two thirds of their year. certs plan shows 48 renewals and
// nothing else; certs apply renews them in place — the same files,
// subjects, SANs and usages, signed by the same, unchanged ca/k8s.crt
// (openssl verify), every key decrypting with the age CLI for the admin
// and for its host — and deletes nothing; the next plan is empty.
func TestK8NixTreeRenewedInPlace(t *testing.T) {
	for _, tool := range []string{"git", "openssl", "age"} {
		fixtures.Require(t, tool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	seed := t.TempDir()
	seedTree := makeK8nixTree(ctx, t, seed, 90*24*time.Hour, 250*24*time.Hour)
	for _, layout := range []string{"k8nix", ""} {
		name := "layout " + layout
		if layout == "" {
			name = "layout read from the tree"
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.CopyFS(root, os.DirFS(seed)); err != nil {
				t.Fatal(err)
			}
			tr := *seedTree
			tr.root, tr.dir = root, filepath.Join(root, "infra/nix/secrets/certs")
			file := filepath.Join(root, "nest.yaml")
			os.WriteFile(file, []byte(k8nixNestYAML(tr.admin, layout)), 0o644)
			git := gitIn(ctx, t, root)
			git("init", "-q", "-b", "main")
			git("add", ".")
			git("commit", "-q", "-m", "the fleet, as K8Nix left it")
			before := treeFiles(t, tr.dir)
			facts := map[string]string{}
			for _, l := range tr.leaves {
				facts[l] = certFacts(ctx, t, filepath.Join(tr.dir, l))
			}
			identity, _ := os.ReadFile(tr.adminIdentity)
			nestbot, _ := nestbotSteps(ctx, t, []string{"NEST_AGE_IDENTITY=" + string(identity), "NESTBOT_STATE_DIR=" + t.TempDir()})

			plan := nestbot(0, "certs", "plan", "-f", file)
			t.Logf("certs plan:\n%s", plan)
			if got := strings.Count(plan, " will be renewed: past 2/3 of its lifetime"); got != 48 {
				t.Errorf("certs plan renews %d certificates, want the 48 leaves", got)
			}
			for _, l := range tr.leaves {
				id := strings.TrimSuffix(strings.TrimPrefix(l, "derived/"), ".crt")
				if !strings.Contains(plan, "  # pki.cert."+id+" will be renewed: ") {
					t.Errorf("certs plan does not renew %s", l)
				}
			}
			for _, word := range []string{"issued", "reissued", "deleted", "rekeyed", "drift"} {
				if strings.Contains(plan, " will be "+word) || strings.Contains(plan, word+":") {
					t.Errorf("certs plan has a step other than renew (%s)", word)
				}
			}
			if !strings.Contains(plan, "\nPlan: 0 to create, 0 to update, 0 to delete · 48 certs · 0 hosts\n") {
				t.Errorf("certs plan's summary is not 48 renewals")
			}
			if detected := strings.Contains(plan, "Note: pki: pki.layout is not set and the tree holds K8Nix's CA"); detected != (layout == "") {
				t.Errorf("the note that the layout was read from the tree: %v, want %v", detected, layout == "")
			}
			// certs status judges the tree as the plan does, with nest.yaml
			// or, without it, against the K8Nix layout alone.
			for _, args := range [][]string{{"certs", "status", "-f", file}, {"certs", "status", "--dir", tr.dir, "-f", filepath.Join(root, "none.yaml")}} {
				if out := nestbot(0, args...); !strings.HasSuffix(out, "\n49 certificates: 1 ok, 48 renew\n") {
					t.Errorf("%v:\n%s", args, out)
				}
			}
			if out := nestbot(0, "validate", "-f", file); !strings.Contains(out, "3 hosts (0 in AWS), 0 subnets, 49 certificates and keys.") {
				t.Errorf("validate:\n%s", out)
			}
			if layout == "" {
				// pki.remove may not take what a host's roles need: validate says so.
				bad := strings.Replace(k8nixNestYAML(tr.admin, layout), "  admins:", "  remove: [derived/ducksnest-controlplane/k8s-kubelet.crt]\n  admins:", 1)
				os.WriteFile(file, []byte(bad), 0o644)
				if out := nestbot(1, "validate", "-f", file); !strings.Contains(out, "pki.remove lists derived/ducksnest-controlplane/k8s-kubelet.crt, but derived/ducksnest-controlplane/k8s-kubelet.crt is a certificate host ec2-controlplane's roles need") {
					t.Errorf("validate with pki.remove of a needed certificate:\n%s", out)
				}
				return // the same plan; the apply is the other subtest's
			}

			out := nestbot(0, "certs", "apply", "-f", file)
			t.Logf("certs apply:\n%s", out)
			if !strings.HasPrefix(out, "nest: renew 48 certificates\n") || !strings.Contains(out, "Committed ") {
				t.Fatalf("certs apply did not renew and commit the 48 leaves")
			}
			after := treeFiles(t, tr.dir)
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("certs apply deleted %s", p)
				}
			}
			if !bytes.Equal(before["ca/k8s.crt"], after["ca/k8s.crt"]) || !bytes.Equal(before["ca/k8s.key.age"], after["ca/k8s.key.age"]) {
				t.Error("certs apply changed the CA")
			}
			for p := range after {
				if _, ok := before[p]; !ok && p != "secrets.nix" {
					t.Errorf("certs apply wrote a new file %s", p)
				}
			}
			for _, l := range tr.leaves {
				if bytes.Equal(before[l], after[l]) {
					t.Errorf("%s was not renewed", l)
					continue
				}
				if got := certFacts(ctx, t, filepath.Join(tr.dir, l)); got != facts[l] {
					t.Errorf("%s changed in its renewal:\n%s\nwant\n%s", l, got, facts[l])
				}
				dates, _ := exec.CommandContext(ctx, "openssl", "x509", "-in", filepath.Join(tr.dir, l), "-noout", "-checkend", fmt.Sprint(364*24*3600)).CombinedOutput()
				if !strings.Contains(string(dates), "will not expire") {
					t.Errorf("%s does not have a year left after its renewal: %s", l, dates)
				}
				key := strings.TrimSuffix(l, ".crt") + ".key.age"
				host := strings.Split(l, "/")[1]
				for _, id := range []string{tr.adminIdentity, tr.hostKeys[host]} {
					plain, err := exec.CommandContext(ctx, "age", "-d", "-i", id, filepath.Join(tr.dir, key)).Output()
					if err != nil {
						t.Errorf("age -d -i %s %s: %v", filepath.Base(id), key, err)
						continue
					}
					if !keyMatches(t, plain, after[l]) {
						t.Errorf("%s does not hold the key of %s", key, l)
					}
				}
			}
			// Every chain verifies against the CA the tree had all along.
			verify := exec.CommandContext(ctx, "openssl", append([]string{"verify", "-CAfile", "ca/k8s.crt"}, tr.leaves...)...)
			verify.Dir = tr.dir
			if out, err := verify.CombinedOutput(); err != nil || strings.Count(string(out), ": OK\n") != len(tr.leaves) {
				t.Errorf("openssl verify: %v\n%s", err, out)
			}
			if status := git("status", "--porcelain"); status != "" {
				t.Errorf("certs apply left changes uncommitted:\n%s", status)
			}

			if out := nestbot(0, "certs", "status", "-f", file); !strings.HasSuffix(out, "\n49 certificates: 49 ok\n") {
				t.Errorf("certs status after the apply:\n%s", out)
			}
			plan = nestbot(0, "certs", "plan", "-f", file)
			if !strings.HasPrefix(plan, "No changes.") {
				t.Errorf("certs plan after the apply:\n%s", plan)
			}
			if out := nestbot(0, "certs", "apply", "-f", file); !strings.Contains(out, "Nothing to commit") {
				t.Errorf("certs apply after the apply:\n%s", out)
			}
		})
	}
}

// keyMatches reports whether the PEM private key keyPEM is the key of the
// PEM certificate certPEM.
func keyMatches(t *testing.T, keyPEM, certPEM []byte) bool {
	t.Helper()
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		return false
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return false
	}
	var key crypto.Signer
	if k, err := x509.ParsePKCS1PrivateKey(kb.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParsePKCS8PrivateKey(kb.Bytes); err == nil {
		key, _ = k.(crypto.Signer)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return key != nil && ok && pub.Equal(key.Public())
}
