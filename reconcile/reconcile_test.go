package reconcile

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

func mustDiff(t *testing.T, d Desired, l *Live) *Plan {
	t.Helper()
	p, err := Diff(d, l, Options{})
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return p
}

func findStep(p *Plan, addr string) *Step {
	for i := range p.Steps {
		if p.Steps[i].Address.String() == addr {
			return &p.Steps[i]
		}
	}
	return nil
}

func addresses(p *Plan) []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, string(s.Action)+" "+s.Address.String())
	}
	return out
}

func TestDiffConvergedHasNoSteps(t *testing.T) {
	for name, d := range map[string]Desired{"example": loadExample(t), "generated": genFleet(t, 40)} {
		t.Run(name, func(t *testing.T) {
			p := mustDiff(t, d, convergedLive(t, d, revNew, observedAt))
			if len(p.Steps) != 0 {
				t.Fatalf("converged fleet planned steps:\n%s", strings.Join(addresses(p), "\n"))
			}
			if p.HasChanges() {
				t.Fatal("HasChanges on an empty plan")
			}
		})
	}
}

func TestDiffEmptyWorldCreatesEverythingInOrder(t *testing.T) {
	d := loadExample(t)
	l := &Live{ObservedAt: observedAt, Repo: Repo{Revision: revNew}, Cloud: Cloud{Images: []Image{nixosAMI}}}
	p := mustDiff(t, d, l)
	want := []string{
		"create aws.vpc", "create aws.subnet.public-a", "create aws.subnet.public-c",
		"create aws.internet_gateway", "create aws.route_table.public", "create aws.security_group",
		"create aws.instance.ec2-controlplane",
		"wait tailnet.node.ec2-controlplane", "drift tailnet.node.laptop-firebat", "drift tailnet.node.laptop-ultra",
	}
	got := addresses(p)
	if !slices.Equal(got[:len(want)], want) {
		t.Fatalf("first steps:\n got %q\nwant %q", got[:len(want)], want)
	}
	s := p.Summary()
	// 3 CAs + sa key + 10 control-plane leaves + 3 node certs × 3 hosts.
	if s.Create != 7 || s.Certs != 4+10+9 || s.Hosts != 1 {
		t.Fatalf("summary %+v", s)
	}
	// The on-prem hosts are not on the tailnet, so only the new instance rolls.
	if st := findStep(p, "host.ec2-controlplane"); st == nil || st.Action != ActionRoll {
		t.Fatalf("new instance does not roll: %v", st)
	}
	// Planes come in apply order.
	last := 0
	for _, st := range p.Steps {
		i := slices.Index(Planes(), st.Plane)
		if i < last {
			t.Fatalf("step %s (%s) after a later plane", st.Address, st.Plane)
		}
		last = i
	}
}

func TestDiffInstanceChanges(t *testing.T) {
	d := loadExample(t)
	cases := []struct {
		name       string
		mutate     func(l *Live)
		action     Action
		reasonHas  string
		forcesAttr string
	}{
		{"ami", func(l *Live) { l.Cloud.Instances[0].ImageID = "ami-0old" }, ActionReplace, "ami changes, forces replacement", "ami"},
		{"subnet", func(l *Live) { l.Cloud.Instances[0].SubnetID = l.Cloud.Subnets[1].ID }, ActionReplace, "subnet changes, forces replacement", "subnet"},
		{"type", func(l *Live) { l.Cloud.Instances[0].Type = "t3.small" }, ActionUpdate, "stop → modify → start", ""},
		{"grow volume", func(l *Live) { l.Cloud.Instances[0].RootVolume.SizeGB = 10 }, ActionUpdate, "", ""},
		{"shrink volume", func(l *Live) { l.Cloud.Instances[0].RootVolume.SizeGB = 40 }, ActionReplace, "root_volume.size_gb changes", "root_volume.size_gb"},
		{"stopped", func(l *Live) { l.Cloud.Instances[0].State = "stopped" }, ActionUpdate, "start it", ""},
		{"tag removed", func(l *Live) { delete(l.Cloud.Instances[0].Tags, "Name") }, ActionUpdate, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := convergedLive(t, d, revNew, observedAt)
			tc.mutate(l)
			p := mustDiff(t, d, l)
			st := findStep(p, "aws.instance.ec2-controlplane")
			if st == nil || st.Action != tc.action || !strings.Contains(st.Reason, tc.reasonHas) {
				t.Fatalf("got %+v, want %s with reason containing %q", st, tc.action, tc.reasonHas)
			}
			if tc.forcesAttr != "" {
				i := slices.IndexFunc(st.Changes, func(c Change) bool { return c.Attr == tc.forcesAttr })
				if i < 0 || !st.Changes[i].ForcesReplace {
					t.Fatalf("%s not marked as forcing replacement: %+v", tc.forcesAttr, st.Changes)
				}
			}
			if tc.action == ActionReplace {
				// A replaced instance is a new host: it must join, get certificates and roll.
				if w := findStep(p, "tailnet.node.ec2-controlplane"); w == nil || w.Action != ActionWait {
					t.Fatalf("no wait for the replacement to join: %v", addresses(p))
				}
				if r := findStep(p, "host.ec2-controlplane"); r == nil || r.Action != ActionRoll {
					t.Fatalf("replacement does not roll: %v", addresses(p))
				}
			}
		})
	}
}

