package aws_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// twoFleets seeds the lab with the DucksNest fleet as Terraform built it and
// a second Terraform-built fleet ("tf") in a VPC of its own: a subnet, an
// internet gateway attached to that VPC, a route table, a security group and
// an instance, all tagged only with Name.
func twoFleets(t *testing.T) (srv *ec2.Server, dn, tf ec2.Fleet) {
	t.Helper()
	srv = &ec2.Server{PendingDelay: -1, StoppingDelay: -1, ShuttingDownDelay: -1}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dn, err := srv.SeedFleet(ec2.DucksNestFleet())
	if err != nil {
		t.Fatal(err)
	}
	tf, err = srv.SeedFleet(ec2.FleetSpec{Name: "tf", VpcCIDR: "10.30.0.0/16",
		Subnets: []ec2.FleetSubnet{{Name: "public-a", CIDR: "10.30.0.0/24", AvailabilityZone: "ap-northeast-2a"}},
		Image:   ec2.Image{ID: dn.ImageID},
		Hosts:   []ec2.FleetHost{{Name: "tf-web", InstanceType: "t3.micro", RootVolumeGiB: 20, RootVolumeType: "gp3", RootEncrypted: true}}})
	if err != nil {
		t.Fatal(err)
	}
	return srv, dn, tf
}

// adoptAll is the example adopting every resource of the DucksNest fleet by
// its Name tag.
func adoptAll(t *testing.T) *nest.Fleet {
	f := example(t)
	a := f.AWS
	a.VPC.Adopt = &nest.Adopt{Tag: "Name=ducksnest-vpc"}
	a.Subnets["public-a"].Adopt = &nest.Adopt{Tag: "Name=ducksnest-public-a"}
	a.Subnets["public-c"].Adopt = &nest.Adopt{Tag: "Name=ducksnest-public-c"}
	a.InternetGateway.Adopt = &nest.Adopt{Tag: "Name=ducksnest-igw"}
	a.RouteTable.Adopt = &nest.Adopt{Tag: "Name=ducksnest-public"}
	a.SecurityGroup.Adopt = &nest.Adopt{Tag: "Name=ducksnest-sg"}
	f.Hosts["ec2-controlplane"].AWS.Adopt = &nest.Adopt{Tag: "Name=ec2-controlplane"}
	return f
}

func (w *world) observe(f *nest.Fleet) *reconcile.Live {
	w.t.Helper()
	obs := &nestaws.Observer{Client: w.cli}
	cloud, err := obs.Observe(context.Background(), f)
	if err != nil {
		w.t.Fatalf("observe: %v", err)
	}
	return &reconcile.Live{ObservedAt: time.Now(), Planes: []reconcile.Plane{reconcile.PlaneCloud}, Cloud: cloud}
}

// planErr observes and plans as the CLI does, returning the plan's error.
func (w *world) planErr(f *nest.Fleet) (*reconcile.Plan, error) {
	w.t.Helper()
	return reconcile.Diff(reconcile.Desired{Fleet: f}, w.observe(f), reconcile.Options{})
}

// noDestruction fails if the plan deletes or replaces anything, or if
// anything but a Describe call reached the lab.
func noDestruction(t *testing.T, srv *ec2.Server, p *reconcile.Plan) {
	t.Helper()
	for _, st := range p.Steps {
		if st.Action == reconcile.ActionDelete || st.Action == reconcile.ActionReplace {
			t.Errorf("plan %s %s (%s)", st.Action, st.Address, st.ID)
		}
	}
	for action := range srv.CallCounts() {
		if !strings.HasPrefix(action, "Describe") {
			t.Errorf("planning called %s", action)
		}
	}
}

