package ec2_test

import (
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/lab/ec2"
)

// network creates a VPC with one public subnet through the SDK.
func network(t *testing.T, e *env, cidr, subnetCIDR string) (vpcID, subnetID string) {
	t.Helper()
	cx := ctx(t)
	v, err := e.client.CreateVpc(cx, &awsec2.CreateVpcInput{CidrBlock: aws.String(cidr)})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := e.client.CreateSubnet(cx, &awsec2.CreateSubnetInput{VpcId: v.Vpc.VpcId, CidrBlock: aws.String(subnetCIDR),
		AvailabilityZone: aws.String(region + "a")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ModifySubnetAttribute(cx, &awsec2.ModifySubnetAttributeInput{SubnetId: sn.Subnet.SubnetId,
		MapPublicIpOnLaunch: &awsec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(v.Vpc.VpcId), aws.ToString(sn.Subnet.SubnetId)
}

func seedNixOS(t *testing.T, e *env) string {
	t.Helper()
	id, err := e.srv.SeedImage(ec2.Image{Name: "NixOS-25.05-updated-kernel-image", OwnerID: "427812963091",
		CreationDate: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func describeOne(t *testing.T, e *env, id string) awsec2types.Instance {
	t.Helper()
	out, err := e.client.DescribeInstances(ctx(t), &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		t.Fatalf("DescribeInstances(%s) = %d reservations", id, len(out.Reservations))
	}
	return out.Reservations[0].Instances[0]
}

func wantState(t *testing.T, e *env, id string, want awsec2types.InstanceStateName) {
	t.Helper()
	if got := describeOne(t, e, id).State.Name; got != want {
		t.Fatalf("instance %s is %s, want %s", id, got, want)
	}
}

// TestDescribeInstancesPagination pages 1,000 instances 100 at a time: the
// SDK paginator must make exactly 10 calls.
func TestDescribeInstancesPagination(t *testing.T) {
	e := setup(t)
	_, subnetID := network(t, e, "10.0.0.0/16", "10.0.0.0/20")
	img := seedNixOS(t, e)
	for i := 0; i < 1000; i++ {
		if _, err := e.srv.SeedInstance(ec2.InstanceSpec{ImageID: img, SubnetID: subnetID}); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.ResetCalls()
	seen := map[string]bool{}
	var order []string
	p := awsec2.NewDescribeInstancesPaginator(e.client, &awsec2.DescribeInstancesInput{MaxResults: aws.Int32(100)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				id := aws.ToString(in.InstanceId)
				if seen[id] {
					t.Fatalf("instance %s returned twice", id)
				}
				seen[id] = true
				order = append(order, id)
			}
		}
	}
	if len(seen) != 1000 {
		t.Errorf("paginated %d instances, want 1000", len(seen))
	}
	if n := e.srv.Calls("DescribeInstances"); n != 10 {
		t.Errorf("DescribeInstances calls = %d, want 10", n)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Fatalf("instances not ordered by id at %d: %s >= %s", i, order[i-1], order[i])
		}
	}
	_, err := e.client.DescribeInstances(ctx(t), &awsec2.DescribeInstancesInput{MaxResults: aws.Int32(10),
		InstanceIds: []string{order[0]}})
	wantCode(t, err, "InvalidParameterCombination")
}

// TestRunInstances launches the DucksNest control plane and checks every
// part of the request made it into the instance and its volume.
func TestRunInstances(t *testing.T) {
	var mu sync.Mutex
	var booted []ec2.Instance
	e := setup(t, func(s *ec2.Server) {
		s.OnRunInstance = func(in ec2.Instance) {
			mu.Lock()
			defer mu.Unlock()
			booted = append(booted, in)
		}
	})
	c, cx := e.client, ctx(t)
	vpcID, subnetID := network(t, e, "10.20.0.0/16", "10.20.0.0/24")
	img := seedNixOS(t, e)
	profileARN := e.srv.SeedInstanceProfile("ducksnest-controlplane")
	if err := e.srv.SeedKeyPair("admin"); err != nil {
		t.Fatal(err)
	}
	sg, err := c.CreateSecurityGroup(cx, &awsec2.CreateSecurityGroupInput{VpcId: &vpcID,
		GroupName: aws.String("ducksnest"), Description: aws.String("egress only")})
	if err != nil {
		t.Fatal(err)
	}
	userData := "#!/bin/sh\ntailscale up --authkey=tskey-lab\n"
	in := &awsec2.RunInstancesInput{
		ImageId: aws.String(img), InstanceType: awsec2types.InstanceTypeT3Medium,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(subnetID),
		SecurityGroupIds:   []string{aws.ToString(sg.GroupId)},
		UserData:           aws.String(base64.StdEncoding.EncodeToString([]byte(userData))),
		IamInstanceProfile: &awsec2types.IamInstanceProfileSpecification{Name: aws.String("ducksnest-controlplane")},
		KeyName:            aws.String("admin"),
		BlockDeviceMappings: []awsec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"),
			Ebs: &awsec2types.EbsBlockDevice{VolumeSize: aws.Int32(20), VolumeType: awsec2types.VolumeTypeGp3, Encrypted: aws.Bool(true)}}},
		TagSpecifications: append(tagSpec("instance", "Name", "ec2-controlplane", "nest:host", "ec2-controlplane"),
			tagSpec("volume", "nest:host", "ec2-controlplane")...),
	}
	out, err := c.RunInstances(cx, in)
	if err != nil {
		t.Fatal(err)
	}
	got := out.Instances[0]
	id := aws.ToString(got.InstanceId)
	if got.State.Name != awsec2types.InstanceStateNamePending {
		t.Errorf("RunInstances state = %s, want pending", got.State.Name)
	}
	if ip := aws.ToString(got.PrivateIpAddress); !strings.HasPrefix(ip, "10.20.0.") {
		t.Errorf("private ip %q not from subnet 10.20.0.0/24", ip)
	}
	if ip := aws.ToString(got.PublicIpAddress); ip != "" {
		t.Errorf("public ip %s while pending (EC2 gives it once the instance runs)", ip)
	}
	if aws.ToString(got.IamInstanceProfile.Arn) != profileARN || aws.ToString(got.KeyName) != "admin" ||
		got.InstanceType != awsec2types.InstanceTypeT3Medium || aws.ToString(got.VpcId) != vpcID {
		t.Errorf("instance = %+v", got)
	}

	mu.Lock()
	if len(booted) != 1 || booted[0].ID != id || string(booted[0].UserData) != userData {
		t.Errorf("OnRunInstance got %+v, want one call for %s with the decoded user data", booted, id)
	}
	mu.Unlock()

	attr, err := c.DescribeInstanceAttribute(cx, &awsec2.DescribeInstanceAttributeInput{InstanceId: &id,
		Attribute: awsec2types.InstanceAttributeNameUserData})
	if err != nil {
		t.Fatal(err)
	}
	if dec, _ := base64.StdEncoding.DecodeString(aws.ToString(attr.UserData.Value)); string(dec) != userData {
		t.Errorf("userData attribute = %q", dec)
	}

	vols, err := c.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{Filters: []awsec2types.Filter{
		filter("attachment.instance-id", id), filter("tag:nest:host", "ec2-controlplane")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(vols.Volumes) != 1 {
		t.Fatalf("DescribeVolumes = %d volumes, want 1", len(vols.Volumes))
	}
	v := vols.Volumes[0]
	if aws.ToInt32(v.Size) != 20 || v.VolumeType != awsec2types.VolumeTypeGp3 || !aws.ToBool(v.Encrypted) ||
		aws.ToString(v.Attachments[0].Device) != "/dev/xvda" {
		t.Errorf("volume = size %d type %s encrypted %v", aws.ToInt32(v.Size), v.VolumeType, aws.ToBool(v.Encrypted))
	}
	mod, err := c.ModifyVolume(cx, &awsec2.ModifyVolumeInput{VolumeId: v.VolumeId, Size: aws.Int32(30)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(mod.VolumeModification.OriginalSize) != 20 || aws.ToInt32(mod.VolumeModification.TargetSize) != 30 {
		t.Errorf("ModifyVolume = %+v", mod.VolumeModification)
	}
	_, err = c.ModifyVolume(cx, &awsec2.ModifyVolumeInput{VolumeId: v.VolumeId, Size: aws.Int32(10)})
	wantCode(t, err, "InvalidParameterValue")

	bad := *in
	bad.ClientToken = aws.String("other")
	bad.IamInstanceProfile = &awsec2types.IamInstanceProfileSpecification{Name: aws.String("nope")}
	_, err = c.RunInstances(cx, &bad)
	ae := wantCode(t, err, "InvalidParameterValue")
	if !strings.Contains(ae.ErrorMessage(), "Invalid IAM Instance Profile name") {
		t.Errorf("message = %q", ae.ErrorMessage())
	}
	bad.IamInstanceProfile, bad.ImageId = nil, aws.String("ami-0123456789abcdef0")
	_, err = c.RunInstances(cx, &bad)
	wantCode(t, err, "InvalidAMIID.NotFound")
	if n := len(e.srv.Instances()); n != 1 {
		t.Errorf("%d instances after failed launches, want 1", n)
	}
}

// TestRunInstancesClientToken retries RunInstances with the same token and
// gets the same instance; changing the arguments under that token fails.
func TestRunInstancesClientToken(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	_, subnetID := network(t, e, "10.20.0.0/16", "10.20.0.0/24")
	img := seedNixOS(t, e)
	in := &awsec2.RunInstancesInput{ImageId: aws.String(img), InstanceType: awsec2types.InstanceTypeT3Micro,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(subnetID),
		ClientToken: aws.String("nest-ec2-controlplane-1")}
	first, err := c.RunInstances(cx, in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.RunInstances(cx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(first.ReservationId) != aws.ToString(again.ReservationId) ||
		aws.ToString(first.Instances[0].InstanceId) != aws.ToString(again.Instances[0].InstanceId) {
		t.Errorf("retry gave %s/%s, want %s/%s", aws.ToString(again.ReservationId), aws.ToString(again.Instances[0].InstanceId),
			aws.ToString(first.ReservationId), aws.ToString(first.Instances[0].InstanceId))
	}
	all, err := c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Reservations) != 1 || len(all.Reservations[0].Instances) != 1 {
		t.Errorf("DescribeInstances = %d reservations, want 1 with 1 instance", len(all.Reservations))
	}
	changed := *in
	changed.InstanceType = awsec2types.InstanceTypeT3Large
	_, err = c.RunInstances(cx, &changed)
	wantCode(t, err, "IdempotentParameterMismatch")
}

// TestInstanceLifecycle drives pending → running → stopping → stopped →
// pending → running → shutting-down → terminated → gone on the fake clock.
func TestInstanceLifecycle(t *testing.T) {
	e := setup(t, func(s *ec2.Server) {
		s.PendingDelay, s.StoppingDelay, s.ShuttingDownDelay = 10*time.Second, 20*time.Second, 30*time.Second
		s.TerminatedRetention = time.Hour
	})
	c, cx := e.client, ctx(t)
	_, subnetID := network(t, e, "10.20.0.0/16", "10.20.0.0/24")
	img := seedNixOS(t, e)
	out, err := c.RunInstances(cx, &awsec2.RunInstancesInput{ImageId: aws.String(img), InstanceType: awsec2types.InstanceTypeT3Medium,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(subnetID)})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	ids := []string{id}

	wantState(t, e, id, "pending")
	e.clock.Advance(9 * time.Second)
	wantState(t, e, id, "pending")
	e.clock.Advance(time.Second)
	wantState(t, e, id, "running")

	resize := &awsec2.ModifyInstanceAttributeInput{InstanceId: &id,
		InstanceType: &awsec2types.AttributeValue{Value: aws.String("t3.large")}}
	_, err = c.ModifyInstanceAttribute(cx, resize)
	wantCode(t, err, "IncorrectInstanceState")

	stop, err := c.StopInstances(cx, &awsec2.StopInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	if sc := stop.StoppingInstances[0]; sc.PreviousState.Name != "running" || sc.CurrentState.Name != "stopping" {
		t.Errorf("StopInstances change = %s -> %s", sc.PreviousState.Name, sc.CurrentState.Name)
	}
	if aws.ToString(describeOne(t, e, id).PublicIpAddress) != "" {
		t.Errorf("a stopping instance keeps no public ip")
	}
	_, err = c.ModifyInstanceAttribute(cx, resize)
	wantCode(t, err, "IncorrectInstanceState")
	e.clock.Advance(20 * time.Second)
	wantState(t, e, id, "stopped")
	if _, err := c.ModifyInstanceAttribute(cx, resize); err != nil {
		t.Fatalf("ModifyInstanceAttribute on a stopped instance: %v", err)
	}
	attr, err := c.DescribeInstanceAttribute(cx, &awsec2.DescribeInstanceAttributeInput{InstanceId: &id,
		Attribute: awsec2types.InstanceAttributeNameInstanceType})
	if err != nil || aws.ToString(attr.InstanceType.Value) != "t3.large" {
		t.Fatalf("instanceType attribute = %v, %v; want t3.large", attr, err)
	}

	if _, err := c.StartInstances(cx, &awsec2.StartInstancesInput{InstanceIds: ids}); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, id, "pending")
	e.clock.Advance(10 * time.Second)
	running := describeOne(t, e, id)
	if running.State.Name != "running" || running.InstanceType != "t3.large" || aws.ToString(running.PublicIpAddress) == "" {
		t.Errorf("after start: %s %s public %q", running.State.Name, running.InstanceType, aws.ToString(running.PublicIpAddress))
	}

	if _, err := c.TerminateInstances(cx, &awsec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		t.Fatal(err)
	}
	wantState(t, e, id, "shutting-down")
	_, err = c.StartInstances(cx, &awsec2.StartInstancesInput{InstanceIds: ids})
	wantCode(t, err, "IncorrectInstanceState")
	e.clock.Advance(30 * time.Second)
	wantState(t, e, id, "terminated")
	vols, err := c.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{})
	if err != nil || len(vols.Volumes) != 0 {
		t.Errorf("root volume should be deleted on termination: %v, %v", vols, err)
	}
	e.clock.Advance(time.Hour)
	_, err = c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{InstanceIds: ids})
	wantCode(t, err, "InvalidInstanceID.NotFound")
}

// TestDescribeImages filters seeded images by owner, name wildcard and state.
func TestDescribeImages(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	seed := func(img ec2.Image) string {
		id, err := e.srv.SeedImage(img)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	nixos := "427812963091"
	newest := seed(ec2.Image{Name: "NixOS-25.05-updated-kernel-image", OwnerID: nixos, CreationDate: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)})
	older := seed(ec2.Image{Name: "NixOS-24.11-updated-kernel-image", OwnerID: nixos, CreationDate: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)})
	seed(ec2.Image{Name: "NixOS-25.05-impostor", OwnerID: "999999999999"})
	seed(ec2.Image{Name: "NixOS-23.05-deprecated", OwnerID: nixos, State: "deregistered"})
	mine := seed(ec2.Image{Name: "custom"})
	seed(ec2.Image{Name: "al2023-ami", OwnerID: "137112412989", OwnerAlias: "amazon"})

	names := func(in *awsec2.DescribeImagesInput) map[string]string {
		t.Helper()
		out, err := c.DescribeImages(cx, in)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, img := range out.Images {
			m[aws.ToString(img.ImageId)] = aws.ToString(img.Name)
		}
		return m
	}
	got := names(&awsec2.DescribeImagesInput{Owners: []string{nixos},
		Filters: []awsec2types.Filter{filter("name", "NixOS-25.05-*"), filter("state", "available")}})
	if len(got) != 1 || got[newest] == "" {
		t.Errorf("NixOS 25.05 by owner = %v, want only %s", got, newest)
	}
	got = names(&awsec2.DescribeImagesInput{Owners: []string{nixos}, Filters: []awsec2types.Filter{filter("name", "NixOS-*-updated-kernel-image")}})
	if len(got) != 2 || got[older] == "" {
		t.Errorf("all NixOS by owner = %v, want 2", got)
	}
	if got = names(&awsec2.DescribeImagesInput{Owners: []string{"self"}}); len(got) != 1 || got[mine] == "" {
		t.Errorf("Owner=self = %v, want only %s", got, mine)
	}
	if got = names(&awsec2.DescribeImagesInput{Owners: []string{"amazon"}}); len(got) != 1 {
		t.Errorf("Owner=amazon = %v, want 1", got)
	}
	if got = names(&awsec2.DescribeImagesInput{Filters: []awsec2types.Filter{filter("owner-id", nixos), filter("state", "deregistered")}}); len(got) != 1 {
		t.Errorf("deregistered = %v, want 1", got)
	}
	out, err := c.DescribeImages(cx, &awsec2.DescribeImagesInput{ImageIds: []string{newest}})
	if err != nil {
		t.Fatal(err)
	}
	if img := out.Images[0]; aws.ToString(img.CreationDate) != "2026-10-01T00:00:00.000Z" || aws.ToString(img.OwnerId) != nixos {
		t.Errorf("image = created %s owner %s", aws.ToString(img.CreationDate), aws.ToString(img.OwnerId))
	}
	_, err = c.DescribeImages(cx, &awsec2.DescribeImagesInput{ImageIds: []string{newest, "ami-0000000000000dead"}})
	wantCode(t, err, "InvalidAMIID.NotFound")
}

// TestDeterministicIDs: the same seed and calls give the same ids.
func TestDeterministicIDs(t *testing.T) {
	ids := func() []string {
		e := setup(t, func(s *ec2.Server) { s.Seed = 42 })
		f, err := e.srv.SeedFleet(ec2.DucksNestFleet())
		if err != nil {
			t.Fatal(err)
		}
		v, err := e.client.CreateVpc(ctx(t), &awsec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
		if err != nil {
			t.Fatal(err)
		}
		return append([]string{f.VpcID, f.SecurityGroupID, f.InstanceIDs[0], aws.ToString(v.Vpc.VpcId)}, f.SubnetIDs...)
	}
	a, b := ids(), ids()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("ids differ between runs with the same seed:\n%v\n%v", a, b)
	}
}

// TestConcurrentRunInstancesSameToken: parallel retries of one launch create
// one instance.
func TestConcurrentRunInstancesSameToken(t *testing.T) {
	e := setup(t)
	_, subnetID := network(t, e, "10.20.0.0/16", "10.20.0.0/24")
	img := seedNixOS(t, e)
	in := &awsec2.RunInstancesInput{ImageId: aws.String(img), InstanceType: awsec2types.InstanceTypeT3Micro,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: aws.String(subnetID), ClientToken: aws.String("parallel")}
	const n = 8
	cx := ctx(t)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := e.client.RunInstances(cx, in)
			if errs[i] = err; err == nil {
				ids[i] = aws.ToString(out.Instances[0].InstanceId)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("call %d got %s, call 0 got %s", i, ids[i], ids[0])
		}
	}
	if got := len(e.srv.Instances()); got != 1 {
		t.Errorf("%d instances, want 1", got)
	}
	if got := e.srv.Calls("RunInstances"); got != n {
		t.Errorf("Calls(RunInstances) = %d, want %d", got, n)
	}
}
