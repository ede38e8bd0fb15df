package reconcile

import (
	"testing"
	"time"
)

// BenchmarkDiff1000Hosts plans a fleet of 1,000 hosts (500 in AWS, 100
// control planes, ~6,000 certificates) against a live state in which every
// host is one revision behind and a tenth of the certificates are due.
func BenchmarkDiff1000Hosts(b *testing.B) {
	d := genFleet(b, 1000)
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
	for i, id := range sortedNames(l.PKI.Certs) {
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
