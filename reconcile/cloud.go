package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path"
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
	ignore    bool   // shown on create, never compared
	ref       string // the address the value names, if any
}

// resource is one cloud resource in a comparable shape.
type resource struct {
	kind  string
	addr  string
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

// Address returns the plan address of a cloud resource.
func Address(kind, name string) string {
	if name == "" {
		return "aws." + kind
	}
	return "aws." + kind + "." + name
}

// DesiredTags are the tags nestbot puts on a resource it owns.
func DesiredTags(fleet, addr, name, host string) Tags {
	t := Tags{TagFleet: fleet, TagManaged: "true", TagResource: addr, "Name": name}
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
	p.unresolved = map[string]bool{}
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

func (p *planner) desiredNetwork(a *nest.AWS) []resource {
	fleet := p.f.Name
	var out []resource
	vpcAddr := Address(KindVPC, "")
	out = append(out, resource{kind: KindVPC, addr: vpcAddr, adopt: a.VPC.Adopt,
		tags:  DesiredTags(fleet, vpcAddr, fleet, ""),
		attrs: []attr{{name: "cidr", value: a.VPC.CIDR, immutable: true}}})
	var public []string
	for _, name := range slices.Sorted(maps.Keys(a.Subnets)) {
		s := a.Subnets[name]
		addr := Address(KindSubnet, name)
		out = append(out, resource{kind: KindSubnet, addr: addr, adopt: s.Adopt,
			tags: DesiredTags(fleet, addr, fleet+"-"+name, ""),
			attrs: []attr{
				{name: "cidr", value: s.CIDR, immutable: true},
				{name: "zone", value: s.Zone, immutable: true},
				{name: "map_public_ip", value: strconv.FormatBool(s.Public)},
			}})
		if s.Public {
			public = append(public, name)
		}
	}
	if len(public) > 0 {
		igw := Address(KindInternetGateway, "")
		out = append(out, resource{kind: KindInternetGateway, addr: igw, adopt: a.InternetGateway.Adopt,
			tags:  DesiredTags(fleet, igw, fleet, ""),
			attrs: []attr{{name: "vpc", value: vpcAddr}}})
		rt := Address(KindRouteTable, "public")
		out = append(out, resource{kind: KindRouteTable, addr: rt, adopt: a.RouteTable.Adopt,
			tags: DesiredTags(fleet, rt, fleet+"-public", ""),
			attrs: []attr{
				{name: "routes", value: "0.0.0.0/0 -> " + igw},
				{name: "subnets", value: strings.Join(public, ", ")},
			}})
	}
	sg := Address(KindSecurityGroup, "")
	out = append(out, resource{kind: KindSecurityGroup, addr: sg, adopt: a.SecurityGroup.Adopt,
		tags: DesiredTags(fleet, sg, fleet, ""),
		attrs: []attr{
			{name: "ingress", value: rulesString(desiredRules(a.SecurityGroup.Ingress))},
			{name: "egress", value: rulesString(desiredRules(a.SecurityGroup.Egress))},
		}})
	return out
}

func (p *planner) desiredInstance(h *nest.Host) (resource, bool) {
	a, addr := h.AWS, Address(KindInstance, h.Name)
	ami, ok := p.resolveAMI(h)
	if !ok {
		return resource{}, false
	}
	r := resource{kind: KindInstance, addr: addr, host: h.Name, adopt: a.Adopt,
		tags: DesiredTags(p.f.Name, addr, h.Name, h.Name),
		attrs: []attr{
			{name: "ami", value: ami, immutable: true},
			{name: "instance_type", value: a.InstanceType},
			{name: "subnet", value: a.Subnet, immutable: true, ref: Address(KindSubnet, a.Subnet)},
			{name: "instance_profile", value: a.InstanceProfile},
			{name: "key_name", value: a.KeyName, immutable: true},
			{name: "root_volume.size_gb", value: strconv.Itoa(a.RootVolume.SizeGB)},
			{name: "root_volume.type", value: a.RootVolume.Type},
			{name: "root_volume.encrypted", value: strconv.FormatBool(*a.RootVolume.Encrypted), immutable: true},
			{name: "state", value: "running"},
			{name: "user_data", value: UserDataHash(p.f, h), sensitive: true,
				immutable: p.f.AWS.UserDataChanges == "replace", ignore: p.f.AWS.UserDataChanges != "replace"},
		}}
	r.tags[TagUserData] = UserDataHash(p.f, h)
	return r, true
}

// resolveAMI finds the image a host asks for: an exact id, or the most
// recent available image whose name matches and whose owner is allowed,
// as Terraform's aws_ami data source does.
func (p *planner) resolveAMI(h *nest.Host) (string, bool) {
	ami := h.AWS.AMI
	if ami.ID != "" {
		return ami.ID, true
	}
	var best *Image
	for i := range p.live.Cloud.Images {
		im := &p.live.Cloud.Images[i]
		if im.State != "available" || !ownerAllowed(im.OwnerID, ami.Owners, p.live.Cloud.AccountID) {
			continue
		}
		if ok, _ := path.Match(ami.Name, im.Name); !ok {
			continue
		}
		if best == nil || im.CreationDate.After(best.CreationDate) || im.CreationDate.Equal(best.CreationDate) && im.ID > best.ID {
			best = im
		}
	}
	if best == nil {
		p.errorf("%s: no available AMI named %q owned by %s; check the name (aws ec2 describe-images --owners %s --filters Name=name,Values=%q) or pin ami.id",
			Address(KindInstance, h.Name), ami.Name, strings.Join(ami.Owners, ", "), strings.Join(ami.Owners, " "), ami.Name)
		return "", false
	}
	return best.ID, true
}

func ownerAllowed(owner string, owners []string, account string) bool {
	if len(owners) == 0 {
		return true
	}
	for _, o := range owners {
		if o == owner || o == "self" && account != "" && owner == account {
			return true
		}
	}
	return false
}

// UserDataHash identifies the user-data template of a host (without the
// auth key, which is never hashed or stored), so a change can be detected
// from the instance's tag alone.
func UserDataHash(f *nest.Fleet, h *nest.Host) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "hostname=%s\ncontrol=%s\ntags=%s\n", h.Name, f.Tailnet.ControlURL, strings.Join(f.Tailnet.Tags, ","))
	if h.AWS.UserData != nil {
		sum.Write([]byte(*h.AWS.UserData))
	}
	return hex.EncodeToString(sum.Sum(nil))[:16]
}

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
		ids[id] = addr
	}
	ref := func(id string) string {
		if a, ok := ids[id]; ok {
			return a
		}
		return id
	}
	subnetName := func(id string) string {
		return strings.TrimPrefix(ref(id), Address(KindSubnet, "")+".")
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
	return p.instances[Address(KindInstance, host)]
}