// TestAdoptFromAnotherVPCIsAnError: a nest.yaml resource that adopts a
// subnet, security group, route table, internet gateway or instance of
// another VPC than the fleet's gets an error that names it, the VPCs and
// what to do, and the plan neither adopts nor replaces it.
func TestAdoptFromAnotherVPCIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		adopt func(*nest.Fleet)
		want  func(dn, tf ec2.Fleet) string
	}{
		{"subnet", func(f *nest.Fleet) { f.AWS.Subnets["public-a"].Adopt = &nest.Adopt{Tag: "Name=tf-public-a"} },
			func(dn, tf ec2.Fleet) string {
				return "aws.subnet.public-a: adopt: " + tf.SubnetIDs[0] + " (Name=tf-public-a) is in " + tf.VpcID +
					", not the fleet's VPC " + dn.VpcID + "; adopt a subnet of " + dn.VpcID + ", or adopt " + tf.VpcID + " as the fleet's VPC"
			}},
		{"security group", func(f *nest.Fleet) { f.AWS.SecurityGroup.Adopt = &nest.Adopt{ID: "SG"} },
			func(dn, tf ec2.Fleet) string {
				return "aws.security_group: adopt: " + tf.SecurityGroupID + " (Name=tf-sg) is in " + tf.VpcID +
					", not the fleet's VPC " + dn.VpcID + "; adopt a security group of " + dn.VpcID
			}},
		{"route table", func(f *nest.Fleet) { f.AWS.RouteTable.Adopt = &nest.Adopt{Tag: "Name=tf-public"} },
			func(dn, tf ec2.Fleet) string {
				return "aws.route_table.public: adopt: " + tf.RouteTableID + " (Name=tf-public) is in " + tf.VpcID +
					", not the fleet's VPC " + dn.VpcID + "; adopt a route table of " + dn.VpcID
			}},
		{"internet gateway", func(f *nest.Fleet) { f.AWS.InternetGateway.Adopt = &nest.Adopt{Tag: "Name=tf-igw"} },
			func(dn, tf ec2.Fleet) string {
				return "aws.internet_gateway: adopt: " + tf.InternetGatewayID + " (Name=tf-igw) is attached to " + tf.VpcID +
					", not the fleet's VPC " + dn.VpcID + "; adopt a detached internet gateway or the one attached to " + dn.VpcID
			}},
		{"instance", func(f *nest.Fleet) { f.Hosts["ec2-controlplane"].AWS.Adopt = &nest.Adopt{Tag: "Name=tf-web"} },
			func(dn, tf ec2.Fleet) string {
				return "aws.instance.ec2-controlplane: adopt: " + tf.InstanceIDs[0] + " (Name=tf-web) is in " + tf.SubnetIDs[0] + " of " + tf.VpcID +
					", not the fleet's VPC " + dn.VpcID + "; adopt an instance of " + dn.VpcID
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, dn, tf := twoFleets(t)
			f := adoptAll(t)
			tc.adopt(f)
			if ad := f.AWS.SecurityGroup.Adopt; ad.ID == "SG" {
				ad.ID = tf.SecurityGroupID // by id: the message names it by its Name tag all the same
			}
			srv.ResetCalls()
			w := newWorld(t, srv, nestaws.ClientOptions{})
			p, err := w.planErr(f)
			if err == nil {
				t.Fatalf("plan with the %s of another VPC: no error; steps %v", tc.name, actions(p))
			}
			if want := tc.want(dn, tf); !strings.Contains(err.Error(), want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("%d errors, want the one: %v", n, err)
			}
			noDestruction(t, srv, p)
		})
	}
}

// TestAdoptFromAnotherVPCBeforeTheFleetsVPCExists: when the plan creates
// the fleet's VPC, a subnet adopted from an existing VPC is in another VPC
// too, and the error says to adopt that VPC or let nestbot create the subnet.
func TestAdoptFromAnotherVPCBeforeTheFleetsVPCExists(t *testing.T) {
	srv, _, tf := twoFleets(t)
	f := example(t)
	f.AWS.Subnets["public-a"].Adopt = &nest.Adopt{Tag: "Name=tf-public-a"}
	srv.ResetCalls()
	w := newWorld(t, srv, nestaws.ClientOptions{})
	p, err := w.planErr(f)
	want := "aws.subnet.public-a: adopt: " + tf.SubnetIDs[0] + " (Name=tf-public-a) is in " + tf.VpcID +
		", and the fleet's VPC does not exist yet (this plan creates it); adopt " + tf.VpcID + " as the fleet's VPC (aws.vpc.adopt)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
	}
	noDestruction(t, srv, p)
}