func TestDiffRemovedHostIsDeleted(t *testing.T) {
	d := loadExample(t)
	l := convergedLive(t, d, revNew, observedAt)
	gone := l.Cloud.Instances[0]
	gone.ID, gone.Tags = "i-0gone", DesiredTags("ducksnest", CloudAddress(KindInstance, "ec2-worker-9"), "ec2-worker-9", "ec2-worker-9")
	untagged := gone
	untagged.ID, untagged.Tags = "i-0byhand", Tags{"Name": "ec2-worker-9"}
	l.Cloud.Instances = append(l.Cloud.Instances, gone, untagged)
	p := mustDiff(t, d, l)
	if got := addresses(p); !slices.Equal(got, []string{"delete aws.instance.ec2-worker-9"}) {
		t.Fatalf("got %q: want one delete, and the untagged instance left alone", got)
	}

	t.Run("its tailnet node goes with it", func(t *testing.T) {
		l.Tailnet.Nodes = append(l.Tailnet.Nodes, Node{Name: "ec2-worker-9", Tags: []string{"tag:nest"}, Online: true},
			Node{Name: "old-laptop", Tags: []string{"tag:nest"}, Online: true})
		p := mustDiff(t, d, l)
		st := findStep(p, "tailnet.node.ec2-worker-9")
		if st == nil || st.Action != ActionDelete || !strings.Contains(st.Reason, "aws.instance.ec2-worker-9 is deleted by this plan") {
			t.Fatalf("the deleted instance's node: %+v", st)
		}
		// A stray that no deleted instance explains stays a drift, without tailnet.remove_strays.
		if st := findStep(p, "tailnet.node.old-laptop"); st == nil || st.Action != ActionDrift {
			t.Fatalf("another stray: %+v", st)
		}
	})
}

