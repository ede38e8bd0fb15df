package aws_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// bigFleet builds, through the API, the example's network, and seeds n
// instances tagged as the fleet's hosts.
func bigFleet(tb testing.TB, n int) (*ec2.Server, *world) {
	tb.Helper()
	srv := &ec2.Server{PendingDelay: -1, StoppingDelay: -1, ShuttingDownDelay: -1}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	img, err := srv.SeedImage(ec2.Image{Name: "NixOS-25.05-updated-kernel-image", OwnerID: "427812963091", Public: true})
	if err != nil {
		tb.Fatal(err)
	}
	srv.SeedInstanceProfile("ducksnest-controlplane")
	w := newWorld(tb, srv, nestaws.ClientOptions{})
	f := bigExample(tb)
	p, live := w.plan(f)
	if _, err := w.apply(f, p, live); err != nil {
		tb.Fatal(err)
	}
	subnet := ""
	for _, s := range liveSubnets(tb, w) {
		subnet = s
	}
	for i := range n {
		host := fmt.Sprintf("node-%04d", i)
		tags := reconcile.DesiredTags("ducksnest", reconcile.Address(reconcile.KindInstance, host), host, host)
		if _, err := srv.SeedInstance(ec2.InstanceSpec{ImageID: img, SubnetID: subnet, Tags: tags, RootVolumeGiB: 20, RootEncrypted: true}); err != nil {
			tb.Fatal(err)
		}
	}
	return srv, w
}

// bigExample is the example with subnets large enough for 1,000 instances.
func bigExample(tb testing.TB) *nest.Fleet {
	f := example(tb)
	delete(f.Hosts, "ec2-controlplane")
	f.AWS.Subnets["public-a"].CIDR = "10.20.0.0/20"
	f.AWS.Subnets["public-c"].CIDR = "10.20.16.0/20"
	return f
}

func liveSubnets(tb testing.TB, w *world) []string {
	obs := &nestaws.Observer{Client: w.cli}
	c, err := obs.Observe(context.Background(), bigExample(tb))
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, s := range c.Subnets {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestObserveCallsGrowWithPages: observing 1,000 instances costs a call per
// page of instances and of volumes, plus one per other kind, whatever the
// number of resources.
func TestObserveCallsGrowWithPages(t *testing.T) {
	srv, w := bigFleet(t, 1000)
	for _, page := range []int32{100, 1000} {
		srv.ResetCalls()
		obs := &nestaws.Observer{Client: w.cli, PageSize: page}
		c, err := obs.Observe(context.Background(), bigExample(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Instances) != 1000 {
			t.Fatalf("observed %d instances", len(c.Instances))
		}
		for _, in := range c.Instances {
			if in.RootVolume.SizeGB != 20 || !in.RootVolume.Encrypted {
				t.Fatalf("root volume of %s not observed: %+v", in.ID, in.RootVolume)
			}
		}
		total := 0
		for _, n := range srv.CallCounts() {
			total += int(n)
		}
		instancePages := (1000 + int(page) - 1) / int(page)
		want := instancePages + 2 + 5 // volumes come 500 a page; VPCs, subnets, gateways, route tables, groups (no AMI to find)
		if total != want || int(srv.Calls("DescribeInstances")) != instancePages {
			t.Fatalf("page %d: %d calls %v, want %d", page, total, srv.CallCounts(), want)
		}
		if got := obs.Calls(); got["DescribeInstances"] != instancePages {
			t.Fatalf("observer counted %v", got)
		}
	}
}

func BenchmarkObserve1000Instances(b *testing.B) {
	srv, w := bigFleet(b, 1000)
	f := bigExample(b)
	for _, page := range []int32{100, 1000} {
		b.Run(fmt.Sprintf("page=%d", page), func(b *testing.B) {
			srv.ResetCalls()
			for b.Loop() {
				obs := &nestaws.Observer{Client: w.cli, PageSize: page}
				if _, err := obs.Observe(context.Background(), f); err != nil {
					b.Fatal(err)
				}
			}
			calls := 0
			for _, n := range srv.CallCounts() {
				calls += int(n)
			}
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		})
	}
}
