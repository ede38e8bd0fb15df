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

func (p *planner) desiredNetwork(a *nest.AWS) []resource {
	fleet := p.f.Name
	var out []resource
	vpcAddr := CloudAddress(KindVPC, "")
	out = append(out, resource{kind: KindVPC, addr: vpcAddr, adopt: a.VPC.Adopt,
		tags:  DesiredTags(fleet, vpcAddr, fleet, ""),
		attrs: []attr{{name: "cidr", value: a.VPC.CIDR, immutable: true}}})
	var public []string
	for _, name := range slices.Sorted(maps.Keys(a.Subnets)) {
		s := a.Subnets[name]
		addr := CloudAddress(KindSubnet, name)
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
		igw := CloudAddress(KindInternetGateway, "")
		out = append(out, resource{kind: KindInternetGateway, addr: igw, adopt: a.InternetGateway.Adopt,
			tags:  DesiredTags(fleet, igw, fleet, ""),
			attrs: []attr{{name: "vpc", value: vpcAddr.String()}}})
		rt := CloudAddress(KindRouteTable, "public")
		out = append(out, resource{kind: KindRouteTable, addr: rt, adopt: a.RouteTable.Adopt,
			tags: DesiredTags(fleet, rt, fleet+"-public", ""),
			attrs: []attr{
				{name: "routes", value: "0.0.0.0/0 -> " + igw.String()},
				{name: "subnets", value: strings.Join(public, ", ")},
			}})
	}
	sg := CloudAddress(KindSecurityGroup, "")
	out = append(out, resource{kind: KindSecurityGroup, addr: sg, adopt: a.SecurityGroup.Adopt,
		tags: DesiredTags(fleet, sg, fleet, ""),
		attrs: []attr{
			{name: "ingress", value: rulesString(desiredRules(a.SecurityGroup.Ingress))},
			{name: "egress", value: rulesString(desiredRules(a.SecurityGroup.Egress))},
		}})
	return out
}

func (p *planner) desiredInstance(h *nest.Host) (resource, bool) {
	a, addr := h.AWS, CloudAddress(KindInstance, h.Name)
	ami, ok := p.resolveAMI(h)
	if !ok {
		return resource{}, false
	}
	r := resource{kind: KindInstance, addr: addr, host: h.Name, adopt: a.Adopt,
		tags: DesiredTags(p.f.Name, addr, h.Name, h.Name),
		attrs: []attr{
			{name: "ami", value: ami, immutable: true},
			{name: "instance_type", value: a.InstanceType},
			{name: "subnet", value: a.Subnet, immutable: true, ref: CloudAddress(KindSubnet, a.Subnet)},
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
			CloudAddress(KindInstance, h.Name), ami.Name, strings.Join(ami.Owners, ", "), strings.Join(ami.Owners, " "), ami.Name)
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
