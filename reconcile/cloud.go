package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

// Cloud resource kinds, as they appear in addresses (aws.<kind>.<name>).
const (
	KindVPC             = "vpc"
	KindSubnet          = "subnet"
	KindInternetGateway = "internet_gateway"
	KindRouteTable      = "route_table"
	KindSecurityGroup   = "security_group"
	KindInstance        = "instance"
)

// attr is one attribute of a cloud resource, desired or observed.
type attr struct {
	name      string
	value     string
	immutable bool // a change forces replacement
	sensitive bool
	ignore    bool    // shown on create, never compared
	ref       Address // the address the value names, if any
}

// resource is one cloud resource in a comparable shape.
type resource struct {
	kind  string
	addr  Address
	id    string // live only
	attrs []attr
	tags  Tags
	adopt *nest.Adopt // desired only
	host  string      // instances: the host
	state string      // instances: live state
	// vpc is, live only, the VPC a resource is in (an internet gateway: the
	// one it is attached to, "" when detached).
	vpc string
	// groupName is a live security group's name; main marks a VPC's main
	// route table.
	groupName string
	main      bool
}

func (r *resource) attr(name string) (attr, bool) {
	for _, a := range r.attrs {
		if a.name == name {
			return a, true
		}
	}
	return attr{}, false
}

// DesiredTags are the tags nestbot puts on a resource it owns.
func DesiredTags(fleet string, addr Address, name, host string) Tags {
	t := Tags{TagFleet: fleet, TagManaged: "true", TagResource: addr.String(), "Name": name}
	if host != "" {
		t[TagHost] = host
	}
	return t
}

func (p *planner) cloud() {
	a := p.f.AWS
	if a == nil {
		p.deleteUndesired(nil)
		return
	}
	desired := p.desiredNetwork(a)
	for _, name := range p.hostNames() {
		if h := p.f.Hosts[name]; h.AWS != nil {
			if r, ok := p.desiredInstance(h); ok {
				desired = append(desired, r)
			}
		}
	}
	// An adopted resource keeps the Name it had (Terraform's, say): nestbot
	// names only what it creates, and adopt: {tag: Name=…} goes on matching.
	for _, r := range desired {
		if r.adopt.Takes() {
			delete(r.tags, "Name")
		}
	}
	p.adoptionTargets(desired)
	p.unresolved = map[Address]bool{}
	var twins []twin
	for _, r := range desired {
		ok, t := p.reconcileResource(r)
		if !ok {
			p.unresolved[r.addr] = true
		}
		if t != nil {
			twins = append(twins, *t)
		}
	}
	if len(twins) > 0 {
		p.errs = append(p.errs, p.twinsError(twins))
	}
	p.deleteUndesired(desired)
}

// reconcileResource plans one desired resource. It reports false when its
// live counterpart could not be told (an error says why), and the twin when
// creating it would put one beside untagged lookalikes.
func (p *planner) reconcileResource(want resource) (bool, *twin) {
	claims := p.liveIndex()[want.kind+" "+want.addr.String()]
	if len(claims) > 1 {
		var ids []string
		for _, c := range claims {
			ids = append(ids, c.id)
		}
		p.errorf("%s: %d resources carry its tags (%s); remove the tags from all but one, or delete the extras by hand", want.addr, len(claims), strings.Join(ids, ", "))
		return false, nil
	}
	if len(claims) == 1 {
		if err := p.otherVPC(claims[0], nil); err != nil {
			p.errorf("%s: %v, yet carries this fleet's tags; nestbot never changes, replaces or deletes a resource of another VPC: remove its nest:* tags (%s)",
				want.addr, err, untagCommand(claims[0].id))
			return false, nil
		}
		p.compare(want, claims[0], false)
		return true, nil
	}
	if want.adopt.Takes() {
		target, how, err := p.findAdoptee(want)
		if err != nil {
			p.errorf("%s: adopt: %v", want.addr, err)
			return false, nil
		}
		if err := p.otherVPC(target, want.adopt); err != nil {
			p.errorf("%s: adopt: %v; %s", want.addr, err, p.otherVPCHint(target))
			return false, nil
		}
		var changes []Change
		for _, k := range slices.Sorted(maps.Keys(want.tags)) {
			if target.tags[k] != want.tags[k] && k != TagUserData {
				changes = append(changes, Change{Attr: "tags." + k, Before: target.tags[k], After: want.tags[k]})
			}
		}
		p.add(Step{Plane: PlaneCloud, Action: ActionAdopt, Address: want.addr, ID: target.id, Changes: changes,
			Reason: "takes over " + target.id + how + "; tags are added, nothing is created"})
		p.compare(want, target, true)
		return true, nil
	}
	if want.adopt == nil { // adopt: none creates it whatever looks like it
		if found := p.lookalikes(want); len(found) > 0 {
			return false, &twin{want: want, found: found}
		}
	}
	var changes []Change
	for _, a := range want.attrs {
		c := Change{Attr: a.name, After: a.value, Sensitive: a.sensitive}
		if a.sensitive {
			c.After = ""
		}
		if a.name == "state" || a.value == "" && !a.sensitive {
			continue
		}
		changes = append(changes, c)
	}
	p.add(Step{Plane: PlaneCloud, Action: ActionCreate, Address: want.addr, Changes: changes})
	if want.kind == KindInstance {
		p.created[want.host] = true
	}
	return true, nil
}

