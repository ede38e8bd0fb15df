package aws

import (
	"cmp"
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/reconcile"
)

// What the Observer reads of the network: VPCs, subnets, internet gateways,
// route tables and security groups.

func (o *Observer) vpcs(ctx context.Context, queries [][]types.Filter) ([]reconcile.VPC, error) {
	seen := map[string]bool{}
	var out []reconcile.VPC
	for _, filters := range queries {
		p := ec2.NewDescribeVpcsPaginator(o.Client, &ec2.DescribeVpcsInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeVpcs")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe VPCs: %w", err)
			}
			for _, v := range page.Vpcs {
				if id := aws.ToString(v.VpcId); !seen[id] {
					seen[id] = true
					if tagMap(v.Tags)[reconcile.TagFleet] != "" || o.account == "" {
						o.account = aws.ToString(v.OwnerId)
					}
					out = append(out, reconcile.VPC{ID: id, CIDR: aws.ToString(v.CidrBlock), Tags: tagMap(v.Tags)})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) subnets(ctx context.Context, queries [][]types.Filter) ([]reconcile.Subnet, error) {
	seen := map[string]bool{}
	var out []reconcile.Subnet
	for _, filters := range queries {
		p := ec2.NewDescribeSubnetsPaginator(o.Client, &ec2.DescribeSubnetsInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeSubnets")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe subnets: %w", err)
			}
			for _, s := range page.Subnets {
				if id := aws.ToString(s.SubnetId); !seen[id] {
					seen[id] = true
					out = append(out, reconcile.Subnet{ID: id, VPCID: aws.ToString(s.VpcId), CIDR: aws.ToString(s.CidrBlock),
						Zone: aws.ToString(s.AvailabilityZone), MapPublicIP: aws.ToBool(s.MapPublicIpOnLaunch), Tags: tagMap(s.Tags)})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) internetGateways(ctx context.Context, queries [][]types.Filter) ([]reconcile.InternetGateway, error) {
	seen := map[string]bool{}
	var out []reconcile.InternetGateway
	for _, filters := range queries {
		p := ec2.NewDescribeInternetGatewaysPaginator(o.Client, &ec2.DescribeInternetGatewaysInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeInternetGateways")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe internet gateways: %w", err)
			}
			for _, g := range page.InternetGateways {
				id := aws.ToString(g.InternetGatewayId)
				if seen[id] {
					continue
				}
				seen[id] = true
				ig := reconcile.InternetGateway{ID: id, Tags: tagMap(g.Tags)}
				for _, at := range g.Attachments {
					if at.State == types.AttachmentStatusAttached || at.State == "available" {
						ig.VPCID = aws.ToString(at.VpcId)
					}
				}
				out = append(out, ig)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) routeTables(ctx context.Context, queries [][]types.Filter) ([]reconcile.RouteTable, error) {
	seen := map[string]bool{}
	var out []reconcile.RouteTable
	for _, filters := range queries {
		p := ec2.NewDescribeRouteTablesPaginator(o.Client, &ec2.DescribeRouteTablesInput{Filters: filters, MaxResults: o.page(100)})
		for p.HasMorePages() {
			o.count("DescribeRouteTables")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe route tables: %w", err)
			}
			for _, rt := range page.RouteTables {
				id := aws.ToString(rt.RouteTableId)
				if seen[id] {
					continue
				}
				seen[id] = true
				r := reconcile.RouteTable{ID: id, VPCID: aws.ToString(rt.VpcId), Tags: tagMap(rt.Tags)}
				for _, route := range rt.Routes {
					target := cmp.Or(aws.ToString(route.GatewayId), aws.ToString(route.NatGatewayId), aws.ToString(route.NetworkInterfaceId), aws.ToString(route.InstanceId))
					r.Routes = append(r.Routes, reconcile.Route{Destination: aws.ToString(route.DestinationCidrBlock), Target: target})
				}
				for _, as := range rt.Associations {
					if s := aws.ToString(as.SubnetId); s != "" {
						r.Associations = append(r.Associations, s)
					}
					r.Main = r.Main || aws.ToBool(as.Main)
				}
				sort.Strings(r.Associations)
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) securityGroups(ctx context.Context, queries [][]types.Filter) ([]reconcile.SecurityGroup, error) {
	seen := map[string]bool{}
	var out []reconcile.SecurityGroup
	for _, filters := range queries {
		p := ec2.NewDescribeSecurityGroupsPaginator(o.Client, &ec2.DescribeSecurityGroupsInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeSecurityGroups")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe security groups: %w", err)
			}
			for _, g := range page.SecurityGroups {
				id := aws.ToString(g.GroupId)
				if seen[id] {
					continue
				}
				seen[id] = true
				out = append(out, reconcile.SecurityGroup{ID: id, VPCID: aws.ToString(g.VpcId), Name: aws.ToString(g.GroupName),
					Ingress: rules(g.IpPermissions), Egress: rules(g.IpPermissionsEgress), Tags: tagMap(g.Tags)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func rules(perms []types.IpPermission) []reconcile.SecurityRule {
	var out []reconcile.SecurityRule
	for _, p := range perms {
		r := reconcile.SecurityRule{Protocol: aws.ToString(p.IpProtocol), FromPort: int(aws.ToInt32(p.FromPort)), ToPort: int(aws.ToInt32(p.ToPort))}
		if r.Protocol == "-1" {
			r.Protocol, r.FromPort, r.ToPort = "all", 0, 0
		}
		for _, ipr := range p.IpRanges {
			r.CIDRs = append(r.CIDRs, aws.ToString(ipr.CidrIp))
		}
		sort.Strings(r.CIDRs)
		out = append(out, r)
	}
	return out
}
