package aws_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// clock is a simulated time for the lab, moved on by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// lostLaunchWorld is the lab behind an endpoint that loses every answer to
// a RunInstances during the first apply, and hides a new instance from
// DescribeInstances for an hour of the lab's clock. A launch answered
// during a later apply moves the clock past that hour: the instance shows
// while that apply waits for it.
func lostLaunchWorld(t *testing.T) (*ec2.Server, *clock, *lossyEndpoint, nestaws.EC2) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}
	srv := &ec2.Server{Now: clk.Now, PendingDelay: -1, StoppingDelay: -1, ShuttingDownDelay: -1}
	if _, err := srv.SeedImage(ec2.Image{Name: "NixOS-25.05-updated-kernel-image", OwnerID: nest.NixOSAMIOwner, Public: true}); err != nil {
		t.Fatal(err)
	}
	srv.SeedInstanceProfile("ducksnest-controlplane")
	srv.SetFaults(ec2.Faults{VisibilityLag: time.Hour})
	ep := &lossyEndpoint{srv: srv, faults: map[string]int{}, launched: map[string]int{},
		lose: func(host string, n, run int) string {
			if run == 1 {
				return "reset"
			}
			clk.Add(2 * time.Hour)
			return ""
		}}
	hs := httptest.NewServer(ep)
	t.Cleanup(hs.Close)
	cfg := srv.Config("ap-northeast-2")
	cfg.BaseEndpoint = aws.String(hs.URL)
	return srv, clk, ep, nestaws.NewClientFromConfig(cfg, nestaws.ClientOptions{MaxAttempts: 3, MaxBackoff: time.Millisecond})
}

// applyOnce observes, plans and applies f once, with the auth key key.
func applyOnce(t *testing.T, cli nestaws.EC2, f *nest.Fleet, key string) (*reconcile.Plan, error) {
	t.Helper()
	ctx := context.Background()
	cloud, err := (&nestaws.Observer{Client: cli}).Observe(ctx, f)
	if err != nil {
		t.Fatalf("observe: %v", err)
	}
	live := &reconcile.Live{ObservedAt: time.Now(), Planes: []reconcile.Plane{reconcile.PlaneCloud}, Cloud: cloud}
	p, err := reconcile.Diff(reconcile.Desired{Fleet: f}, live, reconcile.Options{})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	a := &nestaws.Applier{Client: cli, Fleet: f, Live: &live.Cloud,
		AuthKey: func(context.Context, string) (string, error) { return key, nil },
		Poll:    time.Millisecond, WaitTimeout: 10 * time.Second}
	_, err = a.Apply(ctx, p.Steps)
	return p, err
}

func hasCreate(p *reconcile.Plan, addr string) bool {
	for _, st := range p.Steps {
		if st.Address.String() == addr && st.Action == reconcile.ActionCreate {
			return true
		}
	}
	return false
}

// TestLostLaunchThenAnotherCommitLaunchesNoSecond: the first apply launches
// the instance but loses every answer, so it fails; an apply of another
// commit, while EC2 still does not show the instance, plans its create
// again. It launches no second instance: with the same auth key EC2
// answers the same token with the instance it launched; with a new key
// (one minted per apply) or a changed instance type, the token's arguments
// differ, EC2 refuses, and nestbot says the instance is not visible yet
// instead of launching. Once EC2 shows it, the plan creates nothing.
func TestLostLaunchThenAnotherCommitLaunchesNoSecond(t *testing.T) {
	for _, tc := range []struct {
		name    string
		key2    string
		change  func(*nest.Fleet)
		refusal bool
	}{
		{"same key", canaryKey, nil, false},
		{"a key minted for the second apply", canaryKey + "-2", nil, true},
		{"the second commit changes the instance type", canaryKey, func(f *nest.Fleet) {
			f.Hosts["ec2-controlplane"].AWS.InstanceType = "t3.large"
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, clk, ep, cli := lostLaunchWorld(t)
			f := example(t)
			ep.run.Store(1)
			if _, err := applyOnce(t, cli, f, canaryKey); err == nil {
				t.Fatal("the first apply succeeded although every answer to its launch was lost")
			}
			if n := len(srv.Instances()); n != 1 {
				t.Fatalf("%d instances after the first apply, want the 1 it launched", n)
			}

			ep.run.Store(2) // another commit, another apply
			g := example(t)
			if tc.change != nil {
				tc.change(g)
			}
			p, err := applyOnce(t, cli, g, tc.key2)
			if !hasCreate(p, "aws.instance.ec2-controlplane") {
				t.Fatalf("the second plan does not create the (invisible) instance again, so the case is not reached: %v", actions(p))
			}
			switch {
			case tc.refusal && (err == nil || !strings.Contains(err.Error(), "EC2 does not show it yet")):
				t.Errorf("second apply: %v, want the refusal that says the instance is not visible yet", err)
			case !tc.refusal && err != nil:
				t.Errorf("second apply: %v", err)
			}
			if n := len(srv.Instances()); n != 1 {
				t.Fatalf("%d instances after the second apply, want 1", n)
			}

			clk.Add(2 * time.Hour) // EC2 shows it now
			p, err = applyOnce(t, cli, g, tc.key2)
			if err != nil || hasCreate(p, "aws.instance.ec2-controlplane") {
				t.Fatalf("once visible: plan %v, apply %v", actions(p), err)
			}
			if n := len(srv.Instances()); n != 1 {
				t.Fatalf("%d instances in the end, want 1", n)
			}
			if again, err := applyOnce(t, cli, g, tc.key2); err != nil || len(again.Steps) != 0 {
				t.Fatalf("the plan after the apply is not empty: %v (%v)", actions(again), err)
			}
		})
	}
}

