package ec2

import (
	"net/netip"
	"slices"
	"strings"
)

// normalizeProtocol maps EC2's accepted spellings to what it reports.
func normalizeProtocol(p string) (string, bool) {
	switch strings.ToLower(p) {
	case "-1", "all":
		return "-1", true
	case "tcp", "6":
		return "tcp", true
	case "udp", "17":
		return "udp", true
	case "icmp", "1":
		return "icmp", true
	case "icmpv6", "58":
		return "icmpv6", true
	}
	return "", false
}

// parsePermissions reads IpPermissions.N (or the legacy top-level
// IpProtocol/FromPort/ToPort/CidrIp form) into one rule per source.
func (s *Server) parsePermissions(p params, egress bool) ([]*sgRule, error) {
	perms := p.items("IpPermissions")
	if len(perms) == 0 && p.get("IpProtocol") != "" {
		legacy := params{"IpProtocol": p.get("IpProtocol"), "FromPort": p.get("FromPort"), "ToPort": p.get("ToPort")}
		if cidr := p.get("CidrIp"); cidr != "" {
			legacy["IpRanges.1.CidrIp"] = cidr
		}
		perms = []params{legacy}
	}
	if len(perms) == 0 {
		return nil, errf(400, "MissingParameter", "Either 'ipPermissions' or 'ipProtocol' must be specified")
	}
	var rules []*sgRule
	for _, perm := range perms {
		proto, ok := normalizeProtocol(perm.get("IpProtocol"))
		if !ok {
			return nil, errf(400, "InvalidParameterValue", "Invalid value '%s' for IP protocol. Unknown protocol.", perm.get("IpProtocol"))
		}
		from, to := int32(-1), int32(-1)
		if proto != "-1" {
			f, fok, err := perm.int("FromPort")
			if err != nil {
				return nil, err
			}
			t, tok, err := perm.int("ToPort")
			if err != nil {
				return nil, err
			}
			if !fok || !tok {
				return nil, errf(400, "InvalidParameterValue", "Invalid value 'null' for ports: FromPort and ToPort are required for protocol %s", proto)
			}
			from, to = int32(f), int32(t)
			if (proto == "tcp" || proto == "udp") && (f < 0 || t > 65535 || f > t) {
				return nil, errf(400, "InvalidParameterValue", "Invalid port range: %d-%d", f, t)
			}
		}
		base := sgRule{proto: proto, from: from, to: to, egress: egress}
		n := 0
		for _, r := range perm.items("IpRanges") {
			pfx, err := netip.ParsePrefix(r.get("CidrIp"))
			if err != nil || !pfx.Addr().Is4() {
				return nil, errf(400, "InvalidParameterValue", "CIDR block %s is malformed", r.get("CidrIp"))
			}
			rule := base
			rule.cidr, rule.desc = pfx.Masked().String(), r.get("Description")
			rules, n = append(rules, &rule), n+1
		}
		for _, r := range perm.items("Ipv6Ranges") {
			pfx, err := netip.ParsePrefix(r.get("CidrIpv6"))
			if err != nil || !pfx.Addr().Is6() {
				return nil, errf(400, "InvalidParameterValue", "CIDR block %s is malformed", r.get("CidrIpv6"))
			}
			rule := base
			rule.cidrV6, rule.desc = pfx.Masked().String(), r.get("Description")
			rules, n = append(rules, &rule), n+1
		}
		for _, r := range perm.items("Groups") {
			ref, err := s.lookupSG(r.get("GroupId"))
			if err != nil {
				return nil, err
			}
			rule := base
			rule.groupID, rule.desc = ref.id, r.get("Description")
			rules, n = append(rules, &rule), n+1
		}
		if n == 0 {
			return nil, errf(400, "InvalidParameterValue", "Each permission needs at least one of IpRanges, Ipv6Ranges or Groups")
		}
	}
	return rules, nil
}

func sameRule(a, b *sgRule) bool {
	return a.proto == b.proto && a.from == b.from && a.to == b.to &&
		a.cidr == b.cidr && a.cidrV6 == b.cidrV6 && a.groupID == b.groupID
}

func describeRule(r *sgRule) string {
	peer := r.cidr + r.cidrV6 + r.groupID
	proto := strings.ToUpper(r.proto)
	if r.proto == "-1" {
		proto = "ALL"
	}
	return "peer: " + peer + ", " + proto + ", from port: " + itoa(int(r.from)) + ", to port: " + itoa(int(r.to)) + ", ALLOW"
}

