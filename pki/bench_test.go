package pki

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/nest"
)

// benchFleet is a cluster of 3 control planes and 97 workers, each with its
// own SSH host key and tailnet address, parsed from nest.yaml as a user's is.
func benchFleet(b testing.TB, admin string) (*nest.Fleet, map[string]string, map[string]HostFacts) {
	b.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, `version: 1
name: bignest
tailnet: {domain: bignest.ts.net, tags: [tag:nest]}
pki:
  dir: certs
  admins: [%s]
hosts:
`, admin)
	keys := map[string]string{}
	facts := map[string]HostFacts{}
	for i := range 100 {
		name, role := fmt.Sprintf("node-%04d", i), "worker"
		if i < 3 {
			role = "control-plane"
		}
		fmt.Fprintf(&y, "  %s: {roles: [%s], addresses: [10.20.%d.%d]}\n", name, role, i/200, i%200+10)
		keys[name] = newSSHKey(b).pub
		facts[name] = HostFacts{
			IPs:     []netip.Addr{netip.AddrFrom4([4]byte{100, 64, byte(i / 250), byte(i%250 + 1)})},
			DNSName: name + ".bignest.ts.net", OnTailnet: true, PrivateIPs: true,
		}
	}
	f, err := nest.Parse("bignest.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	return f, keys, facts
}

// BenchmarkIssueSet100 issues the full set of a 100-node cluster (3 CAs,
// the service-account key, 30 control-plane and 300 node certificates),
// encrypts every key to its host and the admin, and writes the tree and
// secrets.nix: in memory (the work itself) and to disk (each file synced
// and renamed into place).
func BenchmarkIssueSet100(b *testing.B) {
	_, admin, _ := newAgeIdentity(b)
	f, keys, facts := benchFleet(b, admin)
	specs := Set(f, keys, facts)
	if len(specs) != 3+1+3*10+100*3 {
		b.Fatalf("%d specs", len(specs))
	}
	for _, target := range []string{"memory", "disk"} {
		b.Run(target, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var files Files = newMemFiles()
				if target == "disk" {
					b.StopTimer()
					dir, err := os.MkdirTemp(b.TempDir(), "tree")
					if err != nil {
						b.Fatal(err)
					}
					files = Dir(dir)
					b.StartTimer()
				}
				a := &Applier{Files: files, RenewBefore: f.PKI.RenewBefore.Duration}
				rep, err := a.Apply(context.Background(), specs)
				if err != nil {
					b.Fatal(err)
				}
				if rep.Count(Issued) != len(specs) {
					b.Fatalf("issued %d of %d", rep.Count(Issued), len(specs))
				}
			}
			b.ReportMetric(float64(len(specs)), "certs/op")
		})
	}
}
