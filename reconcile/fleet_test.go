package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/pki/certtree"
)

// Fixed inputs, so generated snapshots and golden plans never change by themselves.
var (
	observedAt = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	revNew     = "f00ba47c0ffee0ddba11ad5eed5ca1ab1edeca1f"
	revOld     = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
	nixosAMI   = Image{ID: "ami-0nixos2505000001", Name: "NixOS-25.05-updated-kernel-image", OwnerID: nest.NixOSAMIOwner,
		CreationDate: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), State: "available"}
)

// loadExample reads the DucksNest example as the CLI does.
func loadExample(t testing.TB) Desired {
	t.Helper()
	f, err := nest.Load("../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := certtree.ReadHostKeys("../examples/ducksnest/"+f.PKI.Dir, hostList(f))
	if err != nil {
		t.Fatal(err)
	}
	return Desired{Fleet: f, HostKeys: keys}
}

func hostList(f *nest.Fleet) []string {
	var hosts []string
	for h := range f.Hosts {
		hosts = append(hosts, h)
	}
	return hosts
}

// genFleet writes the nest.yaml of a fleet of n hosts (a tenth of them
// control planes, half of them in AWS) and parses it as a user's would be.
func genFleet(t testing.TB, n int) Desired {
	t.Helper()
	f, err := nest.Parse("bignest.yaml", []byte(genFleetYAML(n)))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for name := range f.Hosts {
		keys[name] = genHostKey
	}
	return Desired{Fleet: f, HostKeys: keys}
}

const genHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdgODcQSlxaluMcBch6KKPliKTSzPX9oAYsoMc2QJ56"

func genFleetYAML(n int) string {
	var b strings.Builder
	b.WriteString(`version: 1
name: bignest
aws:
  region: ap-northeast-2
  vpc: {cidr: 10.20.0.0/16}
  subnets:
    public-a: {cidr: 10.20.0.0/20, zone: ap-northeast-2a, public: true}
    public-c: {cidr: 10.20.16.0/20, zone: ap-northeast-2c, public: true}
tailnet: {domain: bignest.ts.net, tags: [tag:nest]}
pki:
  dir: certs
  admins: [age14zzepmfg3quqwpzzl4222cpcsyn2raxx69wqa0vctdr70qnh9cqs98v583]
rollout: {max_parallel: 10}
hosts:
`)
	for i := range n {
		name, role := fmt.Sprintf("node-%04d", i), "worker"
		if i%10 == 0 {
			role = "control-plane"
		}
		fmt.Fprintf(&b, "  %s:\n    roles: [%s]\n", name, role)
		if i%2 == 0 {
			subnet := []string{"public-a", "public-c"}[i/2%2]
			fmt.Fprintf(&b, "    aws: {instance_type: t3.medium, ami: {name: NixOS-25.05-*}, subnet: %s}\n", subnet)
		}
	}
	return b.String()
}

// convergedLive builds the live state that a finished apply of d leaves:
// every resource tagged and as desired, every host on the tailnet and on
// rev, every certificate issued at 30 days before at.
func convergedLive(t testing.TB, d Desired, rev string, at time.Time) *Live {
	t.Helper()
	f := d.Fleet
	l := &Live{FormatVersion: FormatVersion, ObservedAt: at, Repo: Repo{Revision: rev},
		Hosts: map[string]HostRun{}, PKI: PKI{Certs: map[string]Cert{}}}
	c := &l.Cloud
	c.Region, c.AccountID = f.AWS.Region, "111122223333"
	c.Images = []Image{nixosAMI}
	id := func(prefix string, n int) string { return fmt.Sprintf("%s-%017x", prefix, n) }
	tags := func(kind, name, display, host string) Tags {
		return DesiredTags(f.Name, CloudAddress(kind, name), display, host)
	}
	vpc := id("vpc", 1)
	c.VPCs = []VPC{{ID: vpc, CIDR: f.AWS.VPC.CIDR, Tags: tags(KindVPC, "", f.Name, "")}}
	subnetIDs := map[string]string{}
	var public []string
	for i, name := range slices.Sorted(maps.Keys(f.AWS.Subnets)) {
		s := f.AWS.Subnets[name]
		subnetIDs[name] = id("subnet", i+1)
		c.Subnets = append(c.Subnets, Subnet{ID: subnetIDs[name], VPCID: vpc, CIDR: s.CIDR, Zone: s.Zone, MapPublicIP: s.Public,
			Tags: tags(KindSubnet, name, f.Name+"-"+name, "")})
		if s.Public {
			public = append(public, subnetIDs[name])
		}
	}
	igw := id("igw", 1)
	c.InternetGateways = []InternetGateway{{ID: igw, VPCID: vpc, Tags: tags(KindInternetGateway, "", f.Name, "")}}
	c.RouteTables = []RouteTable{{ID: id("rtb", 1), VPCID: vpc, Associations: public,
		Routes: []Route{{Destination: f.AWS.VPC.CIDR, Target: "local"}, {Destination: "0.0.0.0/0", Target: igw}},
		Tags:   tags(KindRouteTable, "public", f.Name+"-public", "")}}
	c.SecurityGroups = []SecurityGroup{{ID: id("sg", 1), VPCID: vpc, Name: f.Name,
		Egress: []SecurityRule{{Protocol: "-1", CIDRs: []string{"0.0.0.0/0"}}}, Tags: tags(KindSecurityGroup, "", f.Name, "")}}
	for i, name := range slices.Sorted(maps.Keys(f.Hosts)) {
		h := f.Hosts[name]
		tailIP := fmt.Sprintf("100.64.%d.%d", i/250, i%250+1)
		l.Tailnet.Nodes = append(l.Tailnet.Nodes, Node{Name: name, DNSName: name + "." + f.Tailnet.Domain + ".",
			IPs: []string{tailIP}, Tags: f.Tailnet.Tags, Online: true, LastSeen: at})
		l.Hosts[name] = HostRun{Revision: rev, Reachable: true, Generation: 42, System: "/nix/store/" + fmt.Sprintf("%032d", i) + "-nixos-system-" + name}
		if h.AWS == nil {
			continue
		}
		in := Instance{ID: id("i", i+1), State: "running", Type: h.AWS.InstanceType, ImageID: nixosAMI.ID,
			SubnetID: subnetIDs[h.AWS.Subnet], PrivateIP: fmt.Sprintf("10.20.%d.%d", i/250, i%250+10),
			InstanceProfile: h.AWS.InstanceProfile, KeyName: h.AWS.KeyName,
			RootVolume: Volume{ID: id("vol", i+1), SizeGB: h.AWS.RootVolume.SizeGB, Type: h.AWS.RootVolume.Type, Encrypted: *h.AWS.RootVolume.Encrypted},
			Tags:       tags(KindInstance, name, name, name)}
		in.Tags[TagUserData] = UserDataHash(f, h)
		c.Instances = append(c.Instances, in)
	}
	l.Tailnet.Self = "nestbot"
	if f.PKI != nil {
		p := &planner{d: d, f: f, live: l}
		issued := at.Add(-30 * 24 * time.Hour)
		cn := map[string]string{pki.CA: "kubernetes", pki.EtcdCA: "etcd-ca", pki.FrontProxyCA: "front-proxy-ca"}
		for _, s := range pki.Set(f, d.HostKeys, p.hostFacts()) {
			cert := Cert{Recipients: s.Recipients}
			if !s.KeyOnly {
				cert = Cert{CommonName: s.CommonName, Organization: s.Organization, DNSNames: s.DNSNames, IPs: s.IPs,
					Usages: s.Usages, IsCA: s.IsCA, Issuer: cn[s.Signer], NotBefore: issued, NotAfter: issued.Add(s.Validity),
					Recipients: s.Recipients}
				if s.IsCA {
					cert.Issuer = s.CommonName
				}
			}
			l.PKI.Certs[s.ID] = cert
		}
	}
	return l
}
