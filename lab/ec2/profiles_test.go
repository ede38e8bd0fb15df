package ec2_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/lab/ec2"
)

// TestIamInstanceProfileAssociations drives an instance's profile through
// associate, replace and disassociate with the SDK, as Terraform changes
// aws_instance.iam_instance_profile: each answer decodes, DescribeInstances
// and DescribeIamInstanceProfileAssociations follow at once, and the
// misuses fail with EC2's codes.
func TestIamInstanceProfileAssociations(t *testing.T) {
	e := setup(t, func(s *ec2.Server) { s.PendingDelay = -1 })
	cx := ctx(t)
	_, subnet := network(t, e, "10.0.0.0/16", "10.0.1.0/24")
	img := seedNixOS(t, e)
	adminARN := e.srv.SeedInstanceProfile("admin")
	workerARN := e.srv.SeedInstanceProfile("worker")
	run, err := e.client.RunInstances(cx, &awsec2.RunInstancesInput{ImageId: aws.String(img), SubnetId: aws.String(subnet),
		InstanceType: awsec2types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(run.Instances[0].InstanceId)
	profileOf := func() string {
		t.Helper()
		if p := describeOne(t, e, id).IamInstanceProfile; p != nil {
			return aws.ToString(p.Arn)
		}
		return ""
	}
	associations := func() []awsec2types.IamInstanceProfileAssociation {
		t.Helper()
		out, err := e.client.DescribeIamInstanceProfileAssociations(cx, &awsec2.DescribeIamInstanceProfileAssociationsInput{
			Filters: []awsec2types.Filter{filter("instance-id", id)}})
		if err != nil {
			t.Fatal(err)
		}
		return out.IamInstanceProfileAssociations
	}

	assoc, err := e.client.AssociateIamInstanceProfile(cx, &awsec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id),
		IamInstanceProfile: &awsec2types.IamInstanceProfileSpecification{Name: aws.String("admin")}})
	if err != nil {
		t.Fatal(err)
	}
	first := aws.ToString(assoc.IamInstanceProfileAssociation.AssociationId)
	if got := profileOf(); got != adminARN {
		t.Fatalf("after associate: profile %q, want %q", got, adminARN)
	}
	_, err = e.client.AssociateIamInstanceProfile(cx, &awsec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id),
		IamInstanceProfile: &awsec2types.IamInstanceProfileSpecification{Name: aws.String("worker")}})
	wantCode(t, err, "IncorrectState")

	rep, err := e.client.ReplaceIamInstanceProfileAssociation(cx, &awsec2.ReplaceIamInstanceProfileAssociationInput{
		AssociationId: aws.String(first), IamInstanceProfile: &awsec2types.IamInstanceProfileSpecification{Arn: aws.String(workerARN)}})
	if err != nil {
		t.Fatal(err)
	}
	ra := rep.IamInstanceProfileAssociation
	second := aws.ToString(ra.AssociationId)
	if second == first || aws.ToString(ra.InstanceId) != id || aws.ToString(ra.IamInstanceProfile.Arn) != workerARN ||
		ra.State != awsec2types.IamInstanceProfileAssociationStateAssociating {
		t.Fatalf("replace answered %+v", ra)
	}
	if got := profileOf(); got != workerARN {
		t.Fatalf("after replace: profile %q, want %q", got, workerARN)
	}
	if as := associations(); len(as) != 1 || aws.ToString(as[0].AssociationId) != second ||
		as[0].State != awsec2types.IamInstanceProfileAssociationStateAssociated || as[0].Timestamp == nil {
		t.Fatalf("associations after replace: %+v", as)
	}
	// The replaced association is gone.
	_, err = e.client.ReplaceIamInstanceProfileAssociation(cx, &awsec2.ReplaceIamInstanceProfileAssociationInput{
		AssociationId: aws.String(first), IamInstanceProfile: &awsec2types.IamInstanceProfileSpecification{Name: aws.String("admin")}})
	wantCode(t, err, "InvalidAssociationID.NotFound")
	_, err = e.client.ReplaceIamInstanceProfileAssociation(cx, &awsec2.ReplaceIamInstanceProfileAssociationInput{
		AssociationId: aws.String(second), IamInstanceProfile: &awsec2types.IamInstanceProfileSpecification{Name: aws.String("nope")}})
	wantCode(t, err, "InvalidParameterValue")

	dis, err := e.client.DisassociateIamInstanceProfile(cx, &awsec2.DisassociateIamInstanceProfileInput{AssociationId: aws.String(second)})
	if err != nil {
		t.Fatal(err)
	}
	if da := dis.IamInstanceProfileAssociation; aws.ToString(da.AssociationId) != second ||
		da.State != awsec2types.IamInstanceProfileAssociationStateDisassociating || aws.ToString(da.IamInstanceProfile.Arn) != workerARN {
		t.Fatalf("disassociate answered %+v", da)
	}
	if got := profileOf(); got != "" {
		t.Fatalf("after disassociate: profile %q", got)
	}
	if as := associations(); len(as) != 0 {
		t.Fatalf("associations after disassociate: %+v", as)
	}
	_, err = e.client.DisassociateIamInstanceProfile(cx, &awsec2.DisassociateIamInstanceProfileInput{AssociationId: aws.String(second)})
	wantCode(t, err, "InvalidAssociationID.NotFound")
	_, err = e.client.DisassociateIamInstanceProfile(cx, &awsec2.DisassociateIamInstanceProfileInput{AssociationId: aws.String("assoc-1")})
	wantCode(t, err, "InvalidAssociationID.Malformed")
}
