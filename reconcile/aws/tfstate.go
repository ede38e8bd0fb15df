package aws

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"

	"github.com/ducksnest/nestbot/reconcile"
)

// A Terraform state file, format version 4 (Terraform 0.12 and later), as
// `terraform state pull` prints it from any backend: the resources
// Terraform manages, each with the attributes the provider recorded. Only
// what nestbot reads is decoded.
type tfState struct {
	Version          int          `json:"version"`
	TerraformVersion string       `json:"terraform_version"`
	Serial           int          `json:"serial"`
	Resources        []tfResource `json:"resources"`
}

type tfResource struct {
	Mode      string `json:"mode"` // managed or data
	Module    string `json:"module"`
	Type      string `json:"type"`
	Name      string `json:"name"`
	Instances []struct {
		Attributes json.RawMessage `json:"attributes"`
	} `json:"instances"`
}

// tfAttrs are the AWS provider's attributes that nestbot reads, across the
// resource types it knows.
type tfAttrs struct {
	ID                 string            `json:"id"`
	VpcID              string            `json:"vpc_id"`
	CidrBlock          string            `json:"cidr_block"`
	AvailabilityZone   string            `json:"availability_zone"`
	MapPublicIP        bool              `json:"map_public_ip_on_launch"`
	Tags               map[string]string `json:"tags"`
	Name               string            `json:"name"`
	SubnetID           string            `json:"subnet_id"`
	RouteTableID       string            `json:"route_table_id"`
	AMI                string            `json:"ami"`
	InstanceType       string            `json:"instance_type"`
	KeyName            string            `json:"key_name"`
	IAMInstanceProfile string            `json:"iam_instance_profile"`
	PrivateIP          string            `json:"private_ip"`
	PublicIP           string            `json:"public_ip"`
	InstanceState      string            `json:"instance_state"`
	OwnerID            string            `json:"owner_id"`
	CreationDate       string            `json:"creation_date"`
	State              string            `json:"state"`
	RootDeviceName     string            `json:"root_device_name"`
	Route              []struct {
		CidrBlock string `json:"cidr_block"`
		GatewayID string `json:"gateway_id"`
	} `json:"route"`
	Ingress         []tfRule `json:"ingress"`
	Egress          []tfRule `json:"egress"`
	RootBlockDevice []struct {
		VolumeSize int    `json:"volume_size"`
		VolumeType string `json:"volume_type"`
		Encrypted  bool   `json:"encrypted"`
		VolumeID   string `json:"volume_id"`
	} `json:"root_block_device"`
}

type tfRule struct {
	Protocol   string   `json:"protocol"`
	FromPort   int      `json:"from_port"`
	ToPort     int      `json:"to_port"`
	CidrBlocks []string `json:"cidr_blocks"`
}

// TerraformKinds are the AWS provider's resource types that nestbot reads
// from a state, and the other types it passes over.
var TerraformKinds = []string{"aws_vpc", "aws_subnet", "aws_internet_gateway", "aws_route_table",
	"aws_route_table_association", "aws_security_group", "aws_instance"}

// StateRead says what a Terraform state held.
type StateRead struct {
	TerraformVersion string
	Serial           int
	Read             int      // resource instances read
	Skipped          []string // other managed resource types, sorted
}

