package reconcile

import (
	"fmt"

	"github.com/ducksnest/nestbot/nest"
)

// fleetVPC returns the live id of the fleet's VPC: the one nestbot owns, or
// the one nest.yaml adopts; "" when this plan creates it. known is false
// when that cannot be told (several VPCs claim it, or its adoption target
// was not found: both are errors of their own).
func (p *planner) fleetVPC() (id string, known bool) {
	addr := CloudAddress(KindVPC, "")
	switch claims := p.liveIndex()[KindVPC+" "+addr.String()]; len(claims) {
	case 0:
	case 1:
		return claims[0].id, true
	default:
		return "", false
	}
	for id, a := range p.adopting {
		if a == addr {
			return id, true
		}
	}
	if p.f.AWS != nil && p.f.AWS.VPC.Adopt.Takes() {
		return "", false
	}
	return "", true
}

// otherVPC says why r, a live resource, is not the fleet's to change: it
// is in (or, an internet gateway, attached to) another VPC than the
// fleet's. It is nil when r is in the fleet's VPC, is a VPC itself, is a
// detached gateway, or when the fleet's VPC cannot be told. adopt, when
// set, is how nest.yaml named r.
func (p *planner) otherVPC(r resource, adopt *nest.Adopt) error {
	if r.kind == KindVPC || r.vpc == "" {
		return nil
	}
	fleet, known := p.fleetVPC()
	if !known || r.vpc == fleet {
		return nil
	}
	name := r.id
	switch {
	case adopt != nil && adopt.Tag != "":
		name += " (" + adopt.Tag + ")"
	case adopt != nil && adopt.GroupName != "":
		name += " (group " + adopt.GroupName + ")"
	case r.tags["Name"] != "":
		name += " (Name=" + r.tags["Name"] + ")"
	}
	where := "is in " + r.vpc
	switch r.kind {
	case KindInternetGateway:
		where = "is attached to " + r.vpc
	case KindInstance:
		if in := p.liveInstance(r.id); in != nil && in.SubnetID != "" {
			where = "is in " + in.SubnetID + " of " + r.vpc
		}
	}
	if fleet == "" {
		return fmt.Errorf("%s %s, and the fleet's VPC does not exist yet (this plan creates it)", name, where)
	}
	return fmt.Errorf("%s %s, not the fleet's VPC %s", name, where, fleet)
}

// otherVPCHint says what to do about an adoption target in another VPC.
func (p *planner) otherVPCHint(r resource) string {
	fleet, _ := p.fleetVPC()
	what := map[string]string{KindSubnet: "a subnet", KindInternetGateway: "an internet gateway",
		KindRouteTable: "a route table", KindSecurityGroup: "a security group", KindInstance: "an instance"}[r.kind]
	if fleet == "" {
		return fmt.Sprintf("adopt %s as the fleet's VPC (aws.vpc.adopt), or drop this adoption so that nestbot creates %s in the new VPC", r.vpc, what)
	}
	if r.kind == KindInternetGateway {
		return fmt.Sprintf("adopt a detached internet gateway or the one attached to %s, or adopt %s as the fleet's VPC", fleet, r.vpc)
	}
	return fmt.Sprintf("adopt %s of %s, or adopt %s as the fleet's VPC", what, fleet, r.vpc)
}

// untagCommand is the AWS CLI command that removes nestbot's tags from a
// resource; delete-tags passes over the keys it does not carry.
func untagCommand(id string) string {
	cmd := "aws ec2 delete-tags --resources " + id + " --tags"
	for _, k := range []string{TagFleet, TagManaged, TagResource, TagHost, TagUserData} {
		cmd += " Key=" + k
	}
	return cmd
}
