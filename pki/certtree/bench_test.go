package certtree

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

// benchFleet is a cluster of 3 control planes and 97 workers, each with its
// own SSH host key and tailnet address, parsed from nest.yaml as a user's is.
func benchFleet(b testing.TB, admin string) (*nest.Fleet, map[string]string, map[string]pki.HostFacts) {
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
	facts := map[string]pki.HostFacts{}
	for i := range 100 {
		name, role := fmt.Sprintf("node-%04d", i), "worker"
		if i < 3 {
			role = "control-plane"
		}
		fmt.Fprintf(&y, "  %s: {roles: [%s], addresses: [10.20.%d.%d]}\n", name, role, i/200, i%200+10)
		keys[name] = newSSHKey(b).pub
		facts[name] = pki.HostFacts{
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
// and renamed into place). floor is what the disk allows: a plain loop
// creating the same files, with the same bytes, in the same directories,
// each synced, and nothing else; floor8 is that loop 8 at a time, as
// nestbot writes.
func BenchmarkIssueSet100(b *testing.B) {
	_, admin, _ := newAgeIdentity(b)
	f, keys, facts := benchFleet(b, admin)
	specs := pki.Set(f, keys, facts)
	if len(specs) != 3+1+3*10+100*3 {
		b.Fatalf("%d specs", len(specs))
	}
	b.Run("floor", func(b *testing.B) { benchmarkFloor(b, f, specs, 1) })
	b.Run("floor8", func(b *testing.B) { benchmarkFloor(b, f, specs, 8) })
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
				if rep.Count(pki.Issued) != len(specs) {
					b.Fatalf("issued %d of %d", rep.Count(pki.Issued), len(specs))
				}
			}
			b.ReportMetric(float64(len(specs)), "certs/op")
		})
	}
}

// benchmarkFloor creates the files an apply of specs writes, with the same
// bytes, in the same directories, with the same syncs, from a plain loop
// and nothing else: for each file, in the order the apply puts them into
// place (keys, certificates, secrets.nix), its directory is made
// (os.MkdirAll), and the file created, written, synced and closed. There
// is no staging, no rename, no check: what creating the tree costs on this
// file system. workers > 1 runs the same loop that many at a time, as
// nestbot writes.
func benchmarkFloor(b *testing.B, f *nest.Fleet, specs []pki.Spec, workers int) {
	mem := newMemFiles()
	if _, err := (&Applier{Files: mem, RenewBefore: f.PKI.RenewBefore.Duration}).Apply(context.Background(), specs); err != nil {
		b.Fatal(err)
	}
	var keys, certs, last []string
	for name := range mem.m {
		switch {
		case name == pki.SecretsNixPath:
			last = append(last, name)
		case pki.IsAgeFile(name):
			keys = append(keys, name)
		default:
			certs = append(certs, name)
		}
	}
	slices.Sort(keys)
	slices.Sort(certs)
	names := slices.Concat(keys, certs, last)
	if len(names) < 2*len(specs) { // a key and a certificate each, less the service account's certificate, plus secrets.nix
		b.Fatalf("%d files for %d specs", len(names), len(specs))
	}
	create := func(root, name string) error {
		full := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write(mem.m[name].Data); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	}
	for b.Loop() {
		b.StopTimer()
		root, err := os.MkdirTemp(b.TempDir(), "tree")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if workers <= 1 {
			for _, name := range names {
				if err := create(root, name); err != nil {
					b.Fatal(err)
				}
			}
			continue
		}
		next := make(chan string)
		errs := make(chan error, workers)
		for range workers {
			go func() {
				var first error
				for name := range next {
					if err := create(root, name); err != nil && first == nil {
						first = err
					}
				}
				errs <- first
			}()
		}
		for _, name := range names {
			next <- name
		}
		close(next)
		for range workers {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(names)), "files/op")
}