// TestHostReaddedLaunchesANewInstance: a host whose instance was terminated
// (removed from nest.yaml, then added back with the same launch) gets a new
// instance, although EC2 still answers its token with the terminated one.
func TestHostReaddedLaunchesANewInstance(t *testing.T) {
	for _, key := range []string{canaryKey, canaryKey + "-minted-again"} {
		t.Run(fmt.Sprintf("key %d", len(key)), func(t *testing.T) {
			srv := lab(t)
			w := newWorld(t, srv, nestaws.ClientOptions{})
			f := example(t)
			w.converge(f)
			first := liveInstances(srv, "ec2-controlplane")[0].ID
			g := example(t)
			delete(g.Hosts, "ec2-controlplane")
			w.converge(g)
			if _, err := applyOnce(t, w.cli, f, key); err != nil {
				t.Fatalf("apply with the host back: %v", err)
			}
			ins := liveInstances(srv, "ec2-controlplane")
			if len(ins) != 1 || ins[0].ID == first || ins[0].State != "running" {
				t.Fatalf("after re-adding the host: %+v (the first was %s)", ins, first)
			}
			if p, _ := w.plan(f); len(p.Steps) != 0 {
				t.Fatalf("re-plan: %v", actions(p))
			}
		})
	}
}

// TestStalePlanTakesTheTaggedInstance: an apply of a plan made before the
// host's instance was launched (by another apply) finds it by its tags and
// takes it, without calling RunInstances.
func TestStalePlanTakesTheTaggedInstance(t *testing.T) {
	srv := lab(t)
	w := newWorld(t, srv, nestaws.ClientOptions{})
	f := example(t)
	p, live := w.plan(f)
	if _, err := w.apply(f, p, live); err != nil {
		t.Fatal(err)
	}
	id := liveInstances(srv, "ec2-controlplane")[0].ID
	launches := srv.Calls("RunInstances")
	var calls atomic.Int64
	stale := &reconcile.Plan{}
	for _, st := range p.Steps {
		if st.Address.String() == "aws.instance.ec2-controlplane" {
			stale.Steps = append(stale.Steps, st)
		}
	}
	w.logs.Reset()
	res, err := w.apply(f, stale, w.observe(f)) // the ids of the network, as observed now
	calls.Store(srv.Calls("RunInstances") - launches)
	if err != nil || len(res) != 1 || res[0].ID != id {
		t.Fatalf("stale create: %+v, %v; want %s taken", res, err, id)
	}
	if calls.Load() != 0 {
		t.Errorf("%d RunInstances for an instance that was there", calls.Load())
	}
	if !strings.Contains(w.logs.String(), id+" (running) was launched for it already") {
		t.Errorf("the apply did not say it took %s:\n%s", id, w.logs.String())
	}
	if n := len(liveInstances(srv, "ec2-controlplane")); n != 1 {
		t.Errorf("%d instances, want 1", n)
	}
}