func (p *planner) owned(r resource) bool {
	return r.tags[TagFleet] == p.f.Name && r.tags[TagManaged] == "true" && r.tags[TagResource] != ""
}

// reconcileResource plans one desired resource. It reports false when its
// live counterpart could not be told (an error says why), and the twin when
// creating it would put one beside untagged lookalikes.
func (p *planner) reconcileResource(want resource) (bool, *twin) {
	claims := p.liveIndex()[want.kind+" "+want.addr]
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

// adoptionTargets finds, for each resource that nest.yaml adopts (and that
// nestbot does not own yet), its live id, so that references to it (a
// subnet's VPC, an instance's subnet) compare equal: p.adopting maps the id
// to the desired address. The VPC comes first, so that what it narrows (a
// group name found in several VPCs) is known.
func (p *planner) adoptionTargets(desired []resource) {
	p.adopting = map[string]string{}
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
		want[r.addr] = true
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
			if err := p.otherVPC(r, nil); err != nil {
				p.errorf("%s: no longer in nest.yaml, but %v; nestbot never deletes a resource of another VPC: delete it by hand, or remove its nest:* tags (%s)",
					r.tags[TagResource], err, untagCommand(r.id))
				continue
			}
			p.add(Step{Plane: PlaneCloud, Action: ActionDelete, Address: r.tags[TagResource], ID: r.id,
				Reason: "no longer in nest.yaml"})
		}
	}
}

// fleetVPC returns the live id of the fleet's VPC: the one nestbot owns, or
// the one nest.yaml adopts; "" when this plan creates it. known is false
// when that cannot be told (several VPCs claim it, or its adoption target
// was not found: both are errors of their own).
func (p *planner) fleetVPC() (id string, known bool) {
	addr := Address(KindVPC, "")
	switch claims := p.liveIndex()[KindVPC+" "+addr]; len(claims) {
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

func (p *planner) liveInstance(id string) *Instance {
	for i := range p.live.Cloud.Instances {
		if p.live.Cloud.Instances[i].ID == id {
			return &p.live.Cloud.Instances[i]
		}
	}
	return nil
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

func desiredRules(rules []nest.Rule) []SecurityRule {
	out := make([]SecurityRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, SecurityRule{Protocol: r.Protocol, FromPort: r.Ports.From, ToPort: r.Ports.To, CIDRs: r.CIDRs})
	}
	return out
}

// rulesString spells rules canonically, so desired and live compare as text.
func rulesString(rules []SecurityRule) string {
	if len(rules) == 0 {
		return "(none)"
	}
	var out []string
	for _, r := range rules {
		proto := r.Protocol
		if proto == "-1" {
			proto = "all"
		}
		ports := ""
		if proto != "all" && proto != "icmp" {
			ports = " " + strconv.Itoa(r.FromPort)
			if r.ToPort != r.FromPort {
				ports += "-" + strconv.Itoa(r.ToPort)
			}
		}
		cidrs := slices.Clone(r.CIDRs)
		sort.Strings(cidrs)
		for _, c := range cidrs {
			out = append(out, proto+ports+" "+c)
		}
	}
	sort.Strings(out)
	return strings.Join(slices.Compact(out), ", ")
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
