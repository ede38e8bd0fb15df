package reconcile

import (
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/nest"
)

// TestAdoptableNamesNoneOfSeveralLookalikes: two untagged VPCs of the
// fleet's CIDR — Adoptable picks neither and lists both; the plan stops
// listing both as the choice; adopt: none leaves the VPC out.
func TestAdoptableNamesNoneOfSeveralLookalikes(t *testing.T) {
	f, err := nest.Load("../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	delete(f.Hosts, "ec2-controlplane")
	live := &Live{Planes: []Plane{PlaneCloud}, Cloud: Cloud{VPCs: []VPC{
		{ID: "vpc-0a", CIDR: "10.20.0.0/16", Tags: Tags{"Name": "old"}},
		{ID: "vpc-0b", CIDR: "10.20.0.0/16"},
		{ID: "vpc-0c", CIDR: "10.99.0.0/16"},
	}}}
	found, err := Adoptable(Desired{Fleet: f}, live)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Address != CloudAddress(KindVPC, "") || found[0].ID != "" || len(found[0].Others) != 2 ||
		!strings.HasPrefix(found[0].Others[0], "vpc-0a (Name=old, 10.20.0.0/16)") {
		t.Fatalf("found %+v", found)
	}
	_, err = Diff(Desired{Fleet: f}, live, Options{})
	if err == nil || !strings.Contains(err.Error(), "adopt: {id: vpc-0a}  # Name=old, 10.20.0.0/16; or vpc-0b (10.20.0.0/16): keep the one to take over") {
		t.Fatalf("plan: %v", err)
	}
	f.AWS.VPC.Adopt = &nest.Adopt{None: true}
	if found, err := Adoptable(Desired{Fleet: f}, live); err != nil || len(found) != 0 {
		t.Fatalf("with adopt: none: %+v, %v", found, err)
	}
	if p, err := Diff(Desired{Fleet: f}, live, Options{}); err != nil || p.Summary().Create != 6 {
		t.Fatalf("with adopt: none the plan creates the network: %v, %v", err, p.Summary())
	}
}
