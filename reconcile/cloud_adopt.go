package reconcile

import (
	"fmt"
	"slices"
	"strings"
)

// adoptionTargets finds, for each resource that nest.yaml adopts (and that
// nestbot does not own yet), its live id, so that references to it (a
// subnet's VPC, an instance's subnet) compare equal: p.adopting maps the id
// to the desired address. The VPC comes first, so that what it narrows (a
// group name found in several VPCs) is known.
func (p *planner) adoptionTargets(desired []resource) {
	p.adopting = map[string]Address{}
	var raw *adoptIndex
	for _, want := range desired {
		if !want.adopt.Takes() {
			continue
		}
		if raw == nil {
			raw = newAdoptIndex(p.liveResources()) // references unresolved; ids, tags and VPCs are all that is used
		}
		if found := p.narrow(want, raw.matches(want)); len(found) == 1 {
			p.adopting[found[0].id] = want.addr
		}
	}
}

// adoptIndex finds the live resources of a kind that an adopt block names
// — by id, by a Key=Value tag, or (a security group) by group name — in
// the order they were observed, without a pass over every live resource
// for each block: a fleet that adopts each of its instances plans in
// linear time.
type adoptIndex struct {
	res   []resource
	byID  map[string][]int            // "kind id" → positions in res
	byTag map[string]map[string][]int // tag key → "kind value" → positions, made on first use of the key
	group map[string][]int            // security group name → positions
}

func newAdoptIndex(res []resource) *adoptIndex {
	x := &adoptIndex{res: res, byID: map[string][]int{}, byTag: map[string]map[string][]int{}, group: map[string][]int{}}
	for i, r := range res {
		x.byID[r.kind+" "+r.id] = append(x.byID[r.kind+" "+r.id], i)
		if r.kind == KindSecurityGroup && r.groupName != "" {
			x.group[r.groupName] = append(x.group[r.groupName], i)
		}
	}
	return x
}

// matches are the live resources of want's kind that its adopt block names.
func (x *adoptIndex) matches(want resource) []resource {
	a := want.adopt
	var at []int
	if a.ID != "" {
		at = append(at, x.byID[want.kind+" "+a.ID]...)
	}
	if a.Tag != "" {
		key, value, _ := strings.Cut(a.Tag, "=")
		if value == "" { // an empty value also matches a resource without the key
			for i, r := range x.res {
				if r.kind == want.kind && r.tags[key] == "" {
					at = append(at, i)
				}
			}
		} else {
			values, ok := x.byTag[key]
			if !ok {
				values = map[string][]int{}
				for i, r := range x.res {
					if v, ok := r.tags[key]; ok {
						values[r.kind+" "+v] = append(values[r.kind+" "+v], i)
					}
				}
				x.byTag[key] = values
			}
			at = append(at, values[want.kind+" "+value]...)
		}
	}
	if a.GroupName != "" && want.kind == KindSecurityGroup {
		at = append(at, x.group[a.GroupName]...)
	}
	slices.Sort(at)
	var found []resource
	for _, i := range slices.Compact(at) {
		found = append(found, x.res[i])
	}
	return found
}

// narrow picks, among several resources a tag or group name finds, the ones
// that are what nest.yaml describes: of a subnet or VPC, the same CIDR; of
// anything else, those in the fleet's VPC.
func (p *planner) narrow(want resource, found []resource) []resource {
	if len(found) < 2 {
		return found
	}
	var out []resource
	switch want.kind {
	case KindVPC, KindSubnet:
		cidr, _ := want.attr("cidr")
		for _, r := range found {
			if c, _ := r.attr("cidr"); c.value == cidr.value {
				out = append(out, r)
			}
		}
	default:
		if vpc, _ := p.fleetVPC(); vpc != "" {
			for _, r := range found {
				if r.vpc == vpc {
					out = append(out, r)
				}
			}
		}
	}
	if len(out) == 0 {
		return found
	}
	return out
}

// findAdoptee finds the one live resource an adopt block names, and says
// how it was told from others the block also names.
func (p *planner) findAdoptee(want resource) (resource, string, error) {
	a := want.adopt
	by := "tagged " + a.Tag
	if a.GroupName != "" {
		by = "named " + a.GroupName
	}
	if p.adoptees == nil {
		p.adoptees = newAdoptIndex(p.liveList())
	}
	all := p.adoptees.matches(want)
	found := p.narrow(want, all)
	switch {
	case len(found) == 0 && a.ID != "":
		return resource{}, "", fmt.Errorf("no %s with id %s", want.kind, a.ID)
	case len(found) == 0:
		return resource{}, "", fmt.Errorf("no %s %s", want.kind, by)
	case len(found) > 1:
		var ids []string
		for _, r := range found {
			ids = append(ids, r.id+" ("+p.describe(r)+")")
		}
		return resource{}, "", fmt.Errorf("%d resources are %s: %s; adopt one by id instead: adopt: {id: %s}",
			len(found), by, strings.Join(ids, "; "), found[0].id)
	}
	if t := found[0].tags; t[TagFleet] != "" && t[TagFleet] != p.f.Name {
		return resource{}, "", fmt.Errorf("%s belongs to fleet %q", found[0].id, t[TagFleet])
	}
	how := ""
	if len(all) > 1 {
		how = fmt.Sprintf(" (%d resources are %s; %s is the one nest.yaml describes)", len(all), by, found[0].id)
	}
	return found[0], how, nil
}
