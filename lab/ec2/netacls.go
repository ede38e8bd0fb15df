package ec2

// networkACL is a VPC's network ACL. Each VPC has its default one, made
// with it, as EC2 makes it: every subnet of the VPC is associated with it,
// and it allows all traffic in and out (rule 100), then denies the rest
// (rule *).
type networkACL struct {
	id, vpcID string
	isDefault bool
	tags      map[string]string
}

type xNetworkACL struct {
	Associations []xACLAssoc `xml:"associationSet>item"`
	Entries      []xACLEntry `xml:"entrySet>item"`
	IsDefault    bool        `xml:"default"`
	ID           string      `xml:"networkAclId"`
	Tags         []xTag      `xml:"tagSet>item,omitempty"`
	VpcID        string      `xml:"vpcId"`
	OwnerID      string      `xml:"ownerId"`
}

type xACLAssoc struct {
	ID       string `xml:"networkAclAssociationId"`
	ACLID    string `xml:"networkAclId"`
	SubnetID string `xml:"subnetId"`
}

type xACLEntry struct {
	CidrBlock  string `xml:"cidrBlock"`
	Egress     bool   `xml:"egress"`
	Protocol   string `xml:"protocol"`
	RuleAction string `xml:"ruleAction"`
	RuleNumber int    `xml:"ruleNumber"`
}

// defaultACLEntries are the entries of a default network ACL.
func defaultACLEntries() []xACLEntry {
	var out []xACLEntry
	for _, egress := range []bool{true, false} {
		out = append(out,
			xACLEntry{CidrBlock: "0.0.0.0/0", Egress: egress, Protocol: "-1", RuleAction: "allow", RuleNumber: 100},
			xACLEntry{CidrBlock: "0.0.0.0/0", Egress: egress, Protocol: "-1", RuleAction: "deny", RuleNumber: 32767})
	}
	return out
}

func (s *Server) aclXML(a *networkACL) xNetworkACL {
	x := xNetworkACL{Entries: defaultACLEntries(), IsDefault: a.isDefault, ID: a.id, Tags: tagsXML(a.tags), VpcID: a.vpcID, OwnerID: s.AccountID}
	for _, sn := range sortedValues(s.st.subnets) {
		if sn.vpcID == a.vpcID && a.isDefault {
			x.Associations = append(x.Associations, xACLAssoc{ID: sn.aclAssocID, ACLID: a.id, SubnetID: sn.id})
		}
	}
	return x
}

func (s *Server) aclFilter(a *networkACL) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "network-acl-id", "association.network-acl-id":
			return []string{a.id}, true
		case "vpc-id":
			return []string{a.vpcID}, true
		case "default":
			return []string{boolStr(a.isDefault)}, true
		case "owner-id":
			return []string{s.AccountID}, true
		case "association.subnet-id":
			var out []string
			for _, as := range s.aclXML(a).Associations {
				out = append(out, as.SubnetID)
			}
			return out, true
		case "association.association-id":
			var out []string
			for _, as := range s.aclXML(a).Associations {
				out = append(out, as.ID)
			}
			return out, true
		}
		return tagFilter(a.tags, name)
	}
}

func (s *Server) describeNetworkAcls(c *call) (any, error) {
	return describe(c, "networkAclSet", s.aclXML, listing[networkACL]{pageMin: 5, pageMax: 1000,
		pick:   byID(s.st.acls, networkACLKind, c.p.list("NetworkAclId")),
		filter: s.aclFilter, id: func(a *networkACL) string { return a.id }})
}
