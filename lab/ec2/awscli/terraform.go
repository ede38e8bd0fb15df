package awscli

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/lab/ec2"
)

// Account is the DucksNest fleet as a Terraform configuration leaves it,
// built through the AWS CLI: every resource tagged with Name only (the
// security group not at all, as aws_security_group is unless told), the
// two public subnets made with count and so sharing one Name, a key pair,
// and an AMI the account registered itself.
type Account struct {
	VpcID, InternetGatewayID, RouteTableID, SecurityGroupID string
	SubnetIDs                                               []string // public-a, public-c
	AssociationIDs                                          []string
	ImageID, InstanceID                                     string
	ImageCreated                                            string // the image's CreationDate, as EC2 wrote it
	KeyName, ImageName, InstanceProfile                     string
}

// AccountNestYAML is the nest.yaml that describes Account without adopting
// anything: what a user writes before nestbot takes the account over.
const AccountNestYAML = `version: 1
name: ducksnest
aws:
  region: ap-northeast-2
  vpc: {cidr: 10.20.0.0/16}
  subnets:
    public-a: {cidr: 10.20.0.0/24, zone: ap-northeast-2a, public: true}
    public-c: {cidr: 10.20.1.0/24, zone: ap-northeast-2c, public: true}
  security_group: {ingress: []}  # egress-only: hosts are reached over the tailnet
tailnet:
  domain: ducksnest.ts.net
  tags: [tag:nest]
hosts:
  ec2-controlplane:
    roles: [control-plane]
    aws:
      instance_type: t3.medium
      ami: {name: ducksnest-nixos-25.05, owners: [self]}
      subnet: public-a
      root_volume: {size_gb: 20, type: gp3, encrypted: true}
      instance_profile: ducksnest-controlplane
      key_name: ducksnest-admin
`

// BuildAccount makes Account in the lab through the CLI, as `terraform
// apply` would through the API. The lab must hold the NixOS image (its
// snapshot is registered again as the account's own AMI) and the instance
// profile (IAM is not EC2).
func BuildAccount(c *CLI, srv *ec2.Server) Account {
	c.T.Helper()
	a := Account{KeyName: "ducksnest-admin", ImageName: "ducksnest-nixos-25.05", InstanceProfile: "ducksnest-controlplane"}
	srv.SeedInstanceProfile(a.InstanceProfile)
	nixos, err := srv.SeedImage(ec2.Image{Name: "NixOS-25.05-updated-kernel-image", OwnerID: "427812963091", Public: true, RootVolumeGiB: 8})
	if err != nil {
		c.T.Fatal(err)
	}
	name := func(rt, n string) string { return "ResourceType=" + rt + ",Tags=[{Key=Name,Value=" + n + "}]" }

	a.VpcID = String(c.JSON("create-vpc", "--cidr-block", "10.20.0.0/16", "--tag-specifications", name("vpc", "ducksnest-vpc")), "Vpc", "VpcId")
	c.JSON("modify-vpc-attribute", "--vpc-id", a.VpcID, "--enable-dns-hostnames", `{"Value":true}`)
	for i, zone := range []string{"ap-northeast-2a", "ap-northeast-2c"} {
		id := String(c.JSON("create-subnet", "--vpc-id", a.VpcID, "--cidr-block", []string{"10.20.0.0/24", "10.20.1.0/24"}[i],
			"--availability-zone", zone, "--tag-specifications", name("subnet", "ducksnest-public")), "Subnet", "SubnetId")
		c.JSON("modify-subnet-attribute", "--subnet-id", id, "--map-public-ip-on-launch")
		a.SubnetIDs = append(a.SubnetIDs, id)
	}
	a.InternetGatewayID = String(c.JSON("create-internet-gateway", "--tag-specifications", name("internet-gateway", "ducksnest-igw")),
		"InternetGateway", "InternetGatewayId")
	c.JSON("attach-internet-gateway", "--internet-gateway-id", a.InternetGatewayID, "--vpc-id", a.VpcID)
	a.RouteTableID = String(c.JSON("create-route-table", "--vpc-id", a.VpcID, "--tag-specifications", name("route-table", "ducksnest-public")),
		"RouteTable", "RouteTableId")
	c.JSON("create-route", "--route-table-id", a.RouteTableID, "--destination-cidr-block", "0.0.0.0/0", "--gateway-id", a.InternetGatewayID)
	for _, s := range a.SubnetIDs {
		a.AssociationIDs = append(a.AssociationIDs,
			String(c.JSON("associate-route-table", "--route-table-id", a.RouteTableID, "--subnet-id", s), "AssociationId"))
	}
	a.SecurityGroupID = String(c.JSON("create-security-group", "--group-name", "ducksnest", "--description", "ducksnest hosts (egress only)",
		"--vpc-id", a.VpcID), "GroupId")

	key := filepath.Join(c.T.TempDir(), "admin.pub")
	if err := os.WriteFile(key, adminPublicKey(), 0o600); err != nil {
		c.T.Fatal(err)
	}
	c.JSON("import-key-pair", "--key-name", a.KeyName, "--public-key-material", "fileb://"+key)

	snapshot := String(c.JSON("describe-images", "--image-ids", nixos), "Images", 0, "BlockDeviceMappings", 0, "Ebs", "SnapshotId")
	a.ImageID = String(c.JSON("register-image", "--name", a.ImageName, "--architecture", "x86_64", "--root-device-name", "/dev/xvda",
		"--virtualization-type", "hvm", "--ena-support",
		"--block-device-mappings", "DeviceName=/dev/xvda,Ebs={SnapshotId="+snapshot+",VolumeSize=8,VolumeType=gp3}"), "ImageId")
	a.ImageCreated = String(c.JSON("describe-images", "--image-ids", a.ImageID), "Images", 0, "CreationDate")

	a.InstanceID = String(c.JSON("run-instances", "--image-id", a.ImageID, "--instance-type", "t3.medium", "--count", "1",
		"--subnet-id", a.SubnetIDs[0], "--security-group-ids", a.SecurityGroupID, "--key-name", a.KeyName,
		"--iam-instance-profile", "Name="+a.InstanceProfile, "--metadata-options", "HttpTokens=required,HttpEndpoint=enabled",
		"--block-device-mappings", "DeviceName=/dev/xvda,Ebs={VolumeSize=20,VolumeType=gp3,Encrypted=true,DeleteOnTermination=true}",
		"--tag-specifications", name("instance", "ec2-controlplane")), "Instances", 0, "InstanceId")
	return a
}

