package reconcile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

// No silent twins: before the plan creates a VPC, subnet, internet gateway,
// route table, security group or instance, it looks for an untagged one
// that looks the same — the same CIDR, the Name nestbot would give it or
// one a Terraform configuration gives such a resource, the group name, the
// host's name on an instance — and stops with the adopt: lines that take it
// over. adopt: none creates it anyway.

// LookalikeNames are the Name tags (and, for a security group, the group
// names) that make an untagged resource of this kind look like the fleet's
// resource name ("" for the VPC, internet gateway and security group; the
// subnet's name; "public" for the route table; the host for an instance).
func LookalikeNames(fleet, kind, name string) []string {
	switch kind {
	case KindVPC:
		return []string{fleet, fleet + "-vpc"}
	case KindSubnet:
		return []string{fleet + "-" + name, name}
	case KindInternetGateway:
		return []string{fleet, fleet + "-igw", fleet + "-gw"}
	case KindRouteTable:
		return []string{fleet + "-" + name, name, fleet + "-rt", fleet + "-" + name + "-rt"}
	case KindSecurityGroup:
		return []string{fleet, fleet + "-nest", fleet + "-sg"}
	case KindInstance:
		return []string{name, fleet + "-" + name}
	}
	return nil
}

// VPCLooksLike reports whether an observed VPC that nestbot does not own
// looks like the fleet's: the same CIDR, or one of its names.
func VPCLooksLike(f *nest.Fleet, v VPC) bool {
	return v.Tags[TagFleet] == "" && f.AWS != nil &&
		(v.CIDR == f.AWS.VPC.CIDR || slices.Contains(LookalikeNames(f.Name, KindVPC, ""), v.Tags["Name"]))
}

// twin is a resource the plan would create beside live ones that look the same.
type twin struct {
	want  resource
	found []resource
}

// untagged reports whether r carries no fleet's tags at all.
func untagged(r resource) bool { return r.tags[TagFleet] == "" }

// candidateVPCs are the VPCs the fleet's network lives in: the fleet's
// (owned or adopted), or, while the plan would create it, the untagged
// VPCs that look like it; none when nest.yaml creates a new one anyway.
func (p *planner) candidateVPCs() []string {
	id, known := p.fleetVPC()
	if id != "" || !known {
		if id == "" {
			return nil
		}
		return []string{id}
	}
	if p.f.AWS.VPC.Adopt != nil {
		return nil // adopt: none: a new VPC, and nothing in it yet
	}
	var out []string
	for _, v := range p.live.Cloud.VPCs {
		if VPCLooksLike(p.f, v) {
			out = append(out, v.ID)
		}
	}
	return out
}

