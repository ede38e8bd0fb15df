package ec2

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

type xSecurityGroup struct {
	OwnerID          string          `xml:"ownerId"`
	GroupID          string          `xml:"groupId"`
	GroupName        string          `xml:"groupName"`
	GroupDescription string          `xml:"groupDescription"`
	VpcID            string          `xml:"vpcId"`
	Arn              string          `xml:"securityGroupArn"`
	Ingress          []xIPPermission `xml:"ipPermissions>item"`
	Egress           []xIPPermission `xml:"ipPermissionsEgress>item"`
	Tags             []xTag          `xml:"tagSet>item,omitempty"`
}

type xIPPermission struct {
	IPProtocol string       `xml:"ipProtocol"`
	FromPort   *int32       `xml:"fromPort,omitempty"`
	ToPort     *int32       `xml:"toPort,omitempty"`
	Groups     []xGroupPair `xml:"groups>item"`
	IPRanges   []xIPRange   `xml:"ipRanges>item"`
	IPv6Ranges []xIPv6Range `xml:"ipv6Ranges>item"`
}

type xGroupPair struct {
	UserID      string `xml:"userId"`
	GroupID     string `xml:"groupId"`
	Description string `xml:"description,omitempty"`
}

type xIPRange struct {
	CidrIP      string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type xIPv6Range struct {
	CidrIPv6    string `xml:"cidrIpv6"`
	Description string `xml:"description,omitempty"`
}

type xSGRule struct {
	RuleID       string     `xml:"securityGroupRuleId"`
	GroupID      string     `xml:"groupId"`
	GroupOwnerID string     `xml:"groupOwnerId"`
	IsEgress     bool       `xml:"isEgress"`
	IPProtocol   string     `xml:"ipProtocol"`
	FromPort     int32      `xml:"fromPort"`
	ToPort       int32      `xml:"toPort"`
	CidrIPv4     string     `xml:"cidrIpv4,omitempty"`
	CidrIPv6     string     `xml:"cidrIpv6,omitempty"`
	Referenced   *xRefGroup `xml:"referencedGroupInfo"`
	Description  string     `xml:"description,omitempty"`
	Arn          string     `xml:"securityGroupRuleArn"`
	Tags         []xTag     `xml:"tagSet>item,omitempty"`
}

type xRefGroup struct {
	GroupID string `xml:"groupId"`
	UserID  string `xml:"userId"`
}

type xRevokedRule struct {
	RuleID     string `xml:"securityGroupRuleId"`
	GroupID    string `xml:"groupId"`
	IsEgress   bool   `xml:"isEgress"`
	IPProtocol string `xml:"ipProtocol"`
	FromPort   int32  `xml:"fromPort"`
	ToPort     int32  `xml:"toPort"`
	CidrIPv4   string `xml:"cidrIpv4,omitempty"`
	CidrIPv6   string `xml:"cidrIpv6,omitempty"`
	RefGroupID string `xml:"referencedGroupId,omitempty"`
}

func (s *Server) sgArn(region, id string) string {
	return "arn:aws:ec2:" + region + ":" + s.AccountID + ":security-group/" + id
}

func (s *Server) sgXML(sg *securityGroup, region string) xSecurityGroup {
	return xSecurityGroup{OwnerID: s.AccountID, GroupID: sg.id, GroupName: sg.name, GroupDescription: sg.desc,
		VpcID: sg.vpcID, Arn: s.sgArn(region, sg.id), Ingress: s.permissionsXML(sg.ingress),
		Egress: s.permissionsXML(sg.egress), Tags: tagsXML(sg.tags)}
}

// permissionsXML groups rules by protocol and ports, as EC2 reports them.
func (s *Server) permissionsXML(rules []*sgRule) []xIPPermission {
	var out []xIPPermission
	index := map[string]int{}
	for _, r := range rules {
		k := fmt.Sprintf("%s/%d/%d", r.proto, r.from, r.to)
		i, ok := index[k]
		if !ok {
			p := xIPPermission{IPProtocol: r.proto}
			if r.proto != "-1" {
				from, to := r.from, r.to
				p.FromPort, p.ToPort = &from, &to
			}
			out = append(out, p)
			i = len(out) - 1
			index[k] = i
		}
		p := &out[i]
		switch {
		case r.cidr != "":
			p.IPRanges = append(p.IPRanges, xIPRange{r.cidr, r.desc})
		case r.cidrV6 != "":
			p.IPv6Ranges = append(p.IPv6Ranges, xIPv6Range{r.cidrV6, r.desc})
		case r.groupID != "":
			p.Groups = append(p.Groups, xGroupPair{s.AccountID, r.groupID, r.desc})
		}
	}
	return out
}

func (s *Server) ruleXML(r *sgRule, region string) xSGRule {
	x := xSGRule{RuleID: r.id, GroupID: r.ownerSGID, GroupOwnerID: s.AccountID, IsEgress: r.egress,
		IPProtocol: r.proto, FromPort: r.from, ToPort: r.to, CidrIPv4: r.cidr, CidrIPv6: r.cidrV6,
		Description: r.desc, Tags: tagsXML(r.tags),
		Arn: "arn:aws:ec2:" + region + ":" + s.AccountID + ":security-group-rule/" + r.id}
	if r.groupID != "" {
		x.Referenced = &xRefGroup{GroupID: r.groupID, UserID: s.AccountID}
	}
	return x
}

func (s *Server) sgFilter(sg *securityGroup) filterFunc {
	return func(name string) ([]string, bool) {
		rules := sg.ingress
		perm, isEgress := strings.CutPrefix(name, "egress.")
		if isEgress {
			rules = sg.egress
		}
		var out []string
		switch perm {
		case "ip-permission.cidr":
			for _, r := range rules {
				out = append(out, r.cidr)
			}
			return out, true
		case "ip-permission.protocol":
			for _, r := range rules {
				out = append(out, r.proto)
			}
			return out, true
		case "ip-permission.from-port":
			for _, r := range rules {
				out = append(out, strconv.Itoa(int(r.from)))
			}
			return out, true
		case "ip-permission.to-port":
			for _, r := range rules {
				out = append(out, strconv.Itoa(int(r.to)))
			}
			return out, true
		case "ip-permission.group-id":
			for _, r := range rules {
				out = append(out, r.groupID)
			}
			return out, true
		}
		switch name {
		case "group-id":
			return []string{sg.id}, true
		case "group-name":
			return []string{sg.name}, true
		case "vpc-id":
			return []string{sg.vpcID}, true
		case "description":
			return []string{sg.desc}, true
		case "owner-id":
			return []string{s.AccountID}, true
		}
		return tagFilter(sg.tags, name)
	}
}

func (s *Server) lookupSG(id string) (*securityGroup, error) { return lookup(s.st.sgs, sgKind, id) }

// groupFromParams finds the group named by GroupId (or, failing that, by a
// GroupName unique across VPCs).
func (s *Server) groupFromParams(p params) (*securityGroup, error) {
	if id := p.get("GroupId"); id != "" {
		return s.lookupSG(id)
	}
	name := p.get("GroupName")
	if name == "" {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter groupId")
	}
	var found *securityGroup
	for _, sg := range sortedValues(s.st.sgs) {
		if sg.name == name {
			if found != nil {
				return nil, errf(400, "InvalidParameterValue", "Group name '%s' is ambiguous; use GroupId", name)
			}
			found = sg
		}
	}
	if found == nil {
		return nil, sgKind.missing([]string{name})
	}
	return found, nil
}

func (s *Server) describeSecurityGroups(c *call) (any, error) {
	xml := func(sg *securityGroup) xSecurityGroup { return s.sgXML(sg, c.region) }
	return describe(c, "securityGroupInfo", xml, listing[securityGroup]{pageMin: 5, pageMax: 1000,
		pick: func() ([]*securityGroup, error) {
			items, err := selectByID(s.st.sgs, sgKind, c.p.list("GroupId"))
			if err != nil {
				return nil, err
			}
			return groupsNamed(items, c.p.list("GroupName"))
		},
		filter: s.sgFilter, id: func(sg *securityGroup) string { return sg.id }})
}

// groupsNamed is those of groups whose name is one of names (all of them
// when there are none), every name being some group's.
func groupsNamed(groups []*securityGroup, names []string) ([]*securityGroup, error) {
	if len(names) == 0 {
		return groups, nil
	}
	sel := map[string]*securityGroup{}
	for _, n := range names {
		found := false
		for _, sg := range groups {
			if sg.name == n {
				sel[sg.id], found = sg, true
			}
		}
		if !found {
			return nil, sgKind.missing([]string{n})
		}
	}
	return sortedValues(sel), nil
}

func (s *Server) createSecurityGroup(c *call) (any, error) {
	name, err := c.p.require("GroupName")
	if err != nil {
		return nil, err
	}
	desc, err := c.p.require("GroupDescription")
	if err != nil {
		return nil, err
	}
	vid := c.p.get("VpcId")
	if vid == "" {
		return nil, errf(400, "VPCIdNotSpecified", "No default VPC for this user")
	}
	v, err := s.lookupVpc(vid)
	if err != nil {
		return nil, err
	}
	switch {
	case name == "default":
		return nil, errf(400, "InvalidGroup.Reserved", "The security group 'default' is reserved")
	case strings.HasPrefix(name, "sg-"):
		return nil, errf(400, "InvalidParameterValue", "Group names may not be in the format sg-*")
	case len(name) > 255 || len(desc) > 255:
		return nil, errf(400, "InvalidParameterValue", "Group name and description are limited to 255 characters")
	}
	for _, o := range s.st.sgs {
		if o.vpcID == v.id && o.name == name {
			return nil, errf(400, "InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, v.id)
		}
	}
	specs, err := c.p.tagSpecs("security-group")
	if err != nil {
		return nil, err
	}
	sg := s.addSecurityGroup(v.id, name, desc, tagsFrom(specs["security-group"]))
	return struct {
		GroupID string `xml:"groupId"`
		Tags    []xTag `xml:"tagSet>item,omitempty"`
		Arn     string `xml:"securityGroupArn"`
	}{sg.id, tagsXML(sg.tags), s.sgArn(c.region, sg.id)}, nil
}

// addSecurityGroup creates a group with EC2's default allow-all egress rule.
func (s *Server) addSecurityGroup(vpcID, name, desc string, tags map[string]string) *securityGroup {
	sg := &securityGroup{id: s.newID("sg"), name: name, desc: desc, vpcID: vpcID, tags: tags}
	sg.egress = []*sgRule{{id: s.newID("sgr"), proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0", egress: true, ownerSGID: sg.id}}
	s.st.sgs[sg.id] = sg
	return sg
}

func (s *Server) deleteSecurityGroup(c *call) (any, error) {
	sg, err := s.groupFromParams(c.p)
	if err != nil {
		return nil, err
	}
	if v := s.st.vpcs[sg.vpcID]; v != nil && v.defaultSG == sg.id {
		return nil, errf(400, "CannotDelete", "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", sg.id)
	}
	for _, in := range s.st.instances {
		if in.state != stateTerminated && slices.Contains(in.sgIDs, sg.id) {
			return nil, errf(400, "DependencyViolation", "resource %s has a dependent object", sg.id)
		}
	}
	for _, o := range s.st.sgs {
		if o.id == sg.id {
			continue
		}
		for _, r := range append(append([]*sgRule{}, o.ingress...), o.egress...) {
			if r.groupID == sg.id {
				return nil, errf(400, "DependencyViolation", "resource %s has a dependent object", sg.id)
			}
		}
	}
	delete(s.st.sgs, sg.id)
	return struct {
		Return  bool   `xml:"return"`
		GroupID string `xml:"groupId"`
	}{true, sg.id}, nil
}