// adminPublicKey is the account's key pair: a lab key, nothing logs in with it.
func adminPublicKey() []byte {
	seed := sha256.Sum256([]byte("nestbot lab: the Terraform account's admin key"))
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed[:]).Public())
	if err != nil {
		panic(err)
	}
	return ssh.MarshalAuthorizedKey(pub)
}

// TerraformState is the state file Terraform would have written for
// Account (format version 4, as `terraform state pull` prints it), with the
// attributes the AWS provider records that nestbot reads.
func (a Account) TerraformState() []byte {
	const provider = `provider["registry.terraform.io/hashicorp/aws"]`
	res := func(typ, name string, instances ...map[string]any) map[string]any {
		var list []any
		for i, attrs := range instances {
			in := map[string]any{"schema_version": 1, "attributes": attrs, "sensitive_attributes": []any{}}
			if len(instances) > 1 {
				in["index_key"] = i
			}
			list = append(list, in)
		}
		return map[string]any{"mode": "managed", "type": typ, "name": name, "provider": provider, "instances": list}
	}
	subnet := func(i int, cidr, zone string) map[string]any {
		return map[string]any{"id": a.SubnetIDs[i], "vpc_id": a.VpcID, "cidr_block": cidr, "availability_zone": zone,
			"map_public_ip_on_launch": true, "tags": map[string]any{"Name": "ducksnest-public"}}
	}
	state := map[string]any{
		"version": 4, "terraform_version": "1.9.8", "serial": 12, "lineage": "3c1f6a1e-8b59-4f55-9d7c-6e657374626f",
		"outputs": map[string]any{},
		"resources": []any{
			map[string]any{"mode": "data", "type": "aws_ami", "name": "nixos", "provider": provider, "instances": []any{
				map[string]any{"schema_version": 0, "attributes": map[string]any{"id": a.ImageID, "image_id": a.ImageID, "name": a.ImageName,
					"owner_id": ec2.DefaultAccountID, "state": "available", "root_device_name": "/dev/xvda", "creation_date": a.ImageCreated}}}},
			res("aws_vpc", "main", map[string]any{"id": a.VpcID, "cidr_block": "10.20.0.0/16", "enable_dns_hostnames": true, "owner_id": ec2.DefaultAccountID,
				"tags": map[string]any{"Name": "ducksnest-vpc"}}),
			res("aws_subnet", "public", subnet(0, "10.20.0.0/24", "ap-northeast-2a"), subnet(1, "10.20.1.0/24", "ap-northeast-2c")),
			res("aws_internet_gateway", "gw", map[string]any{"id": a.InternetGatewayID, "vpc_id": a.VpcID, "tags": map[string]any{"Name": "ducksnest-igw"}}),
			res("aws_route_table", "public", map[string]any{"id": a.RouteTableID, "vpc_id": a.VpcID,
				"route": []any{map[string]any{"cidr_block": "0.0.0.0/0", "gateway_id": a.InternetGatewayID}},
				"tags":  map[string]any{"Name": "ducksnest-public"}}),
			res("aws_route_table_association", "public",
				map[string]any{"id": a.AssociationIDs[0], "subnet_id": a.SubnetIDs[0], "route_table_id": a.RouteTableID},
				map[string]any{"id": a.AssociationIDs[1], "subnet_id": a.SubnetIDs[1], "route_table_id": a.RouteTableID}),
			res("aws_security_group", "hosts", map[string]any{"id": a.SecurityGroupID, "name": "ducksnest", "vpc_id": a.VpcID,
				"ingress": []any{}, "egress": []any{map[string]any{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": []any{"0.0.0.0/0"}}},
				"tags": nil}),
			res("aws_key_pair", "admin", map[string]any{"id": a.KeyName, "key_name": a.KeyName}),
			res("aws_instance", "controlplane", map[string]any{"id": a.InstanceID, "ami": a.ImageID, "instance_type": "t3.medium",
				"subnet_id": a.SubnetIDs[0], "key_name": a.KeyName, "iam_instance_profile": a.InstanceProfile,
				"vpc_security_group_ids": []any{a.SecurityGroupID},
				"root_block_device":      []any{map[string]any{"volume_size": 20, "volume_type": "gp3", "encrypted": true}},
				"tags":                   map[string]any{"Name": "ec2-controlplane"}}),
		},
		"check_results": nil,
	}
	out, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(out, '\n')
}
