package ec2_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/lab/ec2"
)

// TestNetworkLifecycle builds the DucksNest network through the SDK,
// describes it back with tag filters, and tears it down.
func TestNetworkLifecycle(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)

	vpcOut, err := c.CreateVpc(cx, &awsec2.CreateVpcInput{CidrBlock: aws.String("10.20.0.0/16"),
		TagSpecifications: tagSpec("vpc", "Name", "ducksnest", "nest:managed", "true")})
	if err != nil {
		t.Fatal(err)
	}
	vpcID := aws.ToString(vpcOut.Vpc.VpcId)
	if len(vpcID) != len("vpc-")+17 {
		t.Errorf("vpc id %q is not in AWS shape", vpcID)
	}
	if _, err := c.ModifyVpcAttribute(cx, &awsec2.ModifyVpcAttributeInput{VpcId: &vpcID,
		EnableDnsHostnames: &awsec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	attr, err := c.DescribeVpcAttribute(cx, &awsec2.DescribeVpcAttributeInput{VpcId: &vpcID,
		Attribute: awsec2types.VpcAttributeNameEnableDnsHostnames})
	if err != nil || !aws.ToBool(attr.EnableDnsHostnames.Value) {
		t.Fatalf("DescribeVpcAttribute = %+v, %v; want enableDnsHostnames true", attr, err)
	}

	// Another VPC without our tags, which tag filters must leave out.
	if _, err := c.CreateVpc(cx, &awsec2.CreateVpcInput{CidrBlock: aws.String("10.99.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []awsec2types.Filter{
		filter("tag:nest:managed", "true"),
		filter("tag:Name", "duck*"),
		filter("tag-key", "nest:managed"),
		filter("cidr", "10.20.0.0/16"),
	} {
		got, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{Filters: []awsec2types.Filter{f}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Vpcs) != 1 || aws.ToString(got.Vpcs[0].VpcId) != vpcID {
			t.Errorf("DescribeVpcs(%s=%v) = %d vpcs, want only %s", *f.Name, f.Values, len(got.Vpcs), vpcID)
		}
	}

	var subnetIDs []string
	for _, sn := range []struct{ cidr, az, name string }{
		{"10.20.0.0/24", "ap-northeast-2a", "public-a"},
		{"10.20.1.0/24", "ap-northeast-2c", "public-c"},
	} {
		out, err := c.CreateSubnet(cx, &awsec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String(sn.cidr),
			AvailabilityZone: aws.String(sn.az), TagSpecifications: tagSpec("subnet", "Name", sn.name)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.Subnet.SubnetId)
		subnetIDs = append(subnetIDs, id)
		if _, err := c.ModifySubnetAttribute(cx, &awsec2.ModifySubnetAttributeInput{SubnetId: &id,
			MapPublicIpOnLaunch: &awsec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.CreateSubnet(cx, &awsec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.20.0.128/25")})
	wantCode(t, err, "InvalidSubnet.Conflict")
	_, err = c.CreateSubnet(cx, &awsec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.30.0.0/24")})
	wantCode(t, err, "InvalidSubnet.Range")

	subnets, err := c.DescribeSubnets(cx, &awsec2.DescribeSubnetsInput{Filters: []awsec2types.Filter{
		filter("vpc-id", vpcID), filter("tag:Name", "public-*")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(subnets.Subnets) != 2 {
		t.Fatalf("DescribeSubnets = %d subnets, want 2", len(subnets.Subnets))
	}
	for _, sn := range subnets.Subnets {
		if !aws.ToBool(sn.MapPublicIpOnLaunch) || aws.ToInt32(sn.AvailableIpAddressCount) != 251 {
			t.Errorf("subnet %s: mapPublicIp=%v free=%d, want true and 251", *sn.SubnetId,
				aws.ToBool(sn.MapPublicIpOnLaunch), aws.ToInt32(sn.AvailableIpAddressCount))
		}
	}

	igwOut, err := c.CreateInternetGateway(cx, &awsec2.CreateInternetGatewayInput{
		TagSpecifications: tagSpec("internet-gateway", "Name", "ducksnest")})
	if err != nil {
		t.Fatal(err)
	}
	igwID := aws.ToString(igwOut.InternetGateway.InternetGatewayId)
	if _, err := c.AttachInternetGateway(cx, &awsec2.AttachInternetGatewayInput{InternetGatewayId: &igwID, VpcId: &vpcID}); err != nil {
		t.Fatal(err)
	}
	_, err = c.AttachInternetGateway(cx, &awsec2.AttachInternetGatewayInput{InternetGatewayId: &igwID, VpcId: &vpcID})
	wantCode(t, err, "Resource.AlreadyAssociated")
	igws, err := c.DescribeInternetGateways(cx, &awsec2.DescribeInternetGatewaysInput{
		Filters: []awsec2types.Filter{filter("attachment.vpc-id", vpcID)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(igws.InternetGateways) != 1 || aws.ToString(igws.InternetGateways[0].Attachments[0].VpcId) != vpcID {
		t.Fatalf("DescribeInternetGateways(attachment.vpc-id) = %+v", igws.InternetGateways)
	}

	rtOut, err := c.CreateRouteTable(cx, &awsec2.CreateRouteTableInput{VpcId: &vpcID,
		TagSpecifications: tagSpec("route-table", "Name", "ducksnest-public")})
	if err != nil {
		t.Fatal(err)
	}
	rtID := aws.ToString(rtOut.RouteTable.RouteTableId)
	if _, err := c.CreateRoute(cx, &awsec2.CreateRouteInput{RouteTableId: &rtID,
		DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: &igwID}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateRoute(cx, &awsec2.CreateRouteInput{RouteTableId: &rtID,
		DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: &igwID})
	wantCode(t, err, "RouteAlreadyExists")
	var assocIDs []string
	for _, sn := range subnetIDs {
		out, err := c.AssociateRouteTable(cx, &awsec2.AssociateRouteTableInput{RouteTableId: &rtID, SubnetId: aws.String(sn)})
		if err != nil {
			t.Fatal(err)
		}
		assocIDs = append(assocIDs, aws.ToString(out.AssociationId))
	}
	rts, err := c.DescribeRouteTables(cx, &awsec2.DescribeRouteTablesInput{Filters: []awsec2types.Filter{
		filter("association.subnet-id", subnetIDs[1])}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rts.RouteTables) != 1 || aws.ToString(rts.RouteTables[0].RouteTableId) != rtID {
		t.Fatalf("DescribeRouteTables(association.subnet-id) = %d tables, want %s", len(rts.RouteTables), rtID)
	}
	routes := map[string]string{}
	for _, r := range rts.RouteTables[0].Routes {
		routes[aws.ToString(r.DestinationCidrBlock)] = aws.ToString(r.GatewayId) + "/" + string(r.State)
	}
	if routes["10.20.0.0/16"] != "local/active" || routes["0.0.0.0/0"] != igwID+"/active" {
		t.Errorf("routes = %v", routes)
	}
	main, err := c.DescribeRouteTables(cx, &awsec2.DescribeRouteTablesInput{Filters: []awsec2types.Filter{
		filter("vpc-id", vpcID), filter("association.main", "true")}})
	if err != nil || len(main.RouteTables) != 1 {
		t.Fatalf("main route table: %v, %v", main, err)
	}

	sgOut, err := c.CreateSecurityGroup(cx, &awsec2.CreateSecurityGroupInput{VpcId: &vpcID,
		GroupName: aws.String("ducksnest"), Description: aws.String("egress only"),
		TagSpecifications: tagSpec("security-group", "Name", "ducksnest")})
	if err != nil {
		t.Fatal(err)
	}
	sgID := aws.ToString(sgOut.GroupId)
	_, err = c.CreateSecurityGroup(cx, &awsec2.CreateSecurityGroupInput{VpcId: &vpcID,
		GroupName: aws.String("ducksnest"), Description: aws.String("again")})
	wantCode(t, err, "InvalidGroup.Duplicate")
	ssh := []awsec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
		IpRanges: []awsec2types.IpRange{{CidrIp: aws.String("10.0.0.0/8"), Description: aws.String("ssh")}}}}
	auth, err := c.AuthorizeSecurityGroupIngress(cx, &awsec2.AuthorizeSecurityGroupIngressInput{GroupId: &sgID, IpPermissions: ssh})
	if err != nil {
		t.Fatal(err)
	}
	if len(auth.SecurityGroupRules) != 1 || aws.ToString(auth.SecurityGroupRules[0].CidrIpv4) != "10.0.0.0/8" {
		t.Errorf("AuthorizeSecurityGroupIngress rules = %+v", auth.SecurityGroupRules)
	}
	_, err = c.AuthorizeSecurityGroupIngress(cx, &awsec2.AuthorizeSecurityGroupIngressInput{GroupId: &sgID, IpPermissions: ssh})
	wantCode(t, err, "InvalidPermission.Duplicate")

	sgs, err := c.DescribeSecurityGroups(cx, &awsec2.DescribeSecurityGroupsInput{Filters: []awsec2types.Filter{
		filter("vpc-id", vpcID), filter("group-name", "ducksnest")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sgs.SecurityGroups) != 1 {
		t.Fatalf("DescribeSecurityGroups = %d groups, want 1", len(sgs.SecurityGroups))
	}
	g := sgs.SecurityGroups[0]
	if len(g.IpPermissions) != 1 || aws.ToInt32(g.IpPermissions[0].FromPort) != 22 ||
		aws.ToString(g.IpPermissions[0].IpRanges[0].CidrIp) != "10.0.0.0/8" {
		t.Errorf("ingress = %+v", g.IpPermissions)
	}
	if len(g.IpPermissionsEgress) != 1 || aws.ToString(g.IpPermissionsEgress[0].IpProtocol) != "-1" ||
		aws.ToString(g.IpPermissionsEgress[0].IpRanges[0].CidrIp) != "0.0.0.0/0" {
		t.Errorf("egress = %+v, want the default allow-all rule", g.IpPermissionsEgress)
	}
	if _, err := c.RevokeSecurityGroupIngress(cx, &awsec2.RevokeSecurityGroupIngressInput{GroupId: &sgID, IpPermissions: ssh}); err != nil {
		t.Fatal(err)
	}
	_, err = c.RevokeSecurityGroupIngress(cx, &awsec2.RevokeSecurityGroupIngressInput{GroupId: &sgID, IpPermissions: ssh})
	wantCode(t, err, "InvalidPermission.NotFound")
	if _, err := c.RevokeSecurityGroupEgress(cx, &awsec2.RevokeSecurityGroupEgressInput{GroupId: &sgID,
		IpPermissions: g.IpPermissionsEgress}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthorizeSecurityGroupEgress(cx, &awsec2.AuthorizeSecurityGroupEgressInput{GroupId: &sgID,
		IpPermissions: g.IpPermissionsEgress}); err != nil {
		t.Fatal(err)
	}

	// Teardown: the VPC refuses to go while anything depends on it.
	_, err = c.DeleteVpc(cx, &awsec2.DeleteVpcInput{VpcId: &vpcID})
	wantCode(t, err, "DependencyViolation")
	_, err = c.DeleteInternetGateway(cx, &awsec2.DeleteInternetGatewayInput{InternetGatewayId: &igwID})
	wantCode(t, err, "DependencyViolation")
	_, err = c.DeleteRouteTable(cx, &awsec2.DeleteRouteTableInput{RouteTableId: &rtID})
	wantCode(t, err, "DependencyViolation")
	for _, a := range assocIDs {
		if _, err := c.DisassociateRouteTable(cx, &awsec2.DisassociateRouteTableInput{AssociationId: aws.String(a)}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []func() error{
		func() error {
			_, err := c.DeleteRoute(cx, &awsec2.DeleteRouteInput{RouteTableId: &rtID, DestinationCidrBlock: aws.String("0.0.0.0/0")})
			return err
		},
		func() error {
			_, err := c.DeleteRouteTable(cx, &awsec2.DeleteRouteTableInput{RouteTableId: &rtID})
			return err
		},
		func() error {
			_, err := c.DetachInternetGateway(cx, &awsec2.DetachInternetGatewayInput{InternetGatewayId: &igwID, VpcId: &vpcID})
			return err
		},
		func() error {
			_, err := c.DeleteInternetGateway(cx, &awsec2.DeleteInternetGatewayInput{InternetGatewayId: &igwID})
			return err
		},
		func() error {
			_, err := c.DeleteSecurityGroup(cx, &awsec2.DeleteSecurityGroupInput{GroupId: &sgID})
			return err
		},
		func() error {
			_, err := c.DeleteSubnet(cx, &awsec2.DeleteSubnetInput{SubnetId: &subnetIDs[0]})
			return err
		},
		func() error {
			_, err := c.DeleteSubnet(cx, &awsec2.DeleteSubnetInput{SubnetId: &subnetIDs[1]})
			return err
		},
		func() error { _, err := c.DeleteVpc(cx, &awsec2.DeleteVpcInput{VpcId: &vpcID}); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("teardown step %d: %v", i, err)
		}
	}
	left, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{Filters: []awsec2types.Filter{filter("vpc-id", vpcID)}})
	if err != nil || len(left.Vpcs) != 0 {
		t.Fatalf("after DeleteVpc: %v, %v", left, err)
	}
	// The main route table and default security group went with the VPC.
	rest, err := c.DescribeSecurityGroups(cx, &awsec2.DescribeSecurityGroupsInput{Filters: []awsec2types.Filter{filter("vpc-id", vpcID)}})
	if err != nil || len(rest.SecurityGroups) != 0 {
		t.Fatalf("security groups left in deleted vpc: %v, %v", rest, err)
	}
}

// TestAdoptUntaggedFleet finds a Terraform-built fleet by Name tag and tags
// it, as adoption does.
func TestAdoptUntaggedFleet(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	fleet, err := e.srv.SeedFleet(ec2.DucksNestFleet())
	if err != nil {
		t.Fatal(err)
	}

	managed, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{Filters: []awsec2types.Filter{filter("tag-key", "nest:managed")}})
	if err != nil || len(managed.Vpcs) != 0 {
		t.Fatalf("seeded fleet should carry no nest tags: %v, %v", managed, err)
	}
	byName, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{Filters: []awsec2types.Filter{filter("tag:Name", "ducksnest-vpc")}})
	if err != nil || len(byName.Vpcs) != 1 || aws.ToString(byName.Vpcs[0].VpcId) != fleet.VpcID {
		t.Fatalf("DescribeVpcs(tag:Name=ducksnest-vpc) = %v, %v", byName, err)
	}
	inst, err := c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{Filters: []awsec2types.Filter{
		filter("tag:Name", "ec2-controlplane"), filter("instance-state-name", "running")}})
	if err != nil || len(inst.Reservations) != 1 {
		t.Fatalf("DescribeInstances(tag:Name) = %v, %v", inst, err)
	}
	in := inst.Reservations[0].Instances[0]
	if in.InstanceType != "t3.medium" || aws.ToString(in.SubnetId) != fleet.SubnetIDs[0] ||
		aws.ToString(in.IamInstanceProfile.Arn) != fleet.InstanceProfileARN || aws.ToString(in.PublicIpAddress) == "" {
		t.Errorf("instance = type %s subnet %s profile %s public %q", in.InstanceType, aws.ToString(in.SubnetId),
			aws.ToString(in.IamInstanceProfile.Arn), aws.ToString(in.PublicIpAddress))
	}
	vols, err := c.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{Filters: []awsec2types.Filter{
		filter("attachment.instance-id", aws.ToString(in.InstanceId))}})
	if err != nil || len(vols.Volumes) != 1 {
		t.Fatalf("DescribeVolumes = %v, %v", vols, err)
	}
	if v := vols.Volumes[0]; aws.ToInt32(v.Size) != 20 || v.VolumeType != "gp3" || !aws.ToBool(v.Encrypted) {
		t.Errorf("root volume = %d %s encrypted=%v, want 20 gp3 true", aws.ToInt32(v.Size), v.VolumeType, aws.ToBool(v.Encrypted))
	}

	ids := []string{fleet.VpcID, fleet.InternetGatewayID, fleet.RouteTableID, fleet.SecurityGroupID, fleet.InstanceIDs[0]}
	ids = append(ids, fleet.SubnetIDs...)
	if _, err := c.CreateTags(cx, &awsec2.CreateTagsInput{Resources: ids,
		Tags: []awsec2types.Tag{{Key: aws.String("nest:managed"), Value: aws.String("true")}}}); err != nil {
		t.Fatal(err)
	}
	for _, check := range []func() (int, error){
		func() (int, error) {
			o, err := c.DescribeSubnets(cx, &awsec2.DescribeSubnetsInput{Filters: []awsec2types.Filter{filter("tag:nest:managed", "true")}})
			return len(o.Subnets), err
		},
		func() (int, error) {
			o, err := c.DescribeRouteTables(cx, &awsec2.DescribeRouteTablesInput{Filters: []awsec2types.Filter{filter("tag:nest:managed", "true")}})
			return len(o.RouteTables), err
		},
	} {
		if n, err := check(); err != nil || n == 0 {
			t.Errorf("after CreateTags: %d tagged, %v", n, err)
		}
	}
	_, err = c.CreateTags(cx, &awsec2.CreateTagsInput{Resources: []string{"vpc-0123456789abcdef0"},
		Tags: []awsec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	wantCode(t, err, "InvalidVpcID.NotFound")
	if _, err := c.DeleteTags(cx, &awsec2.DeleteTagsInput{Resources: []string{fleet.VpcID},
		Tags: []awsec2types.Tag{{Key: aws.String("nest:managed")}}}); err != nil {
		t.Fatal(err)
	}
	after, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{VpcIds: []string{fleet.VpcID}})
	if err != nil {
		t.Fatal(err)
	}
	if tags := after.Vpcs[0].Tags; len(tags) != 1 || aws.ToString(tags[0].Key) != "Name" {
		t.Errorf("tags after DeleteTags = %+v, want only Name", tags)
	}
}

// TestDescribeUnknownIDs checks each Describe's NotFound code for an id
// that is well-formed but unknown, and the Malformed code for one that is not.
func TestDescribeUnknownIDs(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	const hex17 = "0123456789abcdef0"
	cases := []struct {
		name, code string
		call       func() error
	}{
		{"vpc", "InvalidVpcID.NotFound", func() error {
			_, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{VpcIds: []string{"vpc-" + hex17}})
			return err
		}},
		{"subnet", "InvalidSubnetID.NotFound", func() error {
			_, err := c.DescribeSubnets(cx, &awsec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-" + hex17}})
			return err
		}},
		{"igw", "InvalidInternetGatewayID.NotFound", func() error {
			_, err := c.DescribeInternetGateways(cx, &awsec2.DescribeInternetGatewaysInput{InternetGatewayIds: []string{"igw-" + hex17}})
			return err
		}},
		{"route table", "InvalidRouteTableID.NotFound", func() error {
			_, err := c.DescribeRouteTables(cx, &awsec2.DescribeRouteTablesInput{RouteTableIds: []string{"rtb-" + hex17}})
			return err
		}},
		{"security group", "InvalidGroup.NotFound", func() error {
			_, err := c.DescribeSecurityGroups(cx, &awsec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-" + hex17}})
			return err
		}},
		{"instance", "InvalidInstanceID.NotFound", func() error {
			_, err := c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{InstanceIds: []string{"i-" + hex17}})
			return err
		}},
		{"volume", "InvalidVolume.NotFound", func() error {
			_, err := c.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{VolumeIds: []string{"vol-" + hex17}})
			return err
		}},
		{"image", "InvalidAMIID.NotFound", func() error {
			_, err := c.DescribeImages(cx, &awsec2.DescribeImagesInput{ImageIds: []string{"ami-" + hex17}})
			return err
		}},
		{"malformed instance", "InvalidInstanceID.Malformed", func() error {
			_, err := c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{InstanceIds: []string{"i-nope"}})
			return err
		}},
		{"stop unknown instance", "InvalidInstanceID.NotFound", func() error {
			_, err := c.StopInstances(cx, &awsec2.StopInstancesInput{InstanceIds: []string{"i-" + hex17}})
			return err
		}},
		{"unknown filter", "InvalidParameterValue", func() error {
			_, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{Filters: []awsec2types.Filter{filter("no-such-filter", "x")}})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code) })
	}
}

// TestDescribePaginationVpcsAndGroups pages VPCs and their default security
// groups with the SDK paginators.
func TestDescribePaginationVpcsAndGroups(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	for i := 0; i < 12; i++ {
		if _, err := c.CreateVpc(cx, &awsec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")}); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.ResetCalls()
	seen := map[string]bool{}
	p := awsec2.NewDescribeVpcsPaginator(c, &awsec2.DescribeVpcsInput{MaxResults: aws.Int32(5)})
	for p.HasMorePages() {
		page, err := p.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Vpcs {
			seen[aws.ToString(v.VpcId)] = true
		}
	}
	if len(seen) != 12 || e.srv.Calls("DescribeVpcs") != 3 {
		t.Errorf("paged %d vpcs in %d calls, want 12 in 3", len(seen), e.srv.Calls("DescribeVpcs"))
	}

	groups := map[string]bool{}
	gp := awsec2.NewDescribeSecurityGroupsPaginator(c, &awsec2.DescribeSecurityGroupsInput{MaxResults: aws.Int32(5),
		Filters: []awsec2types.Filter{filter("group-name", "default")}})
	for gp.HasMorePages() {
		page, err := gp.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.SecurityGroups {
			groups[aws.ToString(g.GroupId)] = true
		}
	}
	if len(groups) != 12 || e.srv.Calls("DescribeSecurityGroups") != 3 {
		t.Errorf("paged %d default groups in %d calls, want 12 in 3", len(groups), e.srv.Calls("DescribeSecurityGroups"))
	}
	_, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{MaxResults: aws.Int32(5), NextToken: aws.String("garbage")})
	wantCode(t, err, "InvalidPaginationToken")
}
