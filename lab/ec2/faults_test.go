package ec2_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/lab/ec2"
)

func TestWrongSecretIsRejected(t *testing.T) {
	e := setup(t)
	id, _ := e.srv.Credentials()
	for name, opt := range map[string]func(*awsec2.Options){
		"wrong secret": func(o *awsec2.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(id, "not-the-secret", "")
		},
		"unknown key": func(o *awsec2.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider("AKIDSOMEONEELSE", "whatever", "")
		},
		"unsigned": func(o *awsec2.Options) { o.Credentials = aws.AnonymousCredentials{} },
	} {
		t.Run(name, func(t *testing.T) {
			c := e.newClient(t, opt)
			_, err := c.CreateVpc(ctx(t), &awsec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
			ae := wantCode(t, err, "AuthFailure")
			if s := httpStatus(err); s != 401 {
				t.Errorf("HTTP status %d, want 401 (%s)", s, ae.ErrorMessage())
			}
		})
	}
	out, err := e.client.DescribeVpcs(ctx(t), &awsec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Vpcs) != 0 {
		t.Errorf("a rejected CreateVpc created %d vpcs", len(out.Vpcs))
	}
	if got := e.srv.Region(); got != region {
		t.Errorf("Region() = %q, want %q", got, region)
	}
}

// TestConfigHelper: the aws.Config the server hands out reaches it.
func TestConfigHelper(t *testing.T) {
	e := setup(t)
	c := awsec2.NewFromConfig(e.srv.Config("us-east-1"))
	if _, err := c.DescribeVpcs(ctx(t), &awsec2.DescribeVpcsInput{}); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Region(); got != "us-east-1" {
		t.Errorf("Region() = %q, want us-east-1", got)
	}
}

func TestThrottleEverything(t *testing.T) {
	e := setup(t)
	e.srv.SetFaults(ec2.Faults{ThrottleRate: 1})
	_, err := e.client.CreateVpc(ctx(t), &awsec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	wantCode(t, err, "RequestLimitExceeded")
	if s := httpStatus(err); s != 503 {
		t.Errorf("HTTP status %d, want 503", s)
	}
	e.srv.SetFaults(ec2.Faults{InternalErrorRate: 1})
	_, err = e.client.CreateVpc(ctx(t), &awsec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	wantCode(t, err, "InternalError")
	if s := httpStatus(err); s != 500 {
		t.Errorf("HTTP status %d, want 500", s)
	}

	e.srv.SetFaults(ec2.Faults{})
	out, err := e.client.DescribeVpcs(ctx(t), &awsec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Vpcs) != 0 {
		t.Errorf("faulted CreateVpc calls created %d vpcs", len(out.Vpcs))
	}
}

// TestThrottledCallsSucceedWithRetries: with 30% of requests throttled and
// the SDK's standard retryer (backoff shortened so the test does not
// sleep), every call eventually succeeds.
func TestThrottledCallsSucceedWithRetries(t *testing.T) {
	e := setup(t)
	e.srv.SetFaults(ec2.Faults{Seed: 7, ThrottleRate: 0.3})
	c := e.newClient(t, func(o *awsec2.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 10
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		})
	})
	const n = 40
	for i := 0; i < n; i++ {
		if _, err := c.CreateVpc(ctx(t), &awsec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	calls := e.srv.Calls("CreateVpc")
	if calls <= n {
		t.Errorf("%d CreateVpc requests for %d calls: nothing was throttled", calls, n)
	}
	e.srv.SetFaults(ec2.Faults{})
	out, err := e.client.DescribeVpcs(ctx(t), &awsec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Vpcs) != n {
		t.Errorf("%d vpcs, want exactly %d (a throttled request must create nothing)", len(out.Vpcs), n)
	}
}

// TestVisibilityLag: a new instance is invisible to DescribeInstances until
// the lag passes, while its ClientToken still dedupes.
func TestVisibilityLag(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	_, subnetID := network(t, e, "10.20.0.0/16", "10.20.0.0/24")
	img := seedNixOS(t, e)
	e.srv.SetFaults(ec2.Faults{VisibilityLag: 30 * time.Second})
	in := &awsec2.RunInstancesInput{ImageId: aws.String(img), InstanceType: awsec2types.InstanceTypeT3Micro,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(subnetID), ClientToken: aws.String("lag-1")}
	out, err := c.RunInstances(cx, in)
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)

	_, err = c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
	wantCode(t, err, "InvalidInstanceID.NotFound")
	all, err := c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{})
	if err != nil || len(all.Reservations) != 0 {
		t.Fatalf("DescribeInstances during lag = %v, %v; want nothing", all, err)
	}
	retry, err := c.RunInstances(cx, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(retry.Instances[0].InstanceId); got != id {
		t.Errorf("retry during lag created %s, want %s again", got, id)
	}
	if n := len(e.srv.Instances()); n != 1 {
		t.Errorf("%d instances exist, want 1", n)
	}

	e.clock.Advance(29 * time.Second)
	_, err = c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
	wantCode(t, err, "InvalidInstanceID.NotFound")
	e.clock.Advance(time.Second)
	describeOne(t, e, id)
}

// TestLaunchFaults: AMI not found and insufficient capacity fail
// RunInstances without creating anything.
func TestLaunchFaults(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	_, subnetID := network(t, e, "10.20.0.0/16", "10.20.0.0/24")
	img := seedNixOS(t, e)
	run := func(typ awsec2types.InstanceType) error {
		_, err := c.RunInstances(cx, &awsec2.RunInstancesInput{ImageId: aws.String(img), InstanceType: typ,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(subnetID)})
		return err
	}

	e.srv.SetFaults(ec2.Faults{ImageNotFound: []string{img}})
	wantCode(t, run("t3.medium"), "InvalidAMIID.NotFound")
	_, err := c.DescribeImages(cx, &awsec2.DescribeImagesInput{ImageIds: []string{img}})
	wantCode(t, err, "InvalidAMIID.NotFound")

	e.srv.SetFaults(ec2.Faults{InsufficientCapacity: []string{"t3.medium"}})
	err = run("t3.medium")
	wantCode(t, err, "InsufficientInstanceCapacity")
	if s := httpStatus(err); s != 500 {
		t.Errorf("HTTP status %d, want 500", s)
	}
	if n := len(e.srv.Instances()); n != 0 {
		t.Fatalf("%d instances after failed launches, want 0", n)
	}
	if err := run("t3.large"); err != nil {
		t.Fatalf("t3.large has capacity: %v", err)
	}
	if n := len(e.srv.Instances()); n != 1 {
		t.Errorf("%d instances, want 1", n)
	}
}

// TestFaultsScopedToActions: rate faults limited to one action leave the
// others alone.
func TestFaultsScopedToActions(t *testing.T) {
	e := setup(t)
	e.srv.SetFaults(ec2.Faults{ThrottleRate: 1, Actions: []string{"RunInstances"}})
	if _, err := e.client.DescribeVpcs(ctx(t), &awsec2.DescribeVpcsInput{}); err != nil {
		t.Fatalf("DescribeVpcs is not in Faults.Actions: %v", err)
	}
	_, err := e.client.RunInstances(ctx(t), &awsec2.RunInstancesInput{ImageId: aws.String("ami-0123456789abcdef0"),
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	wantCode(t, err, "RequestLimitExceeded")
}