// compare diffs one desired resource against its live counterpart.
func (p *planner) compare(want, have resource, adopting bool) {
	var changes []Change
	replace, reasons := false, []string(nil)
	for _, a := range want.attrs {
		h, _ := have.attr(a.name)
		if a.ignore || h.value == a.value || p.unresolved[a.ref] {
			continue
		}
		if a.name == "state" {
			if h.value == "stopped" || h.value == "stopping" {
				changes = append(changes, Change{Attr: "state", Before: h.value, After: "running"})
				reasons = append(reasons, "instance is "+h.value+": start it")
			}
			continue
		}
		c := Change{Attr: a.name, Before: h.value, After: a.value, Sensitive: a.sensitive}
		forces := a.immutable
		if a.name == "root_volume.size_gb" {
			before, _ := strconv.Atoi(h.value)
			after, _ := strconv.Atoi(a.value)
			forces = after < before // EBS volumes grow in place but never shrink
		}
		if a.sensitive {
			c.Before, c.After = "", ""
		}
		if forces {
			c.ForcesReplace = true
			replace = true
			reasons = append(reasons, a.name+" changes, forces replacement")
		} else if a.name == "instance_type" {
			reasons = append(reasons, "instance_type changes: stop → modify → start")
		}
		changes = append(changes, c)
	}
	if !adopting {
		for _, k := range slices.Sorted(maps.Keys(want.tags)) {
			if have.tags[k] != want.tags[k] && (k != TagUserData || !p.userDataIgnored()) {
				changes = append(changes, Change{Attr: "tags." + k, Before: have.tags[k], After: want.tags[k]})
			}
		}
	}
	if len(changes) == 0 {
		return
	}
	step := Step{Plane: PlaneCloud, Action: ActionUpdate, Address: want.addr, ID: have.id, Changes: changes}
	if replace {
		step.Action = ActionReplace
		if want.kind == KindInstance {
			p.created[want.host] = true
		}
	}
	step.Reason = strings.Join(uniq(reasons), "; ")
	if step.Reason == "" && adopting {
		step.Reason = "differs from nest.yaml after adoption"
	}
	p.add(step)
}

func (p *planner) userDataIgnored() bool {
	return p.f.AWS == nil || p.f.AWS.UserDataChanges != "replace"
}

// deleteUndesired deletes what nestbot owns and nest.yaml no longer names:
// instances first, then the network in reverse dependency order.
func (p *planner) deleteUndesired(desired []resource) {
	want := map[string]bool{}
	for _, r := range desired {
		want[r.addr.String()] = true
	}
	order := []string{KindInstance, KindSecurityGroup, KindRouteTable, KindInternetGateway, KindSubnet, KindVPC}
	live := p.liveList()
	for _, kind := range order {
		var doomed []resource
		for _, r := range live {
			if r.kind == kind && p.owned(r) && !want[r.tags[TagResource]] {
				doomed = append(doomed, r)
			}
		}
		sort.Slice(doomed, func(i, j int) bool { return doomed[i].tags[TagResource] < doomed[j].tags[TagResource] })
		for _, r := range doomed {
			addr, err := ParseAddress(r.tags[TagResource])
			if err == nil && !addr.Is(PlaneCloud, r.kind) {
				err = fmt.Errorf("%s is not the address of a %s", addr, r.kind)
			}
			if err != nil {
				p.errorf("%s: its tag %s was not written by nestbot: %v; remove its nest:* tags (%s)", r.id, TagResource, err, untagCommand(r.id))
				continue
			}
			if err := p.otherVPC(r, nil); err != nil {
				p.errorf("%s: no longer in nest.yaml, but %v; nestbot never deletes a resource of another VPC: delete it by hand, or remove its nest:* tags (%s)",
					addr, err, untagCommand(r.id))
				continue
			}
			p.add(Step{Plane: PlaneCloud, Action: ActionDelete, Address: addr, ID: r.id,
				Reason: "no longer in nest.yaml"})
		}
	}
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
