package fleet

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

func TestCertHosts(t *testing.T) {
	d := &Desired{Fleet: &nest.Fleet{Hosts: map[string]*nest.Host{"cp": {Name: "cp"}, "w1": {Name: "w1"}, "w2": {Name: "w2"}}}}
	for _, c := range []struct {
		changed []string
		want    []string
	}{
		{[]string{"derived/w1/kubernetes-kubelet.crt", "derived/w1/kubernetes-kubelet.key.age", "secrets.nix"}, []string{"w1"}},
		{[]string{"hosts/w2.pub", "derived/w2/kubernetes-kubelet.crt"}, []string{"w2"}},
		{[]string{"ca/kubernetes.crt"}, []string{"cp", "w1", "w2"}},
		{[]string{"secrets.nix", "hosts/w1.pub"}, nil},
		{[]string{"derived/gone/x.crt"}, nil},
	} {
		got := slices.Sorted(maps.Keys(certHosts(d, c.changed)))
		if !slices.Equal(got, c.want) {
			t.Errorf("certHosts(%v) = %v, want %v", c.changed, got, c.want)
		}
	}
}

// TestApplyStepsAreThePlanesInOrder: an apply's plane steps are the
// executor's planes, in its order, and a session that reaches none of the
// planes' clients has no applier for any of them.
func TestApplyStepsAreThePlanesInOrder(t *testing.T) {
	s := &Session{desired: &Desired{Fleet: &nest.Fleet{}}, live: &reconcile.Live{}, opts: Options{Getenv: func(string) string { return "" }}}
	steps, err := (&applying{s: s, live: cloneLive(s.live)}).steps()
	if err != nil {
		t.Fatal(err)
	}
	var planes []reconcile.Plane
	for _, st := range steps {
		planes = append(planes, st.plane)
		if st.apply != nil {
			t.Errorf("the %s plane has an applier with no client to apply it", st.plane)
		}
	}
	if !slices.Equal(planes, reconcile.Planes()) {
		t.Errorf("apply steps %v, want the planes in the executor's order %v", planes, reconcile.Planes())
	}
}

// TestLiveIsACopy: what a caller does to the live state it is given does
// not change the session's.
func TestLiveIsACopy(t *testing.T) {
	s := &Session{live: &reconcile.Live{Planes: []reconcile.Plane{reconcile.PlaneHosts, reconcile.PlanePKI}}}
	l := s.Live()
	l.Planes[0] = reconcile.PlaneCloud
	l.Tailnet = reconcile.Tailnet{Nodes: []reconcile.Node{{ID: "n1"}}}
	if got := s.Live(); got.Planes[0] != reconcile.PlaneHosts || len(got.Tailnet.Nodes) != 0 {
		t.Errorf("the session's live state changed with its copy: %+v", got)
	}
}

// TestApplyThatCannotStartReportsNothing: an apply that fails before its
// first step (here nestbot's SSH key, for the cloud's user-data, is not in
// the environment) says why and returns an empty report, not a nil one
// (nestbot apply printed it, and panicked).
func TestApplyThatCannotStartReportsNothing(t *testing.T) {
	f := &nest.Fleet{}
	f.Rollout.SSH.Key = &nest.SecretRef{Env: "NESTBOT_TEST_DEPLOY_KEY"}
	s := &Session{desired: &Desired{Fleet: f}, live: &reconcile.Live{}, ec2: struct{ nestaws.EC2 }{},
		opts: Options{Getenv: func(string) string { return "" }}}
	applied, err := s.Apply(context.Background(), &reconcile.Plan{}, ApplyOptions{})
	if err == nil || !strings.Contains(err.Error(), "NESTBOT_TEST_DEPLOY_KEY") {
		t.Errorf("apply with the deploy key unset: %v, want an error naming its variable", err)
	}
	if applied == nil || applied.Report == nil || len(applied.Report.Results) != 0 {
		t.Errorf("apply that could not start returned %+v, want an empty report", applied)
	}
}
