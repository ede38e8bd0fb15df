package aws_test

import (
	"context"
	"fmt"
	"testing"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

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
		tags := reconcile.DesiredTags("ducksnest", reconcile.CloudAddress(reconcile.KindInstance, host), host, host)
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

// observeGoal is the goal for observing 1,000 instances: at most
// ⌈1000/page size⌉ + 6 Describe calls.
func observeGoal(page int32) int { return (1000+int(page)-1)/int(page) + 6 }

// TestObserveCallsGrowWithPages: observing 1,000 instances costs a call per
// page of instances, one for all their root volumes, and one per other
// kind, whatever the number of resources: within the goal of
// ⌈1000/page size⌉ + 6 Describe calls.
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
		if goal := observeGoal(page); total > goal {
			t.Fatalf("page %d: %d Describe calls %v, goal ⌈1000/%d⌉ + 6 = %d", page, total, srv.CallCounts(), page, goal)
		}
		instancePages := (1000 + int(page) - 1) / int(page)
		if n := int(srv.Calls("DescribeInstances")); n != instancePages {
			t.Fatalf("page %d: %d DescribeInstances, want %d", page, n, instancePages)
		}
		if n := srv.Calls("DescribeVolumes"); n != 1 {
			t.Fatalf("page %d: %d DescribeVolumes for 1,000 root volumes, want 1", page, n)
		}
		if got := obs.Calls(); got["DescribeInstances"] != instancePages || got["DescribeVolumes"] != 1 {
			t.Fatalf("observer counted %v", got)
		}
	}
}

// vanishing terminates one instance right after the observer has described
// the instances, so that its root volume is gone by the time the observer
// describes the volumes.
type vanishing struct {
	nestaws.EC2
	victim string
	done   bool
}

func (v *vanishing) DescribeInstances(ctx context.Context, in *awsec2.DescribeInstancesInput, opts ...func(*awsec2.Options)) (*awsec2.DescribeInstancesOutput, error) {
	out, err := v.EC2.DescribeInstances(ctx, in, opts...)
	if err == nil && !v.done {
		v.done = true
		if _, err := v.EC2.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{v.victim}}); err != nil {
			return nil, err
		}
	}
	return out, err
}

// TestObserveToleratesAVanishedVolume: a root volume deleted between
// DescribeInstances and DescribeVolumes (its instance was terminated) makes
// EC2 refuse the whole list of ids; the observer describes that list again
// by filter and still observes every other root volume.
func TestObserveToleratesAVanishedVolume(t *testing.T) {
	srv, w := bigFleet(t, 300)
	victim := srv.Instances()[42].ID
	srv.ResetCalls()
	obs := &nestaws.Observer{Client: &vanishing{EC2: w.cli, victim: victim}}
	c, err := obs.Observe(context.Background(), bigExample(t))
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	for _, in := range c.Instances {
		switch {
		case in.ID == victim && in.RootVolume.SizeGB != 0:
			t.Errorf("the vanished root volume of %s was observed: %+v", in.ID, in.RootVolume)
		case in.ID != victim && (in.RootVolume.SizeGB != 20 || !in.RootVolume.Encrypted):
			t.Fatalf("root volume of %s not observed: %+v", in.ID, in.RootVolume)
		}
	}
	// One call by id (InvalidVolume.NotFound), then 300 ids by filter, 200 at a time.
	if n := srv.Calls("DescribeVolumes"); n != 3 {
		t.Errorf("%d DescribeVolumes, want 3", n)
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
			b.ReportMetric(float64(observeGoal(page)), "goal-calls")
		})
	}
}