func (s *Server) authorizeIngress(c *call) (any, error) { return s.authorize(c, false) }
func (s *Server) authorizeEgress(c *call) (any, error)  { return s.authorize(c, true) }
func (s *Server) revokeIngress(c *call) (any, error)    { return s.revoke(c, false) }
func (s *Server) revokeEgress(c *call) (any, error)     { return s.revoke(c, true) }

func (s *Server) authorize(c *call, egress bool) (any, error) {
	sg, err := s.groupFromParams(c.p)
	if err != nil {
		return nil, err
	}
	rules, err := s.parsePermissions(c.p, egress)
	if err != nil {
		return nil, err
	}
	specs, err := c.p.tagSpecs("security-group-rule")
	if err != nil {
		return nil, err
	}
	existing := sg.ingress
	if egress {
		existing = sg.egress
	}
	for i, r := range rules {
		dup := slices.ContainsFunc(existing, func(o *sgRule) bool { return sameRule(o, r) }) ||
			slices.ContainsFunc(rules[:i], func(o *sgRule) bool { return sameRule(o, r) })
		if dup {
			return nil, errf(400, "InvalidPermission.Duplicate", "the specified rule \"%s\" already exists", describeRule(r))
		}
	}
	resp := struct {
		Return bool      `xml:"return"`
		Rules  []xSGRule `xml:"securityGroupRuleSet>item"`
	}{Return: true}
	for _, r := range rules {
		r.id, r.ownerSGID, r.tags = s.newID("sgr"), sg.id, tagsFrom(specs["security-group-rule"])
		resp.Rules = append(resp.Rules, s.ruleXML(r, c.region))
	}
	if egress {
		sg.egress = append(sg.egress, rules...)
	} else {
		sg.ingress = append(sg.ingress, rules...)
	}
	return resp, nil
}

func (s *Server) revoke(c *call, egress bool) (any, error) {
	sg, err := s.groupFromParams(c.p)
	if err != nil {
		return nil, err
	}
	existing := &sg.ingress
	if egress {
		existing = &sg.egress
	}
	var doomed []*sgRule
	if ids := c.p.list("SecurityGroupRuleId"); len(ids) > 0 {
		for _, id := range ids {
			i := slices.IndexFunc(*existing, func(o *sgRule) bool { return o.id == id })
			if i < 0 {
				return nil, errf(400, "InvalidSecurityGroupRuleId.NotFound", "The security group rule ID '%s' does not exist", id)
			}
			doomed = append(doomed, (*existing)[i])
		}
	} else {
		rules, err := s.parsePermissions(c.p, egress)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			i := slices.IndexFunc(*existing, func(o *sgRule) bool { return sameRule(o, r) })
			if i < 0 {
				return nil, errf(400, "InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
			}
			doomed = append(doomed, (*existing)[i])
		}
	}
	resp := struct {
		Return  bool           `xml:"return"`
		Revoked []xRevokedRule `xml:"revokedSecurityGroupRuleSet>item"`
	}{Return: true}
	for _, r := range doomed {
		resp.Revoked = append(resp.Revoked, xRevokedRule{RuleID: r.id, GroupID: sg.id, IsEgress: egress,
			IPProtocol: r.proto, FromPort: r.from, ToPort: r.to, CidrIPv4: r.cidr, CidrIPv6: r.cidrV6, RefGroupID: r.groupID})
	}
	*existing = slices.DeleteFunc(*existing, func(o *sgRule) bool { return slices.Contains(doomed, o) })
	return resp, nil
}

func ruleFilter(r *sgRule) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "group-id":
			return []string{r.ownerSGID}, true
		case "security-group-rule-id":
			return []string{r.id}, true
		}
		return tagFilter(r.tags, name)
	}
}

func (s *Server) describeSecurityGroupRules(c *call) (any, error) {
	all := map[string]*sgRule{}
	for _, sg := range s.st.sgs {
		for _, r := range append(append([]*sgRule{}, sg.ingress...), sg.egress...) {
			all[r.id] = r
		}
	}
	xml := func(r *sgRule) xSGRule { return s.ruleXML(r, c.region) }
	return describe(c, "securityGroupRuleSet", xml, listing[sgRule]{pageMin: 5, pageMax: 1000,
		pick:   byID(all, sgRuleKind, c.p.list("SecurityGroupRuleId")),
		filter: ruleFilter, id: func(r *sgRule) string { return r.id }})
}
