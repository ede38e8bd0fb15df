package reconcile

import (
	"bytes"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkDiff1000Hosts plans a fleet of 1,000 hosts (500 in AWS, 100
// control planes, ~4,000 certificates and keys) against a live state in which every
// host is one revision behind and a tenth of the certificates are due.
func BenchmarkDiff1000Hosts(b *testing.B) { benchmarkDiff(b, 1000) }

// BenchmarkDiff10000Hosts is the same fleet ten times larger: bench/plan
// divides the two to show the plan grows with the fleet, not faster.
func BenchmarkDiff10000Hosts(b *testing.B) { benchmarkDiff(b, 10000) }

func benchmarkDiff(b *testing.B, hosts int) {
	d := genFleet(b, hosts)
	l := behindLive(b, d)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := Diff(d, l, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Steps) == 0 {
			b.Fatal("no steps")
		}
	}
}

// behindLive is convergedLive with every host one revision behind, every
// tenth certificate expiring and every twentieth instance on an older AMI.
func behindLive(tb testing.TB, d Desired) *Live {
	l := convergedLive(tb, d, revOld, observedAt)
	l.Repo.Revision = revNew
	for i, id := range slices.Sorted(maps.Keys(l.PKI.Certs)) {
		if c := l.PKI.Certs[id]; i%10 == 0 && !c.NotAfter.IsZero() {
			c.NotAfter = observedAt.Add(48 * time.Hour)
			l.PKI.Certs[id] = c
		}
	}
	for j := range l.Cloud.Instances {
		if j%20 == 0 {
			l.Cloud.Instances[j].ImageID = "ami-0older"
		}
	}
	return l
}

var (
	writeBench = flag.String("write-bench-fleet", "", "write a fleet's nest.yaml, pinned keys and live snapshot into this directory (for bench/plan)")
	benchHosts = flag.Int("bench-fleet-hosts", 1000, "the number of hosts -write-bench-fleet writes")
)

// TestWriteBenchFleet writes the input of bench/plan: the fleet of
// BenchmarkDiff1000Hosts as files the CLI reads.
func TestWriteBenchFleet(t *testing.T) {
	dir := *writeBench
	if dir == "" {
		t.Skip("only with -write-bench-fleet DIR")
	}
	d := genFleet(t, *benchHosts)
	if err := os.MkdirAll(filepath.Join(dir, "certs", "hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nest.yaml"), []byte(genFleetYAML(*benchHosts)), 0o644); err != nil {
		t.Fatal(err)
	}
	for name := range d.Fleet.Hosts {
		if err := os.WriteFile(filepath.Join(dir, "certs", "hosts", name+".pub"), []byte(genHostKey+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := behindLive(t, d).Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "live.json"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
