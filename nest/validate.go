package nest

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
)

var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9-]+$`)
	tagRE          = regexp.MustCompile(`^tag:[A-Za-z0-9][A-Za-z0-9-]*$`)
	ageRecipientRE = regexp.MustCompile(`^age1[02-9ac-hj-np-z]{58}$`)
	branchRE       = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
)

// checker collects semantic errors, placing each at the position of its path.
type checker struct {
	file string
	pos  map[string]Pos
	errs Errors
}

func (c *checker) at(p string) Pos {
	for {
		if pos, ok := c.pos[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return c.pos[""]
		}
		p = p[:i]
	}
}

func (c *checker) errorf(p, hint, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Pos: c.at(p), Path: p, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// errorAtKey is errorf placed at a map entry's name rather than its value.
func (c *checker) errorAtKey(p, hint, format string, args ...any) {
	pos, ok := c.pos[p+"#key"]
	if !ok {
		pos = c.at(p)
	}
	c.errs = append(c.errs, &Error{File: c.file, Pos: pos, Path: p, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (c *checker) present(p string) bool {
	_, ok := c.pos[p]
	return ok
}

func validate(file string, f *Fleet, pos map[string]Pos) Errors {
	c := &checker{file: file, pos: pos}
	if f.Version != 1 && c.present("version") {
		c.errorf("version", "set version: 1", "unsupported version %d; this nestbot reads version 1", f.Version)
	}
	if f.Name != "" && !dnsLabelRE.MatchString(f.Name) {
		c.errorf("name", "use lower-case letters, digits and dashes, at most 63", "%q is not a valid name", f.Name)
	}
	if f.Flake != "" {
		c.relPath("flake", f.Flake)
	}
	if f.AWS != nil {
		c.aws(f.AWS)
	}
	c.tailnet(&f.Tailnet)
	c.hosts(f)
	if f.PKI != nil {
		c.pki(f, f.PKI)
	}
	c.rollout(f)
	c.github(&f.GitHub)
	return c.errs
}

func (c *checker) relPath(p, v string) {
	clean := path.Clean(v)
	if path.IsAbs(v) || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(v, "\\") {
		c.errorf(p, "write a path relative to the repository root, without ..", "%q is not a clean relative path", v)
	}
}

func (c *checker) cidr(p, v string) (netip.Prefix, bool) {
	pfx, err := netip.ParsePrefix(v)
	if err != nil {
		c.errorf(p, "write an IPv4 network as address/bits, e.g. 10.20.0.0/16", "%s is not a valid CIDR", v)
		return netip.Prefix{}, false
	}
	if !pfx.Addr().Is4() {
		c.errorf(p, "", "%s: only IPv4 CIDRs are supported here", v)
		return netip.Prefix{}, false
	}
	if pfx.Masked() != pfx {
		c.errorf(p, fmt.Sprintf("did you mean %s?", pfx.Masked()), "%s has host bits set", v)
		return netip.Prefix{}, false
	}
	return pfx, true
}

func (c *checker) adopt(p string, a *Adopt, idPrefix string) {
	if a == nil || a.None {
		return
	}
	named := 0
	for _, v := range []string{a.ID, a.Tag, a.GroupName} {
		if v != "" {
			named++
		}
	}
	hint := "give id: " + idPrefix + "… or tag: Key=Value"
	if idPrefix == "sg-" {
		hint += " or group_name: NAME"
	}
	switch {
	case named == 0:
		c.errorf(p, hint+"; or write adopt: none to create it anyway", "adopt names nothing")
	case named > 1:
		c.errorf(p, "keep one of them", "adopt names the resource more than one way (id, tag, group_name)")
	case a.GroupName != "" && idPrefix != "sg-":
		c.errorf(p+".group_name", "adopt it by id: or tag: instead", "group_name adopts only a security group")
	case a.ID != "" && !strings.HasPrefix(a.ID, idPrefix):
		c.errorf(p+".id", "", "%q is not an id of this kind (%s…)", a.ID, idPrefix)
	case a.Tag != "":
		if k, _, ok := strings.Cut(a.Tag, "="); !ok || k == "" {
			c.errorf(p+".tag", "write Key=Value, e.g. Name=ducksnest-vpc", "%q is not a tag", a.Tag)
		}
	}
}

func (c *checker) aws(a *AWS) {
	if a.Region != "" && !regionRE.MatchString(a.Region) {
		c.errorf("aws.region", "e.g. ap-northeast-2 or us-east-1", "%q is not an AWS region", a.Region)
	}
	vpc, vpcOK := netip.Prefix{}, false
	if a.VPC.CIDR != "" {
		if vpc, vpcOK = c.cidr("aws.vpc.cidr", a.VPC.CIDR); vpcOK && (vpc.Bits() < 16 || vpc.Bits() > 28) {
			c.errorf("aws.vpc.cidr", "", "%s: a VPC's prefix must be between /16 and /28", a.VPC.CIDR)
		}
	}
	c.adopt("aws.vpc.adopt", a.VPC.Adopt, "vpc-")
	c.adopt("aws.internet_gateway.adopt", a.InternetGateway.Adopt, "igw-")
	c.adopt("aws.route_table.adopt", a.RouteTable.Adopt, "rtb-")
	c.adopt("aws.security_group.adopt", a.SecurityGroup.Adopt, "sg-")

	type placed struct {
		name string
		pfx  netip.Prefix
	}
	var nets []placed
	for _, name := range slices.Sorted(maps.Keys(a.Subnets)) {
		s, p := a.Subnets[name], "aws.subnets."+name
		if !dnsLabelRE.MatchString(name) {
			c.errorAtKey(p, "use lower-case letters, digits and dashes", "%q is not a valid subnet name", name)
		}
		c.adopt(p+".adopt", s.Adopt, "subnet-")
		if s.Zone != "" && a.Region != "" && !strings.HasPrefix(s.Zone, a.Region) {
			c.errorf(p+".zone", fmt.Sprintf("zones of %s look like %sa", a.Region, a.Region), "zone %q is not in region %s", s.Zone, a.Region)
		}
		if s.CIDR == "" {
			continue
		}
		pfx, ok := c.cidr(p+".cidr", s.CIDR)
		if !ok {
			continue
		}
		if vpcOK && (!vpc.Contains(pfx.Addr()) || pfx.Bits() < vpc.Bits()) {
			c.errorf(p+".cidr", "pick a block inside "+vpc.String(), "%s is outside the VPC %s", s.CIDR, vpc)
		}
		if pfx.Bits() < 16 || pfx.Bits() > 28 {
			c.errorf(p+".cidr", "", "%s: a subnet's prefix must be between /16 and /28", s.CIDR)
		}
		for _, o := range nets {
			if o.pfx.Overlaps(pfx) {
				c.errorf(p+".cidr", "subnets of one VPC must not overlap", "%s overlaps subnet %s (%s)", s.CIDR, o.name, o.pfx)
			}
		}
		nets = append(nets, placed{name, pfx})
	}
	sg := &a.SecurityGroup
	for i, r := range sg.Ingress {
		c.rule(fmt.Sprintf("aws.security_group.ingress[%d]", i), r)
	}
	for i, r := range sg.Egress {
		c.rule(fmt.Sprintf("aws.security_group.egress[%d]", i), r)
	}
}

func (c *checker) rule(p string, r Rule) {
	if r.Protocol == "all" && !r.Ports.IsZero() {
		c.errorf(p+".ports", "remove ports, or pick tcp or udp", "protocol all takes no ports")
	}
	if (r.Protocol == "tcp" || r.Protocol == "udp") && r.Ports.IsZero() {
		c.errorf(p, "add ports: 443 or ports: 1024-65535", "protocol %s needs ports", r.Protocol)
	}
	for i, cidr := range r.CIDRs {
		c.cidr(fmt.Sprintf("%s.cidrs[%d]", p, i), cidr)
	}
}

func (c *checker) tailnet(t *Tailnet) {
	if t.Domain != "" && !validDNSName(t.Domain) {
		c.errorf("tailnet.domain", "e.g. ducksnest.ts.net", "%q is not a DNS name", t.Domain)
	}
	seen := map[string]bool{}
	for i, tag := range t.Tags {
		p := fmt.Sprintf("tailnet.tags[%d]", i)
		if !tagRE.MatchString(tag) {
			c.errorf(p, "ACL tags are written tag:name, e.g. tag:nest", "%q is not a tag", tag)
		}
		if seen[tag] {
			c.errorf(p, "", "tag %q is listed twice", tag)
		}
		seen[tag] = true
	}
	c.secretRef("tailnet.auth_key", t.AuthKey)
	if t.OAuth != nil {
		c.secretRef("tailnet.oauth.client_secret", &t.OAuth.ClientSecret)
	}
	if t.ControlURL != "" {
		u, err := url.Parse(t.ControlURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.errorf("tailnet.control_url", "e.g. https://headscale.example.com", "%q is not an http(s) URL", t.ControlURL)
		}
	}
}

func (c *checker) secretRef(p string, r *SecretRef) {
	if r == nil {
		return
	}
	switch {
	case r.Env == "" && r.File == "":
		c.errorf(p, "give env: VARIABLE or file: path", "names no source for the secret")
	case r.Env != "" && r.File != "":
		c.errorf(p, "keep one of them", "gives both env and file")
	}
}

func (c *checker) hosts(f *Fleet) {
	if len(f.Hosts) == 0 && c.present("hosts") {
		c.errorf("hosts", "add at least one host", "no hosts")
	}
	known := KnownRoles()
	for _, name := range slices.Sorted(maps.Keys(f.Hosts)) {
		h, p := f.Hosts[name], "hosts."+name
		if !dnsLabelRE.MatchString(name) {
			c.errorAtKey(p, "a host name is a DNS label: lower-case letters, digits and dashes, at most 63", "%q is not a valid host name", name)
		}
		if len(h.Roles) == 0 && c.present(p+".roles") {
			c.errorf(p+".roles", "use one or more of: "+strings.Join(known, ", "), "a host needs at least one role")
		}
		seen := map[string]bool{}
		for i, r := range h.Roles {
			rp := fmt.Sprintf("%s.roles[%d]", p, i)
			if !slices.Contains(known, r) {
				c.errorf(rp, "use one of: "+strings.Join(known, ", "), "role %q does not exist", r)
			}
			if seen[r] {
				c.errorf(rp, "", "role %q is listed twice", r)
			}
			seen[r] = true
		}
		for i, a := range h.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				c.errorf(fmt.Sprintf("%s.addresses[%d]", p, i), "", "%q is not an IP address", a)
			}
		}
		for i, g := range h.Paths {
			if !validGlob(g) {
				c.errorf(fmt.Sprintf("%s.paths[%d]", p, i), "use a relative path with * and ** wildcards", "%q is not a valid path pattern", g)
			}
		}
		if h.HostName != "" && !dnsLabelRE.MatchString(h.HostName) {
			c.errorf(p+".host_name", "networking.hostName is a DNS label: lower-case letters, digits and dashes, at most 63", "%q is not a valid host name", h.HostName)
		}
		if h.AWS != nil {
			c.hostAWS(f, p+".aws", h.AWS)
		}
	}
	// Two hosts with one networking.hostName would share a certificate directory.
	byHostName := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(f.Hosts)) {
		hn := f.Hosts[name].NetworkingHostName()
		if other, ok := byHostName[hn]; ok {
			if f.Hosts[name].HostName == "" && f.Hosts[other].HostName != "" {
				name, other = other, name // point at the host_name that takes another's name
			}
			p := "hosts." + name
			if f.Hosts[name].HostName != "" {
				p += ".host_name"
			}
			c.errorf(p, "give each host its own networking.hostName", "host %s has the host name %q of host %s: they would share derived/%s/", name, hn, other, hn)
			continue
		}
		byHostName[hn] = name
	}
}

func (c *checker) hostAWS(f *Fleet, p string, a *HostAWS) {
	if f.AWS == nil {
		c.errorf(p, "add a top-level aws: block with the region, VPC and subnets", "an EC2 host needs the aws section")
	}
	if a.InstanceType != "" && !instanceTypeRE.MatchString(a.InstanceType) {
		c.errorf(p+".instance_type", "e.g. t3.medium", "%q is not an instance type", a.InstanceType)
	}
	if a.Subnet != "" && f.AWS != nil {
		if _, ok := f.AWS.Subnets[a.Subnet]; !ok {
			c.errorf(p+".subnet", "use one of: "+strings.Join(slices.Sorted(maps.Keys(f.AWS.Subnets)), ", "), "subnet %q is not defined under aws.subnets", a.Subnet)
		}
	}
	switch ami := a.AMI; {
	case ami.ID == "" && ami.Name == "" && c.present(p+".ami"):
		c.errorf(p+".ami", "give name: (most recent match wins) or id: ami-…", "ami names no image")
	case ami.ID != "" && ami.Name != "":
		c.errorf(p+".ami", "keep one of them", "ami gives both id and name")
	case ami.ID != "" && !strings.HasPrefix(ami.ID, "ami-"):
		c.errorf(p+".ami.id", "", "%q is not an image id (ami-…)", ami.ID)
	case ami.ID != "" && len(ami.Owners) > 0:
		c.errorf(p+".ami.owners", "owners only narrow a search by name", "owners given with an exact id")
	}
	if v := a.RootVolume; c.present(p+".root_volume.size_gb") && (v.SizeGB < 1 || v.SizeGB > 16384) {
		c.errorf(p+".root_volume.size_gb", "", "%d GiB is not a valid volume size (1-16384)", v.SizeGB)
	}
	c.adopt(p+".adopt", a.Adopt, "i-")
}

func (c *checker) pki(f *Fleet, k *PKI) {
	if k.Dir != "" {
		c.relPath("pki.dir", k.Dir)
	}
	leaf := k.LeafValidity.Duration
	if leaf == 0 {
		leaf = DefaultLeafValidity
	}
	ca := k.CAValidity.Duration
	if ca == 0 {
		ca = DefaultCAValidity
		if k.Layout != LayoutKubeadm { // k8nix, or a tree that may turn out to be K8Nix's
			ca = DefaultK8NixCAValidity
		}
	}
	if k.RenewBefore.Duration >= leaf {
		c.errorf("pki.renew_before", "make it shorter than leaf_validity, e.g. 720h", "%s is not shorter than leaf_validity (%s): every certificate would renew on every run", k.RenewBefore, Duration{leaf})
	}
	if leaf > ca {
		c.errorf("pki.leaf_validity", "a leaf cannot outlive its CA; make it shorter than ca_validity", "%s is longer than ca_validity (%s)", Duration{leaf}, Duration{ca})
	}
	if k.ServiceCIDR != "" {
		c.cidr("pki.service_cidr", k.ServiceCIDR)
	}
	if k.ClusterDomain != "" && !validDNSName(k.ClusterDomain) {
		c.errorf("pki.cluster_domain", "e.g. cluster.local", "%q is not a DNS name", k.ClusterDomain)
	}
	for i, s := range k.ExtraSANs {
		if _, err := netip.ParseAddr(s); err != nil && !validDNSName(strings.TrimPrefix(s, "*.")) {
			c.errorf(fmt.Sprintf("pki.extra_sans[%d]", i), "", "%q is neither a DNS name nor an IP address", s)
		}
	}
	if len(k.Admins) == 0 && c.present("pki.admins") {
		c.errorf("pki.admins", "add your age public key (age1…) or SSH ed25519 key, or nobody can recover the keys", "no admin recipients")
	}
	for i, r := range k.Admins {
		if err := CheckRecipient(r); err != nil {
			c.errorf(fmt.Sprintf("pki.admins[%d]", i), "an age recipient is age1… (age-keygen -y) or ssh-ed25519 AAAA…", "%v", err)
		}
	}
	for i, port := range k.ServingPorts {
		if port < 1 || port > 65535 {
			c.errorf(fmt.Sprintf("pki.serving_ports[%d]", i), "", "%d is not a port", port)
		}
	}
	if k.Organization != "" && strings.ContainsAny(k.Organization, "\n\r\t") {
		c.errorf("pki.organization", "", "%q holds a control character", k.Organization)
	}
	seenRemove := map[string]bool{}
	for i, r := range k.Remove {
		p := fmt.Sprintf("pki.remove[%d]", i)
		clean := strings.TrimSuffix(r, "/")
		switch {
		case !fs.ValidPath(clean) || clean == ".":
			c.errorf(p, "a path relative to pki.dir, e.g. derived/old-host/ or derived/old-host/k8s-kubelet.crt", "%q is not a clean relative path", r)
		case !strings.HasPrefix(clean, "ca/") && !strings.HasPrefix(clean, "derived/"):
			c.errorf(p, "name a file or directory under ca/ or derived/", "%q is not under ca/ or derived/", r)
		case !strings.HasSuffix(r, "/") && !strings.HasSuffix(r, ".crt") && !strings.HasSuffix(r, ".pub"):
			c.errorf(p, "name a certificate (….crt; its .key.age goes with it) or a directory ending in /", "%q is neither a certificate nor a directory", r)
		case seenRemove[r]:
			c.errorf(p, "", "%q is listed twice", r)
		}
		seenRemove[r] = true
	}
	hasCP := false
	for _, h := range f.Hosts {
		hasCP = hasCP || h.HasRole(RoleControlPlane)
	}
	if !hasCP && len(f.Hosts) > 0 {
		c.errorf("pki", "give a host the role control-plane, or remove pki", "the certificate set needs at least one control-plane host")
	}
}

// CheckRecipient checks that r is an age X25519 recipient or an SSH ed25519 public key.
func CheckRecipient(r string) error {
	switch {
	case strings.HasPrefix(r, "age1"):
		if !ageRecipientRE.MatchString(r) {
			return fmt.Errorf("%q is not a valid age recipient", abbreviate(r))
		}
	case strings.HasPrefix(r, "ssh-ed25519 "):
		fields := strings.Fields(r)
		blob, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil || len(blob) != 51 || string(blob[4:15]) != "ssh-ed25519" {
			return fmt.Errorf("%q is not a valid ssh-ed25519 public key", abbreviate(r))
		}
	case strings.HasPrefix(r, "ssh-rsa "):
		return fmt.Errorf("ssh-rsa keys are not supported as recipients here; use ssh-ed25519 or age1…")
	default:
		return fmt.Errorf("%q is not an age recipient", abbreviate(r))
	}
	return nil
}

func abbreviate(s string) string {
	if len(s) > 24 {
		return s[:20] + "…"
	}
	return s
}

func (c *checker) rollout(f *Fleet) {
	r := &f.Rollout
	known := KnownRoles()
	seen := map[string]bool{}
	for i, role := range r.Order {
		p := fmt.Sprintf("rollout.order[%d]", i)
		if !slices.Contains(known, role) {
			c.errorf(p, "use one of: "+strings.Join(known, ", "), "role %q does not exist", role)
		}
		if seen[role] {
			c.errorf(p, "", "role %q is listed twice", role)
		}
		seen[role] = true
	}
	if len(r.Order) > 0 {
		for _, name := range slices.Sorted(maps.Keys(f.Hosts)) {
			h := f.Hosts[name]
			in := false
			for _, role := range h.Roles {
				in = in || seen[role]
			}
			if !in && len(h.Roles) > 0 {
				c.errorf("rollout.order", "add one of its roles ("+strings.Join(h.Roles, ", ")+") to rollout.order", "host %s has no role in rollout.order, so it would never roll", name)
			}
		}
	}
	if c.present("rollout.max_parallel") && r.MaxParallel < 1 {
		c.errorf("rollout.max_parallel", "use 1 to roll one host at a time", "max_parallel must be at least 1, got %d", r.MaxParallel)
	}
	for i, cmd := range r.Health {
		if strings.TrimSpace(cmd) == "" {
			c.errorf(fmt.Sprintf("rollout.health[%d]", i), "remove it", "empty health command")
		}
	}
}

func (c *checker) github(g *GitHub) {
	if g.DefaultBranch != "" && (!branchRE.MatchString(g.DefaultBranch) || strings.Contains(g.DefaultBranch, "..")) {
		c.errorf("github.default_branch", "", "%q is not a branch name", g.DefaultBranch)
	}
	if g.Apply == "off" && len(g.Require) > 0 {
		c.errorf("github.require", "remove it, or set apply: comment", "require has no effect when apply is off")
	}
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !dnsLabelRE.MatchString(label) {
			return false
		}
	}
	return true
}

// validGlob reports whether g is a relative slash path whose segments are
// ** or valid path.Match patterns.
func validGlob(g string) bool {
	if g == "" || strings.HasPrefix(g, "/") || strings.Contains(g, "\\") {
		return false
	}
	for _, seg := range strings.Split(g, "/") {
		if seg == "" || seg == ".." {
			return false
		}
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return false
		}
	}
	return true
}