// lookalikes are the live resources, carrying no fleet's tags, that look
// like want: creating want would put a twin beside them.
func (p *planner) lookalikes(want resource) []resource {
	name := want.addr.Name
	if want.kind == KindInstance {
		name = want.host
	}
	names := LookalikeNames(p.f.Name, want.kind, name)
	named := func(r resource) bool {
		return slices.Contains(names, r.tags["Name"]) || want.kind == KindSecurityGroup && slices.Contains(names, r.groupName)
	}
	wantCIDR, _ := want.attr("cidr")
	inFleet := p.candidateVPCs()
	var out []resource
	for _, r := range p.liveList() {
		if r.kind != want.kind || !untagged(r) {
			continue
		}
		cidr, _ := r.attr("cidr")
		routes, _ := r.attr("routes")
		ok := false
		switch want.kind {
		case KindVPC:
			ok = cidr.value == wantCIDR.value || named(r)
		case KindSubnet:
			ok = slices.Contains(inFleet, r.vpc) && (cidr.value == wantCIDR.value || named(r))
		case KindInternetGateway:
			ok = slices.Contains(inFleet, r.vpc) // a VPC has at most one
		case KindRouteTable:
			ok = slices.Contains(inFleet, r.vpc) && !r.main && (strings.Contains(routes.value, "0.0.0.0/0 -> ") || named(r))
		case KindSecurityGroup:
			ok = slices.Contains(inFleet, r.vpc) && r.groupName != "default" && named(r)
		case KindInstance:
			ok = named(r)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// twinsError is the one error that stops a plan that would make twins: it
// gives the adopt: lines to paste into nest.yaml, nested as nest.yaml nests
// them, and says how to create anyway.
func (p *planner) twinsError(twins []twin) error {
	var b strings.Builder
	fmt.Fprintf(&b, "aws: nest.yaml would create %s beside untagged ones that look the same (built by Terraform or by hand); "+
		"nestbot does not make twins, so the plan stops. To take them over, put these adopt: lines into nest.yaml:\n", Plural(len(twins), "resource"))
	byAddr := map[Address]twin{}
	for _, t := range twins {
		byAddr[t.want.addr] = t
	}
	line := func(indent int, t twin) {
		fmt.Fprintf(&b, "%sadopt: {id: %s}  # %s", strings.Repeat("  ", indent), t.found[0].id, p.describe(t.found[0]))
		for _, o := range t.found[1:] {
			fmt.Fprintf(&b, "; or %s (%s)", o.id, p.describe(o))
		}
		if len(t.found) > 1 {
			b.WriteString(": keep the one to take over")
		}
		b.WriteString("\n")
	}
	network := func() bool {
		for _, t := range twins {
			if t.want.kind != KindInstance {
				return true
			}
		}
		return false
	}()
	if network {
		b.WriteString("  aws:\n")
		if t, ok := byAddr[CloudAddress(KindVPC, "")]; ok {
			b.WriteString("    vpc:\n")
			line(3, t)
		}
		subnetsShown := false
		for _, t := range twins {
			if t.want.kind != KindSubnet {
				continue
			}
			if !subnetsShown {
				b.WriteString("    subnets:\n")
				subnetsShown = true
			}
			fmt.Fprintf(&b, "      %s:\n", t.want.addr.Name)
			line(4, t)
		}
		for _, k := range []struct {
			addr Address
			key  string
		}{
			{CloudAddress(KindInternetGateway, ""), "internet_gateway"},
			{CloudAddress(KindRouteTable, "public"), "route_table"},
			{CloudAddress(KindSecurityGroup, ""), "security_group"},
		} {
			if t, ok := byAddr[k.addr]; ok {
				fmt.Fprintf(&b, "    %s:\n", k.key)
				line(3, t)
			}
		}
	}
	hostsShown := false
	for _, t := range twins {
		if t.want.kind != KindInstance {
			continue
		}
		if !hostsShown {
			b.WriteString("  hosts:\n")
			hostsShown = true
		}
		fmt.Fprintf(&b, "    %s:\n      aws:\n", t.want.host)
		line(4, t)
	}
	b.WriteString("To create one anyway, beside what exists, write adopt: none in its place. nestbot adopt prints nest.yaml with these lines in.")
	return fmt.Errorf("%s", b.String())
}

// describe says what a live resource is, for the user to recognise it.
func (p *planner) describe(r resource) string {
	var parts []string
	if r.kind == KindSecurityGroup && r.groupName != "" {
		parts = append(parts, "group "+r.groupName)
	}
	if n := r.tags["Name"]; n != "" {
		parts = append(parts, "Name="+n)
	}
	cidr, _ := r.attr("cidr")
	zone, _ := r.attr("zone")
	switch r.kind {
	case KindVPC:
		parts = append(parts, cidr.value)
	case KindSubnet:
		parts = append(parts, cidr.value+" in "+zone.value+", "+r.vpc)
	case KindInternetGateway:
		parts = append(parts, "attached to "+r.vpc)
	case KindRouteTable:
		routes, _ := r.attr("routes")
		parts = append(parts, "routes "+routes.value+" in "+r.vpc)
	case KindSecurityGroup:
		parts = append(parts, "in "+r.vpc)
	case KindInstance:
		parts = append(parts, r.state)
		if in := p.liveInstance(r.id); in != nil {
			parts[len(parts)-1] += " in " + in.SubnetID
		}
	}
	return strings.Join(parts, ", ")
}
