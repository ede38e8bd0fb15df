package ec2_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// TestUnknownIDAnswers pins what the lab answers, code and message, for an
// id that names nothing and one that is not an id, wherever an action
// looks a resource up: the Describe actions (one id, two ids), the actions
// that take one resource, and CreateTags. Every kind of resource answers
// alike wherever it is asked for.
func TestUnknownIDAnswers(t *testing.T) {
	e := setup(t)
	c, cx := e.client, ctx(t)
	const (
		hex17 = "0123456789abcdef0"
		other = "00000000000000000"
	)
	tagIt := func(id string) error {
		_, err := c.CreateTags(cx, &awsec2.CreateTagsInput{Resources: []string{id}, Tags: []awsec2types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
		return err
	}
	cases := []struct {
		name, code, message string
		call                func() error
	}{
		{"DescribeVpcs", "InvalidVpcID.NotFound", "The vpc ID 'vpc-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{VpcIds: []string{"vpc-" + hex17}})
			return err
		}},
		{"DescribeVpcs two", "InvalidVpcID.NotFound", "The vpc IDs 'vpc-" + hex17 + ", vpc-" + other + "' do not exist", func() error {
			_, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{VpcIds: []string{"vpc-" + hex17, "vpc-" + other}})
			return err
		}},
		{"DescribeVpcs malformed", "InvalidVpcID.Malformed", `Invalid id: "vpc-x" (expecting "vpc-...")`, func() error {
			_, err := c.DescribeVpcs(cx, &awsec2.DescribeVpcsInput{VpcIds: []string{"vpc-" + hex17, "vpc-x"}})
			return err
		}},
		{"DeleteVpc", "InvalidVpcID.NotFound", "The vpc ID 'vpc-" + hex17 + "' does not exist", func() error {
			_, err := c.DeleteVpc(cx, &awsec2.DeleteVpcInput{VpcId: aws.String("vpc-" + hex17)})
			return err
		}},
		{"DeleteVpc malformed", "InvalidVpcID.Malformed", `Invalid id: "nope" (expecting "vpc-...")`, func() error {
			_, err := c.DeleteVpc(cx, &awsec2.DeleteVpcInput{VpcId: aws.String("nope")})
			return err
		}},
		{"CreateTags vpc", "InvalidVpcID.NotFound", "The vpc ID 'vpc-" + hex17 + "' does not exist", func() error {
			return tagIt("vpc-" + hex17)
		}},

		{"DescribeSubnets", "InvalidSubnetID.NotFound", "The subnet ID 'subnet-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeSubnets(cx, &awsec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-" + hex17}})
			return err
		}},
		{"DeleteSubnet", "InvalidSubnetID.NotFound", "The subnet ID 'subnet-" + hex17 + "' does not exist", func() error {
			_, err := c.DeleteSubnet(cx, &awsec2.DeleteSubnetInput{SubnetId: aws.String("subnet-" + hex17)})
			return err
		}},
		{"DeleteSubnet malformed", "InvalidSubnetID.Malformed", `Invalid id: "subnet-1" (expecting "subnet-...")`, func() error {
			_, err := c.DeleteSubnet(cx, &awsec2.DeleteSubnetInput{SubnetId: aws.String("subnet-1")})
			return err
		}},
		{"CreateTags subnet", "InvalidSubnetID.NotFound", "The subnet ID 'subnet-" + hex17 + "' does not exist", func() error {
			return tagIt("subnet-" + hex17)
		}},

		{"DescribeInternetGateways", "InvalidInternetGatewayID.NotFound", "The internetGateway ID 'igw-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeInternetGateways(cx, &awsec2.DescribeInternetGatewaysInput{InternetGatewayIds: []string{"igw-" + hex17}})
			return err
		}},
		{"DeleteInternetGateway", "InvalidInternetGatewayID.NotFound", "The internetGateway ID 'igw-" + hex17 + "' does not exist", func() error {
			_, err := c.DeleteInternetGateway(cx, &awsec2.DeleteInternetGatewayInput{InternetGatewayId: aws.String("igw-" + hex17)})
			return err
		}},
		{"DeleteInternetGateway malformed", "InvalidInternetGatewayID.Malformed", `Invalid id: "igw-zz" (expecting "igw-...")`, func() error {
			_, err := c.DeleteInternetGateway(cx, &awsec2.DeleteInternetGatewayInput{InternetGatewayId: aws.String("igw-zz")})
			return err
		}},
		{"CreateTags igw", "InvalidInternetGatewayID.NotFound", "The internetGateway ID 'igw-" + hex17 + "' does not exist", func() error {
			return tagIt("igw-" + hex17)
		}},

		{"DescribeRouteTables", "InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeRouteTables(cx, &awsec2.DescribeRouteTablesInput{RouteTableIds: []string{"rtb-" + hex17}})
			return err
		}},
		{"DeleteRouteTable", "InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-" + hex17 + "' does not exist", func() error {
			_, err := c.DeleteRouteTable(cx, &awsec2.DeleteRouteTableInput{RouteTableId: aws.String("rtb-" + hex17)})
			return err
		}},
		{"DeleteRouteTable malformed", "InvalidRouteTableID.Malformed", `Invalid id: "rtb-" (expecting "rtb-...")`, func() error {
			_, err := c.DeleteRouteTable(cx, &awsec2.DeleteRouteTableInput{RouteTableId: aws.String("rtb-")})
			return err
		}},
		{"CreateTags rtb", "InvalidRouteTableID.NotFound", "The routeTable ID 'rtb-" + hex17 + "' does not exist", func() error {
			return tagIt("rtb-" + hex17)
		}},

		{"DescribeSecurityGroups", "InvalidGroup.NotFound", "The security group 'sg-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeSecurityGroups(cx, &awsec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-" + hex17}})
			return err
		}},
		{"DescribeSecurityGroups malformed", "InvalidGroupId.Malformed", `Invalid id: "sg-1" (expecting "sg-...")`, func() error {
			_, err := c.DescribeSecurityGroups(cx, &awsec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-1"}})
			return err
		}},
		{"DeleteSecurityGroup", "InvalidGroup.NotFound", "The security group 'sg-" + hex17 + "' does not exist", func() error {
			_, err := c.DeleteSecurityGroup(cx, &awsec2.DeleteSecurityGroupInput{GroupId: aws.String("sg-" + hex17)})
			return err
		}},
		{"DeleteSecurityGroup malformed", "InvalidGroupId.Malformed", `Invalid id: "sg-1" (expecting "sg-...")`, func() error {
			_, err := c.DeleteSecurityGroup(cx, &awsec2.DeleteSecurityGroupInput{GroupId: aws.String("sg-1")})
			return err
		}},
		{"CreateTags sg", "InvalidGroup.NotFound", "The security group 'sg-" + hex17 + "' does not exist", func() error {
			return tagIt("sg-" + hex17)
		}},
		{"DescribeSecurityGroupRules", "InvalidSecurityGroupRuleId.NotFound", "The security group rule ID 'sgr-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeSecurityGroupRules(cx, &awsec2.DescribeSecurityGroupRulesInput{SecurityGroupRuleIds: []string{"sgr-" + hex17}})
			return err
		}},
		{"DescribeSecurityGroupRules malformed", "InvalidSecurityGroupRuleId.Malformed", `Invalid id: "sgr-x" (expecting "sgr-...")`, func() error {
			_, err := c.DescribeSecurityGroupRules(cx, &awsec2.DescribeSecurityGroupRulesInput{SecurityGroupRuleIds: []string{"sgr-x"}})
			return err
		}},

		{"DescribeInstances", "InvalidInstanceID.NotFound", "The instance ID 'i-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeInstances(cx, &awsec2.DescribeInstancesInput{InstanceIds: []string{"i-" + hex17}})
			return err
		}},
		{"StopInstances two", "InvalidInstanceID.NotFound", "The instance IDs 'i-" + hex17 + ", i-" + other + "' do not exist", func() error {
			_, err := c.StopInstances(cx, &awsec2.StopInstancesInput{InstanceIds: []string{"i-" + hex17, "i-" + other}})
			return err
		}},
		{"StopInstances malformed", "InvalidInstanceID.Malformed", `Invalid id: "i-nope" (expecting "i-...")`, func() error {
			_, err := c.StopInstances(cx, &awsec2.StopInstancesInput{InstanceIds: []string{"i-" + hex17, "i-nope"}})
			return err
		}},
		{"CreateTags instance", "InvalidInstanceID.NotFound", "The instance ID 'i-" + hex17 + "' does not exist", func() error {
			return tagIt("i-" + hex17)
		}},
		{"DescribeIamInstanceProfileAssociations", "InvalidAssociationID.NotFound", "The association ID 'iip-assoc-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeIamInstanceProfileAssociations(cx, &awsec2.DescribeIamInstanceProfileAssociationsInput{AssociationIds: []string{"iip-assoc-" + hex17}})
			return err
		}},
		{"DisassociateIamInstanceProfile malformed", "InvalidAssociationID.Malformed", `Invalid id: "assoc-1" (expecting "iip-assoc-...")`, func() error {
			_, err := c.DisassociateIamInstanceProfile(cx, &awsec2.DisassociateIamInstanceProfileInput{AssociationId: aws.String("assoc-1")})
			return err
		}},

		{"DescribeVolumes", "InvalidVolume.NotFound", "The volume ID 'vol-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{VolumeIds: []string{"vol-" + hex17}})
			return err
		}},
		{"ModifyVolume", "InvalidVolume.NotFound", "The volume ID 'vol-" + hex17 + "' does not exist", func() error {
			_, err := c.ModifyVolume(cx, &awsec2.ModifyVolumeInput{VolumeId: aws.String("vol-" + hex17), Size: aws.Int32(30)})
			return err
		}},
		{"ModifyVolume malformed", "InvalidVolumeID.Malformed", `Invalid id: "vol-1" (expecting "vol-...")`, func() error {
			_, err := c.ModifyVolume(cx, &awsec2.ModifyVolumeInput{VolumeId: aws.String("vol-1"), Size: aws.Int32(30)})
			return err
		}},
		{"CreateTags volume", "InvalidVolume.NotFound", "The volume ID 'vol-" + hex17 + "' does not exist", func() error {
			return tagIt("vol-" + hex17)
		}},

		{"DescribeImages two", "InvalidAMIID.NotFound", "The image id '[ami-" + hex17 + ", ami-" + other + "]' does not exist", func() error {
			_, err := c.DescribeImages(cx, &awsec2.DescribeImagesInput{ImageIds: []string{"ami-" + hex17, "ami-" + other}})
			return err
		}},
		{"DescribeImages malformed", "InvalidAMIID.Malformed", `Invalid id: "ami-1" (expecting "ami-...")`, func() error {
			_, err := c.DescribeImages(cx, &awsec2.DescribeImagesInput{ImageIds: []string{"ami-1"}})
			return err
		}},
		{"DeregisterImage", "InvalidAMIID.NotFound", "The image id '[ami-" + hex17 + "]' does not exist", func() error {
			_, err := c.DeregisterImage(cx, &awsec2.DeregisterImageInput{ImageId: aws.String("ami-" + hex17)})
			return err
		}},
		{"CreateTags image", "InvalidAMIID.NotFound", "The image id '[ami-" + hex17 + "]' does not exist", func() error {
			return tagIt("ami-" + hex17)
		}},

		{"DescribeNetworkAcls", "InvalidNetworkAclID.NotFound", "The network ACL ID 'acl-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeNetworkAcls(cx, &awsec2.DescribeNetworkAclsInput{NetworkAclIds: []string{"acl-" + hex17}})
			return err
		}},
		{"DescribeNetworkAcls malformed", "InvalidNetworkAclID.Malformed", `Invalid id: "acl-1" (expecting "acl-...")`, func() error {
			_, err := c.DescribeNetworkAcls(cx, &awsec2.DescribeNetworkAclsInput{NetworkAclIds: []string{"acl-1"}})
			return err
		}},
		{"CreateTags acl", "InvalidNetworkAclID.NotFound", "The network ACL ID 'acl-" + hex17 + "' does not exist", func() error {
			return tagIt("acl-" + hex17)
		}},

		{"DescribeKeyPairs", "InvalidKeyPair.NotFound", "The key pair 'nobody' does not exist", func() error {
			_, err := c.DescribeKeyPairs(cx, &awsec2.DescribeKeyPairsInput{KeyNames: []string{"nobody"}})
			return err
		}},
		{"DescribeKeyPairs by id", "InvalidKeyPair.NotFound", "The key pair 'key-" + hex17 + "' does not exist", func() error {
			_, err := c.DescribeKeyPairs(cx, &awsec2.DescribeKeyPairsInput{KeyPairIds: []string{"key-" + hex17}})
			return err
		}},
		{"CreateTags key pair", "InvalidKeyPair.NotFound", "The key pair 'key-" + hex17 + "' does not exist", func() error {
			return tagIt("key-" + hex17)
		}},
		{"CreateTags unknown kind", "InvalidID", "The ID 'eni-" + hex17 + "' is not valid", func() error {
			return tagIt("eni-" + hex17)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ae := wantCode(t, tc.call(), tc.code)
			if got := ae.ErrorMessage(); got != tc.message {
				t.Errorf("message %q, want %q", got, tc.message)
			}
		})
	}
}