// CloudFromTerraformState reads a Terraform state (format version 4) into
// the observed cloud that its resources are: the VPCs, subnets, internet
// gateways, route tables (with their associations), security groups and
// instances it manages, with the tags the provider recorded. name is used
// in errors.
func CloudFromTerraformState(name string, r io.Reader) (reconcile.Cloud, StateRead, error) {
	var c reconcile.Cloud
	var st tfState
	var read StateRead
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return c, read, fmt.Errorf("%s: not a Terraform state (JSON): %w", name, err)
	}
	if st.Version != 4 {
		return c, read, fmt.Errorf("%s: Terraform state format version %d; nestbot reads version 4 (Terraform 0.12 and later): "+
			"write it with terraform state pull from a current Terraform", name, st.Version)
	}
	read.TerraformVersion, read.Serial = st.TerraformVersion, st.Serial
	skipped := map[string]bool{}
	routeTables := map[string]int{}
	var associations [][2]string // subnet, route table
	for _, res := range st.Resources {
		if res.Mode == "data" && res.Type == "aws_ami" {
			// The image an aws_ami data source resolved: the one its
			// instances run, and what ami: {name: …} resolves to.
			for _, in := range res.Instances {
				var a tfAttrs
				if err := json.Unmarshal(in.Attributes, &a); err == nil && a.ID != "" {
					im := reconcile.Image{ID: a.ID, Name: a.Name, OwnerID: a.OwnerID, State: cmp.Or(a.State, "available"), RootDevice: a.RootDeviceName}
					im.CreationDate, _ = parseAWSTime(a.CreationDate)
					c.Images = append(c.Images, im)
				}
			}
			continue
		}
		if res.Mode != "managed" {
			continue
		}
		if !slices.Contains(TerraformKinds, res.Type) {
			skipped[res.Type] = true
			continue
		}
		for i, in := range res.Instances {
			var a tfAttrs
			if err := json.Unmarshal(in.Attributes, &a); err != nil {
				return c, read, fmt.Errorf("%s: %s.%s[%d]: %w", name, res.Type, res.Name, i, err)
			}
			if a.ID == "" {
				return c, read, fmt.Errorf("%s: %s.%s[%d] has no id", name, res.Type, res.Name, i)
			}
			read.Read++
			tags := reconcile.Tags(a.Tags)
			if len(tags) == 0 {
				tags = nil
			}
			switch res.Type {
			case "aws_vpc":
				c.VPCs = append(c.VPCs, reconcile.VPC{ID: a.ID, CIDR: a.CidrBlock, Tags: tags})
				c.AccountID = cmp.Or(c.AccountID, a.OwnerID) // for owners: [self]
			case "aws_subnet":
				c.Subnets = append(c.Subnets, reconcile.Subnet{ID: a.ID, VPCID: a.VpcID, CIDR: a.CidrBlock, Zone: a.AvailabilityZone,
					MapPublicIP: a.MapPublicIP, Tags: tags})
			case "aws_internet_gateway":
				c.InternetGateways = append(c.InternetGateways, reconcile.InternetGateway{ID: a.ID, VPCID: a.VpcID, Tags: tags})
			case "aws_route_table":
				rt := reconcile.RouteTable{ID: a.ID, VPCID: a.VpcID, Tags: tags}
				for _, route := range a.Route {
					rt.Routes = append(rt.Routes, reconcile.Route{Destination: route.CidrBlock, Target: route.GatewayID})
				}
				routeTables[a.ID] = len(c.RouteTables)
				c.RouteTables = append(c.RouteTables, rt)
			case "aws_route_table_association":
				associations = append(associations, [2]string{a.SubnetID, a.RouteTableID})
			case "aws_security_group":
				c.SecurityGroups = append(c.SecurityGroups, reconcile.SecurityGroup{ID: a.ID, VPCID: a.VpcID, Name: a.Name,
					Ingress: tfRules(a.Ingress), Egress: tfRules(a.Egress), Tags: tags})
			case "aws_instance":
				li := reconcile.Instance{ID: a.ID, State: cmp.Or(a.InstanceState, "running"), Type: a.InstanceType, ImageID: a.AMI,
					SubnetID: a.SubnetID, PrivateIP: a.PrivateIP, PublicIP: a.PublicIP, InstanceProfile: a.IAMInstanceProfile,
					KeyName: a.KeyName, Tags: tags}
				if len(a.RootBlockDevice) > 0 {
					d := a.RootBlockDevice[0]
					li.RootVolume = reconcile.Volume{ID: d.VolumeID, SizeGB: d.VolumeSize, Type: d.VolumeType, Encrypted: d.Encrypted}
				}
				c.Instances = append(c.Instances, li)
			}
		}
	}
	for _, as := range associations {
		if i, ok := routeTables[as[1]]; ok && as[0] != "" {
			c.RouteTables[i].Associations = append(c.RouteTables[i].Associations, as[0])
		}
	}
	for i := range c.RouteTables {
		sort.Strings(c.RouteTables[i].Associations)
	}
	for i, in := range c.Instances {
		c.Instances[i].VPCID = c.VPCOf(reconcile.KindSubnet, in.SubnetID)
	}
	read.Skipped = slices.Sorted(maps.Keys(skipped))
	return c, read, nil
}

// ianaProtocols names the protocol numbers a security group rule may hold.
var ianaProtocols = map[int]string{1: "icmp", 6: "tcp", 17: "udp"}

func tfRules(rules []tfRule) []reconcile.SecurityRule {
	var out []reconcile.SecurityRule
	for _, r := range rules {
		sr := reconcile.SecurityRule{Protocol: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort, CIDRs: slices.Sorted(slices.Values(r.CidrBlocks))}
		if sr.Protocol == "-1" || sr.Protocol == "all" {
			sr.Protocol, sr.FromPort, sr.ToPort = "all", 0, 0
		} else if n, err := strconv.Atoi(sr.Protocol); err == nil && ianaProtocols[n] != "" {
			sr.Protocol = ianaProtocols[n]
		}
		out = append(out, sr)
	}
	return out
}