// TestFleetTagsInAnotherVPC: a resource that carries the fleet's nest tags
// but lives in another VPC is never replaced (its CIDR differs from
// nest.yaml's) nor deleted (nest.yaml no longer names it): each is an error
// naming it. The applier refuses such a delete as well, should a plan file
// hold one.
func TestFleetTagsInAnotherVPC(t *testing.T) {
	srv, dn, tf := twoFleets(t)
	w := newWorld(t, srv, nestaws.ClientOptions{})
	f := adoptAll(t)
	w.converge(f)
	tagAs := func(id, addr string) {
		t.Helper()
		tags := reconcile.DesiredTags(f.Name, reconcile.MustParseAddress(addr), "x", "")
		delete(tags, "Name")
		var sdk []types.Tag
		for k, v := range tags {
			sdk = append(sdk, types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := w.cli.CreateTags(context.Background(), &awsec2.CreateTagsInput{Resources: []string{id}, Tags: sdk}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("not replaced", func(t *testing.T) {
		g := adoptAll(t)
		g.AWS.Subnets["public-b"] = &nest.Subnet{CIDR: "10.20.2.0/24", Zone: "ap-northeast-2b", Public: true}
		tagAs(tf.SubnetIDs[0], "aws.subnet.public-b")
		srv.ResetCalls()
		p, err := w.planErr(g)
		want := "aws.subnet.public-b: " + tf.SubnetIDs[0] + " (Name=tf-public-a) is in " + tf.VpcID + ", not the fleet's VPC " + dn.VpcID +
			", yet carries this fleet's tags; nestbot never changes, replaces or deletes a resource of another VPC: remove its nest:* tags (aws ec2 delete-tags --resources " + tf.SubnetIDs[0] +
			" --tags Key=nest:name Key=nest:managed Key=nest:resource Key=nest:host Key=nest:user-data)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
		}
		noDestruction(t, srv, p)
	})
	t.Run("not deleted", func(t *testing.T) {
		tagAs(tf.SubnetIDs[0], "aws.subnet.gone")
		tagAs(tf.SecurityGroupID, "aws.security_group.gone")
		srv.ResetCalls()
		p, err := w.planErr(f)
		for _, want := range []string{
			"aws.subnet.gone: no longer in nest.yaml, but " + tf.SubnetIDs[0] + " (Name=tf-public-a) is in " + tf.VpcID + ", not the fleet's VPC " + dn.VpcID + "; nestbot never deletes a resource of another VPC",
			"aws.security_group.gone: no longer in nest.yaml, but " + tf.SecurityGroupID + " (Name=tf-sg) is in " + tf.VpcID,
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		}
		noDestruction(t, srv, p)

		// A plan file that deletes it anyway is refused by the applier.
		live := w.observe(f)
		forged := []reconcile.Step{{Plane: reconcile.PlaneCloud, Action: reconcile.ActionDelete, Address: reconcile.MustParseAddress("aws.subnet.gone"), ID: tf.SubnetIDs[0]}}
		_, err = (&nestaws.Applier{Client: w.cli, Fleet: f, Live: &live.Cloud}).Apply(context.Background(), forged)
		var ae *nestaws.Error
		if !asError(err, &ae) || ae.Address.String() != "aws.subnet.gone" || !strings.Contains(err.Error(), "is in "+tf.VpcID+", not the fleet's VPC "+dn.VpcID) {
			t.Fatalf("apply of a forged delete: %v", err)
		}
		if n := srv.Calls("DeleteSubnet"); n != 0 {
			t.Fatalf("DeleteSubnet called %d times", n)
		}
	})
}
