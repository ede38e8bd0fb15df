package aws_test

import (
	"os"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// terraformFleet starts the lab with the DucksNest fleet as Terraform
// built it (untagged but for Name).
func terraformFleet(t *testing.T) (*ec2.Server, ec2.Fleet) {
	t.Helper()
	srv := &ec2.Server{PendingDelay: -1, StoppingDelay: -1, ShuttingDownDelay: -1}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tf, err := srv.SeedFleet(ec2.DucksNestFleet())
	if err != nil {
		t.Fatal(err)
	}
	return srv, tf
}

// pastedFragment returns the adopt: lines of a plan's twins error, as a
// person pastes them.
func pastedFragment(t *testing.T, err error) []nest.Adoption {
	t.Helper()
	if err == nil {
		t.Fatal("the plan did not stop")
	}
	msg := err.Error()
	_, rest, ok := strings.Cut(msg, "put these adopt: lines into nest.yaml:\n")
	body, _, ok2 := strings.Cut(rest, "To create one anyway")
	if !ok || !ok2 {
		t.Fatalf("no adopt: lines in:\n%s", msg)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	got, perr := nest.AdoptionsIn([]byte(strings.Join(lines, "\n")))
	if perr != nil {
		t.Fatalf("the adopt: lines are not YAML: %v\n%s", perr, body)
	}
	return got
}

// exampleWith is the example nest.yaml with the adoptions pasted in, loaded.
func exampleWith(t *testing.T, adoptions []nest.Adoption, edit func(string) string) *nest.Fleet {
	t.Helper()
	src, err := os.ReadFile("../../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := nest.WithAdoptions(src, adoptions)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	if edit != nil {
		text = edit(text)
	}
	f, err := nest.Parse("nest.yaml", []byte(text))
	if err != nil {
		t.Fatalf("nest.yaml with the adopt: lines pasted in: %v\n%s", err, text)
	}
	return f
}

// TestNoSilentTwins: beside the fleet Terraform built (every resource
// untagged but for Name), a nest.yaml without adopt: stops the plan with
// the adopt: lines for all seven, naming each id; nothing is created or
// called but Describe. Pasted into nest.yaml, they plan 7 adoptions and 0
// creates, the apply takes them over, and the next plan is empty.
func TestNoSilentTwins(t *testing.T) {
	srv, tf := terraformFleet(t)
	w := newWorld(t, srv, nestaws.ClientOptions{})
	p, err := w.planErr(example(t))
	noDestruction(t, srv, p)
	if s := p.Summary(); s.Create != 0 {
		t.Errorf("the stopped plan still creates %d: %v", s.Create, actions(p))
	}
	t.Logf("the plan stops:\n%v", err)
	want := map[string]string{
		"aws.vpc": tf.VpcID, "aws.subnets.public-a": tf.SubnetIDs[0], "aws.subnets.public-c": tf.SubnetIDs[1],
		"aws.internet_gateway": tf.InternetGatewayID, "aws.route_table": tf.RouteTableID, "aws.security_group": tf.SecurityGroupID,
		"hosts.ec2-controlplane.aws": tf.InstanceIDs[0],
	}
	adoptions := pastedFragment(t, err)
	got := map[string]string{}
	for _, a := range adoptions {
		got[strings.Join(a.Path, ".")] = a.ID
	}
	for path, id := range want {
		if got[path] != id {
			t.Errorf("adopt line at %s: %q, want %s", path, got[path], id)
		}
	}
	if len(got) != len(want) {
		t.Errorf("adopt lines %v, want %v", got, want)
	}
	for _, s := range []string{"Name=ducksnest-vpc, 10.20.0.0/16", "group ducksnest, Name=ducksnest-sg", "Name=ec2-controlplane, running in " + tf.SubnetIDs[0], "write adopt: none"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the error does not say %q", s)
		}
	}

	f := exampleWith(t, adoptions, nil)
	p, live := w.plan(f)
	if s := p.Summary(); s.Create != 0 || s.Adopt != 7 || s.Delete != 0 {
		t.Fatalf("with the adopt: lines: %+v: %v", s, actions(p))
	}
	if _, err := w.apply(f, p, live); err != nil {
		t.Fatal(err)
	}
	if again, _ := w.plan(f); len(again.Steps) != 0 {
		t.Fatalf("the plan after the apply: %v", actions(again))
	}
	if n := len(srv.Instances()); n != 1 {
		t.Fatalf("%d instances, want the one Terraform built", n)
	}
}

// TestAdoptNoneCreatesBesideTheLookalike: adopt: none at the VPC makes a new
// VPC (its subnets then have nothing to be twins of); the instance that
// looks like the host still stops the plan until it too says adopt: none.
func TestAdoptNoneCreatesBesideTheLookalike(t *testing.T) {
	srv, tf := terraformFleet(t)
	srv.SeedInstanceProfile("ducksnest-controlplane")
	w := newWorld(t, srv, nestaws.ClientOptions{})
	f := example(t)
	f.AWS.VPC.Adopt = &nest.Adopt{None: true}
	_, err := w.planErr(f)
	adoptions := pastedFragment(t, err)
	if len(adoptions) != 1 || strings.Join(adoptions[0].Path, ".") != "hosts.ec2-controlplane.aws" || adoptions[0].ID != tf.InstanceIDs[0] {
		t.Fatalf("with adopt: none at the VPC, the adopt lines are %v, want only the instance's", adoptions)
	}
	f.Hosts["ec2-controlplane"].AWS.Adopt = &nest.Adopt{None: true}
	p, live := w.plan(f)
	if s := p.Summary(); s.Create != 7 || s.Adopt != 0 {
		t.Fatalf("adopt: none everywhere: %+v %v", s, actions(p))
	}
	if _, err := w.apply(f, p, live); err != nil {
		t.Fatal(err)
	}
	if again, _ := w.plan(f); len(again.Steps) != 0 {
		t.Fatalf("the plan after the apply: %v", actions(again))
	}
	if n := len(srv.Instances()); n != 2 {
		t.Fatalf("%d instances, want Terraform's and the one adopt: none created", n)
	}
}

// TestAdoptTwoSubnetsSharingAName: Terraform's count-made subnets often
// share one Name; adopt: {tag: Name=…} on each takes the one whose CIDR is
// nest.yaml's, and says so. A tag that two look-alikes share (two VPCs of
// one CIDR and Name) is an error that lists both ids with what they are.
// A security group is adopted by its group name.
func TestAdoptTwoSubnetsSharingAName(t *testing.T) {
	srv, tf := terraformFleet(t)
	for _, id := range tf.SubnetIDs {
		if !srv.SetTag(id, "Name", "ducksnest-public") {
			t.Fatalf("no %s", id)
		}
	}
	f := adoptAll(t)
	f.AWS.Subnets["public-a"].Adopt = &nest.Adopt{Tag: "Name=ducksnest-public"}
	f.AWS.Subnets["public-c"].Adopt = &nest.Adopt{Tag: "Name=ducksnest-public"}
	f.AWS.SecurityGroup.Adopt = &nest.Adopt{GroupName: "ducksnest"}
	w := newWorld(t, srv, nestaws.ClientOptions{})
	p, live := w.plan(f)
	ids := map[string]string{}
	for _, st := range p.Steps {
		if st.Action == reconcile.ActionAdopt {
			ids[st.Address.String()] = st.ID
		}
	}
	if ids["aws.subnet.public-a"] != tf.SubnetIDs[0] || ids["aws.subnet.public-c"] != tf.SubnetIDs[1] || ids["aws.security_group"] != tf.SecurityGroupID {
		t.Fatalf("adopted %v, want public-a %s, public-c %s, the group %s", ids, tf.SubnetIDs[0], tf.SubnetIDs[1], tf.SecurityGroupID)
	}
	for _, st := range p.Steps {
		if st.Address.String() == "aws.subnet.public-a" && !strings.Contains(st.Reason, "2 resources are tagged Name=ducksnest-public; "+tf.SubnetIDs[0]+" is the one nest.yaml describes") {
			t.Errorf("public-a's reason does not say how it was told: %q", st.Reason)
		}
	}
	if _, err := w.apply(f, p, live); err != nil {
		t.Fatal(err)
	}
	if again, _ := w.plan(f); len(again.Steps) != 0 {
		t.Fatalf("the plan after the apply: %v", actions(again))
	}

	other, err := srv.SeedFleet(ec2.FleetSpec{Name: "copy", VpcCIDR: "10.20.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTag(other.VpcID, "Name", "ducksnest-vpc")
	g := example(t)
	g.Name = "second"
	g.AWS.VPC.Adopt = &nest.Adopt{Tag: "Name=ducksnest-vpc"}
	_, err = w.planErr(g)
	if err == nil || !strings.Contains(err.Error(), "aws.vpc: adopt: 2 resources are tagged Name=ducksnest-vpc: ") ||
		!strings.Contains(err.Error(), "adopt one by id instead") || !strings.Contains(err.Error(), other.VpcID+" (Name=ducksnest-vpc, 10.20.0.0/16)") {
		t.Fatalf("two VPCs named alike: %v", err)
	}
}
