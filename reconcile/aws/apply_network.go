package aws

import (
	"context"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// How the Applier brings a subnet, a route table and a security group's
// rules to what nest.yaml says.

func (a *Applier) setMapPublicIP(ctx context.Context, subnet string, on bool) error {
	_, err := a.Client.ModifySubnetAttribute(ctx, &ec2.ModifySubnetAttributeInput{SubnetId: aws.String(subnet),
		MapPublicIpOnLaunch: &types.AttributeBooleanValue{Value: aws.Bool(on)}})
	return err
}

func (a *Applier) liveRouteTable(id string) *reconcile.RouteTable {
	for i := range a.Live.RouteTables {
		if a.Live.RouteTables[i].ID == id {
			return &a.Live.RouteTables[i]
		}
	}
	return nil
}

// syncRouteTable makes the public route table route 0.0.0.0/0 to the
// internet gateway and be associated with exactly the public subnets.
func (a *Applier) syncRouteTable(ctx context.Context, id string, have *reconcile.RouteTable) error {
	igw, err := a.need(reconcile.CloudAddress(reconcile.KindInternetGateway, ""))
	if err != nil {
		return err
	}
	hasDefault := false
	if have != nil {
		for _, r := range have.Routes {
			if r.Destination == "0.0.0.0/0" {
				if r.Target == igw {
					hasDefault = true
					continue
				}
				if _, err := a.Client.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(id), DestinationCidrBlock: aws.String("0.0.0.0/0")}); err != nil {
					return err
				}
			}
		}
	}
	if !hasDefault {
		if _, err := a.Client.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(id), DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: aws.String(igw)}); err != nil {
			return err
		}
	}
	want := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(a.Fleet.AWS.Subnets)) {
		if a.Fleet.AWS.Subnets[name].Public {
			sid, err := a.need(reconcile.CloudAddress(reconcile.KindSubnet, name))
			if err != nil {
				return err
			}
			want[sid] = true
		}
	}
	// Associations are re-read: disassociating needs their ids.
	out, err := a.Client.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{id}})
	if err != nil {
		return err
	}
	associated := map[string]bool{}
	for _, rt := range out.RouteTables {
		for _, as := range rt.Associations {
			sid := aws.ToString(as.SubnetId)
			if sid == "" {
				continue
			}
			if !want[sid] {
				if _, err := a.Client.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: as.RouteTableAssociationId}); err != nil {
					return err
				}
				continue
			}
			associated[sid] = true
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(want)) {
		if !associated[sid] {
			if _, err := a.Client.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: aws.String(id), SubnetId: aws.String(sid)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncRules authorizes the missing rules and revokes the extra ones.
func (a *Applier) syncRules(ctx context.Context, id string, haveIn, haveEg []reconcile.SecurityRule) error {
	sg := a.Fleet.AWS.SecurityGroup
	addIn, delIn := ruleDiff(desired(sg.Ingress), haveIn)
	addEg, delEg := ruleDiff(desired(sg.Egress), haveEg)
	if len(delIn) > 0 {
		if _, err := a.Client.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: delIn}); err != nil {
			return err
		}
	}
	if len(delEg) > 0 {
		if _, err := a.Client.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: aws.String(id), IpPermissions: delEg}); err != nil {
			return err
		}
	}
	if len(addIn) > 0 {
		if _, err := a.Client.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: addIn}); err != nil {
			return err
		}
	}
	if len(addEg) > 0 {
		if _, err := a.Client.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: aws.String(id), IpPermissions: addEg}); err != nil {
			return err
		}
	}
	return nil
}

func desired(rules []nest.Rule) []reconcile.SecurityRule {
	out := make([]reconcile.SecurityRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, reconcile.SecurityRule{Protocol: r.Protocol, FromPort: r.Ports.From, ToPort: r.Ports.To, CIDRs: r.CIDRs})
	}
	return out
}

// ruleKey is one (protocol, ports, CIDR) permission.
type ruleKey struct {
	proto    string
	from, to int
	cidr     string
}

func flatten(rules []reconcile.SecurityRule) map[ruleKey]bool {
	m := map[ruleKey]bool{}
	for _, r := range rules {
		proto := r.Protocol
		if proto == "-1" {
			proto = "all"
		}
		from, to := r.FromPort, r.ToPort
		if proto == "all" {
			from, to = 0, 0
		}
		for _, c := range r.CIDRs {
			m[ruleKey{proto, from, to, c}] = true
		}
	}
	return m
}

func ruleDiff(want, have []reconcile.SecurityRule) (add, del []types.IpPermission) {
	w, h := flatten(want), flatten(have)
	perm := func(k ruleKey) types.IpPermission {
		p := types.IpPermission{IpProtocol: aws.String(k.proto), IpRanges: []types.IpRange{{CidrIp: aws.String(k.cidr)}}}
		if k.proto == "all" {
			p.IpProtocol = aws.String("-1")
		} else {
			p.FromPort, p.ToPort = aws.Int32(int32(k.from)), aws.Int32(int32(k.to))
		}
		return p
	}
	for _, k := range sortedRuleKeys(w) {
		if !h[k] {
			add = append(add, perm(k))
		}
	}
	for _, k := range sortedRuleKeys(h) {
		if !w[k] {
			del = append(del, perm(k))
		}
	}
	return add, del
}

func sortedRuleKeys(m map[ruleKey]bool) []ruleKey {
	keys := make([]ruleKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortRuleKeys(keys)
	return keys
}
