package reconcile

import "testing"

// TestCloudVPCOf: each kind of resource is found by its id in its own list;
// an instance without a VPC (a snapshot written before instances carried
// one) has its subnet's; a VPC, a detached gateway and an unknown id have
// none.
func TestCloudVPCOf(t *testing.T) {
	c := &Cloud{
		VPCs:             []VPC{{ID: "vpc-1"}},
		Subnets:          []Subnet{{ID: "subnet-1", VPCID: "vpc-1"}, {ID: "subnet-2", VPCID: "vpc-2"}},
		InternetGateways: []InternetGateway{{ID: "igw-1", VPCID: "vpc-2"}, {ID: "igw-2"}},
		RouteTables:      []RouteTable{{ID: "rtb-1", VPCID: "vpc-2"}},
		SecurityGroups:   []SecurityGroup{{ID: "sg-1", VPCID: "vpc-2"}},
		Instances:        []Instance{{ID: "i-1", SubnetID: "subnet-1", VPCID: "vpc-3"}, {ID: "i-2", SubnetID: "subnet-2"}},
	}
	for _, tc := range []struct{ kind, id, want string }{
		{KindSubnet, "subnet-2", "vpc-2"},
		{KindInternetGateway, "igw-1", "vpc-2"},
		{KindInternetGateway, "igw-2", ""},
		{KindRouteTable, "rtb-1", "vpc-2"},
		{KindSecurityGroup, "sg-1", "vpc-2"},
		{KindInstance, "i-1", "vpc-3"},
		{KindInstance, "i-2", "vpc-2"},
		{KindVPC, "vpc-1", ""},
		{KindSubnet, "sg-1", ""},
		{KindInstance, "i-9", ""},
	} {
		if got := c.VPCOf(tc.kind, tc.id); got != tc.want {
			t.Errorf("VPCOf(%s, %s) = %q, want %q", tc.kind, tc.id, got, tc.want)
		}
	}
}
