package reconcile

import (
	"sort"
	"strconv"
	"strings"
)

// liveResources turns the observed cloud into comparable resources, keyed by kind.
func (p *planner) liveResources() []resource {
	c := &p.live.Cloud
	addrOf := func(tags Tags, id string) string {
		if tags[TagFleet] == p.f.Name && tags[TagResource] != "" {
			return tags[TagResource]
		}
		return id
	}
	ids := map[string]string{} // live id → address, for references
	for _, v := range c.VPCs {
		ids[v.ID] = addrOf(v.Tags, v.ID)
	}
	for _, s := range c.Subnets {
		ids[s.ID] = addrOf(s.Tags, s.ID)
	}
	for _, g := range c.InternetGateways {
		ids[g.ID] = addrOf(g.Tags, g.ID)
	}
	// A resource being adopted is referred to by the address it will have.
	for id, addr := range p.adopting {
		ids[id] = addr.String()
	}
	ref := func(id string) string {
		if a, ok := ids[id]; ok {
			return a
		}
		return id
	}
	subnetName := func(id string) string {
		if a, err := ParseAddress(ref(id)); err == nil && a.Is(PlaneCloud, KindSubnet) {
			return a.Name
		}
		return ref(id)
	}
	var out []resource
	for _, v := range c.VPCs {
		out = append(out, resource{kind: KindVPC, id: v.ID, tags: v.Tags, attrs: []attr{{name: "cidr", value: v.CIDR}}})
	}
	for _, s := range c.Subnets {
		out = append(out, resource{kind: KindSubnet, id: s.ID, vpc: s.VPCID, tags: s.Tags, attrs: []attr{
			{name: "cidr", value: s.CIDR}, {name: "zone", value: s.Zone},
			{name: "map_public_ip", value: strconv.FormatBool(s.MapPublicIP)}}})
	}
	for _, g := range c.InternetGateways {
		out = append(out, resource{kind: KindInternetGateway, id: g.ID, vpc: g.VPCID, tags: g.Tags, attrs: []attr{{name: "vpc", value: ref(g.VPCID)}}})
	}
	for _, rt := range c.RouteTables {
		var routes, subnets []string
		for _, r := range rt.Routes {
			if r.Target != "local" {
				routes = append(routes, r.Destination+" -> "+ref(r.Target))
			}
		}
		for _, s := range rt.Associations {
			subnets = append(subnets, subnetName(s))
		}
		sort.Strings(routes)
		sort.Strings(subnets)
		out = append(out, resource{kind: KindRouteTable, id: rt.ID, vpc: rt.VPCID, tags: rt.Tags, main: rt.Main, attrs: []attr{
			{name: "routes", value: strings.Join(routes, ", ")}, {name: "subnets", value: strings.Join(subnets, ", ")}}})
	}
	for _, sg := range c.SecurityGroups {
		out = append(out, resource{kind: KindSecurityGroup, id: sg.ID, vpc: sg.VPCID, tags: sg.Tags, groupName: sg.Name, attrs: []attr{
			{name: "ingress", value: rulesString(sg.Ingress)}, {name: "egress", value: rulesString(sg.Egress)}}})
	}
	for _, in := range c.Instances {
		if in.State == "terminated" || in.State == "shutting-down" {
			continue
		}
		state := in.State
		if state == "pending" {
			state = "running"
		}
		out = append(out, resource{kind: KindInstance, id: in.ID, vpc: c.instanceVPC(in), tags: in.Tags, host: in.Tags[TagHost], state: in.State, attrs: []attr{
			{name: "ami", value: in.ImageID},
			{name: "instance_type", value: in.Type},
			{name: "subnet", value: subnetName(in.SubnetID)},
			{name: "instance_profile", value: in.InstanceProfile},
			{name: "key_name", value: in.KeyName},
			{name: "root_volume.size_gb", value: strconv.Itoa(in.RootVolume.SizeGB)},
			{name: "root_volume.type", value: in.RootVolume.Type},
			{name: "root_volume.encrypted", value: strconv.FormatBool(in.RootVolume.Encrypted)},
			{name: "state", value: state},
			{name: "user_data", value: in.Tags[TagUserData]},
		}})
	}
	return out
}

// liveList returns the observed cloud as resources, computed once per plan.
func (p *planner) liveList() []resource {
	if p.liveRes == nil {
		p.liveRes = p.liveResources()
		p.liveByAddr = map[string][]resource{}
		for _, r := range p.liveRes {
			if p.owned(r) {
				k := r.kind + " " + r.tags[TagResource]
				p.liveByAddr[k] = append(p.liveByAddr[k], r)
			}
		}
	}
	return p.liveRes
}

// liveIndex maps "kind address" to the owned live resources that claim it.
func (p *planner) liveIndex() map[string][]resource {
	p.liveList()
	return p.liveByAddr
}

// managedInstance returns the first live instance, in observed order, that
// is not going away and carries the fleet's tags for host.
func (p *planner) managedInstance(host string) *Instance {
	if p.instances == nil {
		p.instances = map[string]*Instance{}
		for i := range p.live.Cloud.Instances {
			in := &p.live.Cloud.Instances[i]
			if in.State == "terminated" || in.State == "shutting-down" || in.Tags[TagFleet] != p.f.Name {
				continue
			}
			if addr := in.Tags[TagResource]; p.instances[addr] == nil {
				p.instances[addr] = in
			}
		}
	}
	return p.instances[CloudAddress(KindInstance, host).String()]
}

func (p *planner) owned(r resource) bool {
	return r.tags[TagFleet] == p.f.Name && r.tags[TagManaged] == "true" && r.tags[TagResource] != ""
}

func (p *planner) liveInstance(id string) *Instance {
	for i := range p.live.Cloud.Instances {
		if p.live.Cloud.Instances[i].ID == id {
			return &p.live.Cloud.Instances[i]
		}
	}
	return nil
}