func TestDiffAdoptsUntaggedFleet(t *testing.T) {
	d := loadExample(t)
	d.Fleet.AWS.VPC.Adopt = adoptTag("Name=ducksnest-vpc")
	l := convergedLive(t, d, revNew, observedAt)
	l.Cloud.VPCs[0].Tags = Tags{"Name": "ducksnest-vpc"} // as Terraform left it
	p := mustDiff(t, d, l)
	st := findStep(p, "aws.vpc")
	if st == nil || st.Action != ActionAdopt || !strings.Contains(st.Reason, l.Cloud.VPCs[0].ID) {
		t.Fatalf("want adopt of %s, got %+v", l.Cloud.VPCs[0].ID, st)
	}
	if p.Summary().Create != 0 {
		t.Fatalf("adoption planned a create: %v", addresses(p))
	}

	t.Run("target missing", func(t *testing.T) {
		l.Cloud.VPCs[0].Tags = Tags{"Name": "other"}
		_, err := Diff(d, l, Options{})
		if err == nil || !strings.Contains(err.Error(), "aws.vpc: adopt: no vpc tagged Name=ducksnest-vpc") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDiffUnknownAMIIsAnError(t *testing.T) {
	d := loadExample(t)
	l := convergedLive(t, d, revNew, observedAt)
	l.Cloud.Images = nil
	_, err := Diff(d, l, Options{})
	if err == nil || !strings.Contains(err.Error(), `no available AMI named "NixOS-25.05-updated-kernel-image"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDiffAMINewestAvailableWins(t *testing.T) {
	d := loadExample(t)
	l := convergedLive(t, d, revNew, observedAt)
	newer := nixosAMI
	newer.ID, newer.CreationDate = "ami-0newer", nixosAMI.CreationDate.Add(time.Hour)
	pending := newer
	pending.ID, pending.State, pending.CreationDate = "ami-0pending", "pending", newer.CreationDate.Add(time.Hour)
	foreign := newer
	foreign.ID, foreign.OwnerID, foreign.CreationDate = "ami-0foreign", "999999999999", newer.CreationDate.Add(2*time.Hour)
	l.Cloud.Images = append(l.Cloud.Images, newer, pending, foreign)
	st := findStep(mustDiff(t, d, l), "aws.instance.ec2-controlplane")
	if st == nil || st.Action != ActionReplace || st.Changes[0].After != "ami-0newer" {
		t.Fatalf("want replace onto ami-0newer, got %+v", st)
	}
}

func TestDiffTailnet(t *testing.T) {
	d := loadExample(t)
	l := convergedLive(t, d, revNew, observedAt)
	l.Tailnet.Nodes[1].Online = false
	l.Tailnet.Nodes[1].LastSeen = observedAt.Add(-3 * 24 * time.Hour)
	l.Tailnet.Nodes = append(l.Tailnet.Nodes, Node{Name: "old-laptop", Tags: []string{"tag:nest"}}, Node{Name: "phone"})
	p := mustDiff(t, d, l)
	off := findStep(p, "tailnet.node.laptop-firebat")
	if off == nil || off.Action != ActionDrift || !strings.Contains(off.Reason, "last seen 3d ago") {
		t.Fatalf("offline node: %+v", off)
	}
	if s := findStep(p, "tailnet.node.old-laptop"); s == nil || !strings.Contains(s.Reason, "stray") {
		t.Fatalf("stray: %+v", s)
	}
	if findStep(p, "tailnet.node.phone") != nil || findStep(p, "tailnet.node.nestbot") != nil {
		t.Fatal("an untagged node or the bot itself was reported")
	}
	if p.HasChanges() {
		t.Fatalf("drift alone counts as changes: %v", addresses(p))
	}
	d.Fleet.Tailnet.RemoveStrays = true
	if s := findStep(mustDiff(t, d, l), "tailnet.node.old-laptop"); s == nil || s.Action != ActionDelete {
		t.Fatalf("remove_strays: %+v", s)
	}
}

func TestDiffCertificates(t *testing.T) {
	d := loadExample(t)
	apiserver := "ec2-controlplane/apiserver"
	cases := []struct {
		name   string
		addr   string
		mutate func(l *Live)
		action Action
		reason string
	}{
		{"expiring", apiserver, func(l *Live) {
			c := l.PKI.Certs[apiserver]
			c.NotAfter = observedAt.Add(10 * 24 * time.Hour)
			l.PKI.Certs[apiserver] = c
		}, ActionRenew, "expires in 10 days"},
		{"two thirds", "laptop-ultra/kubelet", func(l *Live) {
			c := l.PKI.Certs["laptop-ultra/kubelet"]
			c.NotBefore, c.NotAfter = observedAt.Add(-70*24*time.Hour), observedAt.Add(30*24*time.Hour+time.Hour)
			l.PKI.Certs["laptop-ultra/kubelet"] = c
		}, ActionRenew, "past 2/3 of its lifetime"},
		{"expired", "laptop-ultra/kubelet", func(l *Live) {
			c := l.PKI.Certs["laptop-ultra/kubelet"]
			c.NotAfter = observedAt.Add(-49 * time.Hour)
			l.PKI.Certs["laptop-ultra/kubelet"] = c
		}, ActionRenew, "expired 2 days ago"},
		{"san drift", apiserver, func(l *Live) {
			c := l.PKI.Certs[apiserver]
			c.DNSNames = c.DNSNames[1:]
			l.PKI.Certs[apiserver] = c
		}, ActionReissue, "dns_names changed"},
		{"usage drift", "laptop-ultra/kubelet-serving", func(l *Live) {
			c := l.PKI.Certs["laptop-ultra/kubelet-serving"]
			c.Usages = []string{pki.UsageClient}
			l.PKI.Certs["laptop-ultra/kubelet-serving"] = c
		}, ActionReissue, "usages changed"},
		{"recipients", "laptop-ultra/kube-proxy", func(l *Live) {
			c := l.PKI.Certs["laptop-ultra/kube-proxy"]
			c.Recipients = c.Recipients[:1]
			l.PKI.Certs["laptop-ultra/kube-proxy"] = c
		}, ActionRekey, "not reissued"},
		{"missing", "laptop-firebat/kubelet", func(l *Live) { delete(l.PKI.Certs, "laptop-firebat/kubelet") }, ActionIssue, "missing"},
		{"stale", "old-host/kubelet", func(l *Live) { l.PKI.Certs["old-host/kubelet"] = Cert{} }, ActionDelete, "no host needs it"},
		{"a due CA is reported, as the apply holds it", pki.CA, func(l *Live) {
			c := l.PKI.Certs[pki.CA]
			c.NotAfter = observedAt.Add(10 * 24 * time.Hour)
			l.PKI.Certs[pki.CA] = c
		}, ActionDrift, "a CA is replaced only in phases: nestbot certs rotate-ca --ca ca"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := convergedLive(t, d, revNew, observedAt)
			tc.mutate(l)
			p := mustDiff(t, d, l)
			st := findStep(p, CertAddress(tc.addr).String())
			if st == nil || st.Action != tc.action || !strings.Contains(st.Reason, tc.reason) {
				t.Fatalf("got %+v, want %s (%q)", st, tc.action, tc.reason)
			}
			if len(p.Steps) != 1 {
				t.Fatalf("one change planned more: %v", addresses(p))
			}
		})
	}
	t.Run("a new instance reissues the certificates that name its addresses", func(t *testing.T) {
		l := convergedLive(t, d, revNew, observedAt)
		l.Cloud.Instances[0].ImageID = "ami-0old" // ec2-controlplane is replaced
		p := mustDiff(t, d, l)
		for _, id := range []string{apiserver, "ec2-controlplane/etcd-server", "ec2-controlplane/etcd-peer", "ec2-controlplane/kubelet-serving"} {
			st := findStep(p, CertAddress(id).String())
			if st == nil || st.Action != ActionReissue || !strings.Contains(st.Reason, "new instance") ||
				len(st.Changes) != 1 || st.Changes[0].Attr != "ips" || st.Changes[0].After != KnownAfterApply {
				t.Errorf("%s: %+v", id, st)
			}
		}
		if st := findStep(p, CertAddress("ec2-controlplane/kubelet").String()); st != nil {
			t.Errorf("a certificate without addresses is reissued: %+v", st)
		}
	})
	t.Run("a host off the tailnet keeps the SANs it had", func(t *testing.T) {
		l := convergedLive(t, d, revNew, observedAt)
		l.Tailnet.Nodes = slices.DeleteFunc(l.Tailnet.Nodes, func(n Node) bool { return n.Name == "laptop-ultra" })
		p := mustDiff(t, d, l)
		if st := findStep(p, CertAddress("laptop-ultra/kubelet-serving").String()); st != nil {
			t.Errorf("reissued while its addresses are unknown: %+v", st)
		}
		c := l.PKI.Certs["laptop-ultra/kubelet-serving"]
		c.DNSNames = nil // but a SAN it must have is missing
		l.PKI.Certs["laptop-ultra/kubelet-serving"] = c
		if st := findStep(mustDiff(t, d, l), CertAddress("laptop-ultra/kubelet-serving").String()); st == nil || st.Action != ActionReissue || st.Reason != "dns_names changed" {
			t.Errorf("a missing SAN: %+v", st)
		}
	})
	t.Run("new CA reissues its leaves", func(t *testing.T) {
		l := convergedLive(t, d, revNew, observedAt)
		delete(l.PKI.Certs, pki.EtcdCA)
		p := mustDiff(t, d, l)
		if st := findStep(p, CertAddress("ec2-controlplane/etcd-server").String()); st == nil || st.Action != ActionReissue {
			t.Fatalf("etcd-server under a new etcd CA: %+v", st)
		}
		if st := findStep(p, CertAddress("ec2-controlplane/apiserver").String()); st != nil {
			t.Fatalf("apiserver is not signed by the etcd CA but planned %+v", st)
		}
	})
}

// What nestbot did not issue it never deletes: neither a certificate it
// adopted in a directory no host has, nor a CA of another layout (the
// issue's "pki.cert.k8s will be deleted", which the apply then skipped).
// pki.remove deletes one, and the plan warns.
func TestDiffNeverDeletesWhatNestbotDidNotIssue(t *testing.T) {
	d := loadExample(t)
	l := convergedLive(t, d, revNew, observedAt)
	ca := l.PKI.Certs[pki.CA]
	l.PKI.Certs[pki.K8sCA] = Cert{CommonName: "DucksNest Kubernetes Cluster CA", Organization: []string{"DucksNest"}, IsCA: true,
		NotBefore: ca.NotBefore, NotAfter: ca.NotAfter, Recipients: ca.Recipients, Path: "ca/k8s.crt", KeyAlgorithm: pki.AlgRSA2048, Adopted: true}
	leaf := l.PKI.Certs["laptop-ultra/kube-proxy"]
	leaf.Path, leaf.Signer, leaf.Adopted, leaf.KeyAlgorithm = "derived/ducksnest-laptop-old/k8s-kube-proxy.crt", pki.K8sCA, true, pki.AlgRSA2048
	leaf.Recipients = ca.Recipients // the admins': no host of nest.yaml has the directory
	l.PKI.Certs["ducksnest-laptop-old/k8s-kube-proxy"] = leaf
	p := mustDiff(t, d, l)
	if len(p.Steps) != 0 || len(p.Warnings) != 0 {
		t.Fatalf("planned %v, warned %q", addresses(p), p.Warnings)
	}

	d.Fleet.PKI.Remove = []string{"derived/ducksnest-laptop-old/", "ca/k8s.crt"}
	p = mustDiff(t, d, l)
	for _, id := range []string{pki.K8sCA, "ducksnest-laptop-old/k8s-kube-proxy"} {
		if st := findStep(p, CertAddress(id).String()); st == nil || st.Action != ActionDelete || !strings.HasPrefix(st.Reason, "NOT ISSUED BY NESTBOT") {
			t.Errorf("%s: %+v", id, st)
		}
	}
	if len(p.Warnings) != 2 || p.Summary().Delete != 2 {
		t.Errorf("warnings %q; summary %s", p.Warnings, p.Summary())
	}
}

func TestDiffHostsRollInOrderAndBatches(t *testing.T) {
	d := genFleet(t, 30) // 3 control planes, 27 workers, max_parallel 10
	l := convergedLive(t, d, revOld, observedAt)
	p, err := Diff(d, l, Options{Revision: revNew})
	if err != nil {
		t.Fatal(err)
	}
	rolls := p.StepsOf(PlaneHosts)
	if len(rolls) != 30 {
		t.Fatalf("%d hosts roll, want 30", len(rolls))
	}
	// Control planes first, alone in their batch; then the workers, one
	// batch, which the rollout works through 10 at a time.
	perBatch := map[int]int{}
	for i, st := range rolls {
		perBatch[st.Batch]++
		cp := strings.HasPrefix(st.Reason, "control-plane:")
		if cp != (i < 3) {
			t.Fatalf("step %d %s out of role order", i, st.Address)
		}
	}
	if want := map[int]int{1: 3, 2: 27}; !mapsEqual(perBatch, want) {
		t.Fatalf("batches %v, want %v", perBatch, want)
	}
}

func TestDiffHostsRollOnlyWhatChanged(t *testing.T) {
	d := loadExample(t)
	l := convergedLive(t, d, revOld, observedAt)
	l.Repo = Repo{Revision: revNew, Changed: map[string][]string{revOld: {"README.md"}}}
	if got := addresses(mustDiff(t, d, l)); len(got) != 0 {
		t.Fatalf("a change outside the flake's directory rolls %q", got)
	}
	t.Run("by default a change in the flake's directory rolls every host", func(t *testing.T) {
		l.Repo.Changed[revOld] = []string{"infra/nix/hosts/laptop-ultra/configuration.nix"}
		if n := len(mustDiff(t, d, l).StepsOf(PlaneHosts)); n != 3 {
			t.Fatalf("%d hosts roll, want 3", n)
		}
	})
	t.Run("paths are repository paths", func(t *testing.T) {
		saved := map[string][]string{}
		for name, h := range d.Fleet.Hosts {
			saved[name] = h.Paths
			h.Paths = []string{"infra/nix/hosts/" + name + "/**", "infra/nix/modules/**"}
		}
		defer func() {
			for name, h := range d.Fleet.Hosts {
				h.Paths = saved[name]
			}
		}()
		l.Repo.Changed[revOld] = []string{"infra/nix/hosts/laptop-ultra/configuration.nix", "README.md"}
		if got := addresses(mustDiff(t, d, l)); !slices.Equal(got, []string{"roll host.laptop-ultra"}) {
			t.Fatalf("got %q", got)
		}
		l.Repo.Changed[revOld] = []string{"infra/nix/modules/common.nix"}
		if n := len(mustDiff(t, d, l).StepsOf(PlaneHosts)); n != 3 {
			t.Fatalf("a module change rolls %d hosts, want 3", n)
		}
	})
	t.Run("a certificate of one host rolls that host", func(t *testing.T) {
		l.Repo.Changed[revOld] = []string{"infra/nix/secrets/certs/derived/laptop-firebat/kubernetes-kubelet.crt"}
		if got := addresses(mustDiff(t, d, l)); !slices.Equal(got, []string{"roll host.laptop-firebat"}) {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("nix toplevel decides when known", func(t *testing.T) {
		l.Repo.Changed = nil
		l.Repo.Toplevels = map[string]string{}
		for h, run := range l.Hosts {
			l.Repo.Toplevels[h] = run.System
		}
		l.Repo.Toplevels["laptop-firebat"] = "/nix/store/new-system"
		if got := addresses(mustDiff(t, d, l)); !slices.Equal(got, []string{"roll host.laptop-firebat"}) {
			t.Fatalf("got %q", got)
		}
		// It runs the new system (a hand-run nixos-rebuild test) but boots the old.
		run := l.Hosts["laptop-firebat"]
		run.Profile, run.System = run.System, "/nix/store/new-system"
		l.Hosts["laptop-firebat"] = run
		p := mustDiff(t, d, l)
		if got := addresses(p); !slices.Equal(got, []string{"roll host.laptop-firebat"}) || !strings.Contains(p.StepsOf(PlaneHosts)[0].Reason, "does not boot it") {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("unknown changes roll", func(t *testing.T) {
		l.Repo.Toplevels = nil
		if n := len(mustDiff(t, d, l).StepsOf(PlaneHosts)); n != 3 {
			t.Fatalf("%d hosts roll, want 3", n)
		}
	})
	t.Run("no revision: not compared, and said so", func(t *testing.T) {
		l.Repo.Revision = ""
		p := mustDiff(t, d, l)
		if len(p.StepsOf(PlaneHosts)) != 0 || len(p.Notes) == 0 {
			t.Fatalf("steps %v notes %v", addresses(p), p.Notes)
		}
	})
}

func TestMatchGlob(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"flake.nix", "flake.nix", true},
		{"hosts/a/**", "hosts/a/configuration.nix", true},
		{"hosts/a/**", "hosts/a/sub/dir/x.nix", true},
		{"hosts/a/**", "hosts/ab/x.nix", false},
		{"modules/*.nix", "modules/k8s.nix", true},
		{"modules/*.nix", "modules/sub/k8s.nix", false},
		{"**/secrets.nix", "a/b/secrets.nix", true},
		{"**/secrets.nix", "secrets.nix", true},
	}
	for _, c := range cases {
		if got := MatchGlob(c.pattern, c.name); got != c.want {
			t.Errorf("MatchGlob(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
}

func TestDiffIsDeterministic(t *testing.T) {
	d := genFleet(t, 200)
	l := convergedLive(t, d, revOld, observedAt)
	l.Cloud.Instances = l.Cloud.Instances[:50]
	first := addresses(mustDiff(t, d, l))
	for range 5 {
		if got := addresses(mustDiff(t, d, l)); !slices.Equal(got, first) {
			t.Fatal("two plans of the same input differ")
		}
	}
}

func adoptTag(tag string) *nest.Adopt { return &nest.Adopt{Tag: tag} }

func mapsEqual(a, b map[int]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestDiffPlansOnlyObservedPlanes(t *testing.T) {
	d := loadExample(t)
	l := &Live{ObservedAt: observedAt, Planes: []Plane{PlaneCloud}, Cloud: Cloud{Images: []Image{nixosAMI}}}
	p := mustDiff(t, d, l)
	for _, st := range p.Steps {
		if st.Plane != PlaneCloud {
			t.Fatalf("planned %s of an unobserved plane", st.Address)
		}
	}
	if len(p.StepsOf(PlaneCloud)) != 7 || len(p.Notes) != 3 {
		t.Fatalf("steps %v notes %q", addresses(p), p.Notes)
	}
}
