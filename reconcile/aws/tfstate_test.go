package aws_test

import (
	"strings"
	"testing"

	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// TestTerraformStateRead: a version 4 state gives the resources it
// manages, route table associations folded in, protocol numbers named;
// another version, or what is not a state, is an error that says so.
func TestTerraformStateRead(t *testing.T) {
	state := `{"version": 4, "terraform_version": "1.9.8", "serial": 3, "resources": [
	  {"mode": "managed", "type": "aws_vpc", "name": "main", "instances": [{"attributes": {"id": "vpc-01", "cidr_block": "10.20.0.0/16", "owner_id": "111122223333", "tags": {"Name": "v"}}}]},
	  {"mode": "managed", "type": "aws_subnet", "name": "a", "instances": [{"attributes": {"id": "subnet-01", "vpc_id": "vpc-01", "cidr_block": "10.20.0.0/24", "availability_zone": "ap-northeast-2a", "map_public_ip_on_launch": true}}]},
	  {"mode": "managed", "type": "aws_route_table", "name": "p", "instances": [{"attributes": {"id": "rtb-01", "vpc_id": "vpc-01", "route": [{"cidr_block": "0.0.0.0/0", "gateway_id": "igw-01"}]}}]},
	  {"mode": "managed", "type": "aws_route_table_association", "name": "a", "instances": [{"attributes": {"id": "rtbassoc-01", "subnet_id": "subnet-01", "route_table_id": "rtb-01"}}]},
	  {"mode": "managed", "type": "aws_security_group", "name": "s", "instances": [{"attributes": {"id": "sg-01", "name": "ducksnest", "vpc_id": "vpc-01", "tags": null,
	    "ingress": [{"protocol": "6", "from_port": 22, "to_port": 22, "cidr_blocks": ["10.0.0.0/8"]}], "egress": [{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}]}}]},
	  {"mode": "managed", "type": "aws_instance", "name": "cp", "instances": [{"attributes": {"id": "i-01", "ami": "ami-01", "instance_type": "t3.medium", "subnet_id": "subnet-01",
	    "root_block_device": [{"volume_size": 20, "volume_type": "gp3", "encrypted": true}], "tags": {"Name": "ec2-controlplane"}}}]},
	  {"mode": "managed", "type": "aws_eip", "name": "x", "instances": [{"attributes": {"id": "eipalloc-01"}}]}
	]}`
	c, read, err := nestaws.CloudFromTerraformState("terraform.tfstate", strings.NewReader(state))
	if err != nil {
		t.Fatal(err)
	}
	if read.Read != 6 || read.Serial != 3 || strings.Join(read.Skipped, ",") != "aws_eip" {
		t.Errorf("read %+v", read)
	}
	if c.AccountID != "111122223333" || len(c.VPCs) != 1 || c.Subnets[0].VPCID != "vpc-01" || !c.Subnets[0].MapPublicIP {
		t.Errorf("cloud %+v", c)
	}
	if rt := c.RouteTables[0]; len(rt.Associations) != 1 || rt.Associations[0] != "subnet-01" || rt.Routes[0].Target != "igw-01" {
		t.Errorf("route table %+v", rt)
	}
	if sg := c.SecurityGroups[0]; sg.Name != "ducksnest" || sg.Ingress[0].Protocol != "tcp" || sg.Egress[0].Protocol != "all" || sg.Tags != nil {
		t.Errorf("security group %+v", sg)
	}
	if in := c.Instances[0]; in.VPCID != "vpc-01" || in.State != "running" || in.RootVolume.SizeGB != 20 || in.Tags["Name"] != "ec2-controlplane" {
		t.Errorf("instance %+v", in)
	}
	for input, want := range map[string]string{
		`{"version": 3, "resources": []}`: "terraform.tfstate: Terraform state format version 3; nestbot reads version 4",
		`resource "aws_vpc" "main" {}`:    "terraform.tfstate: not a Terraform state (JSON)",
		`{"version": 4, "resources": [{"mode": "managed", "type": "aws_vpc", "name": "m", "instances": [{"attributes": {"cidr_block": "10.0.0.0/16"}}]}]}`: "aws_vpc.m[0] has no id",
	} {
		if _, _, err := nestaws.CloudFromTerraformState("terraform.tfstate", strings.NewReader(input)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", input, err, want)
		}
	}
}
