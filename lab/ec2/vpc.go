package ec2

import (
	"net/netip"
	"slices"
	"strings"
)

type xVpc struct {
	VpcID           string          `xml:"vpcId"`
	OwnerID         string          `xml:"ownerId"`
	State           string          `xml:"state"`
	CidrBlock       string          `xml:"cidrBlock"`
	CidrAssocs      []xVpcCidrAssoc `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID   string          `xml:"dhcpOptionsId"`
	InstanceTenancy string          `xml:"instanceTenancy"`
	IsDefault       bool            `xml:"isDefault"`
	Tags            []xTag          `xml:"tagSet>item,omitempty"`
}

type xVpcCidrAssoc struct {
	AssociationID string      `xml:"associationId"`
	CidrBlock     string      `xml:"cidrBlock"`
	State         xCidrStatus `xml:"cidrBlockState"`
}

type xCidrStatus struct {
	State string `xml:"state"`
}

type xSubnet struct {
	SubnetID                string `xml:"subnetId"`
	SubnetArn               string `xml:"subnetArn"`
	State                   string `xml:"state"`
	VpcID                   string `xml:"vpcId"`
	OwnerID                 string `xml:"ownerId"`
	CidrBlock               string `xml:"cidrBlock"`
	AvailableIPAddressCount int    `xml:"availableIpAddressCount"`
	AvailabilityZone        string `xml:"availabilityZone"`
	AvailabilityZoneID      string `xml:"availabilityZoneId"`
	DefaultForAz            bool   `xml:"defaultForAz"`
	MapPublicIPOnLaunch     bool   `xml:"mapPublicIpOnLaunch"`
	AssignIpv6OnCreation    bool   `xml:"assignIpv6AddressOnCreation"`
	Tags                    []xTag `xml:"tagSet>item,omitempty"`
}

func (s *Server) vpcXML(v *vpc) xVpc {
	return xVpc{
		VpcID: v.id, OwnerID: s.AccountID, State: "available", CidrBlock: v.cidr,
		CidrAssocs:    []xVpcCidrAssoc{{AssociationID: v.cidrAssocID, CidrBlock: v.cidr, State: xCidrStatus{"associated"}}},
		DhcpOptionsID: s.st.dhcpOptionsID, InstanceTenancy: "default", Tags: tagsXML(v.tags),
	}
}

func (s *Server) subnetXML(sn *subnet, region string) xSubnet {
	return xSubnet{
		SubnetID: sn.id, SubnetArn: "arn:aws:ec2:" + region + ":" + s.AccountID + ":subnet/" + sn.id,
		State: "available", VpcID: sn.vpcID, OwnerID: s.AccountID, CidrBlock: sn.cidr,
		AvailableIPAddressCount: sn.freeIPs(), AvailabilityZone: sn.az, AvailabilityZoneID: azID(sn.az),
		MapPublicIPOnLaunch: sn.mapPublicIP, Tags: tagsXML(sn.tags),
	}
}

// azID turns "ap-northeast-2a" into an AZ id like "apne2-az1".
func azID(az string) string {
	if len(az) < 2 {
		return ""
	}
	region, letter := az[:len(az)-1], az[len(az)-1]
	short := region
	if w := strings.Split(region, "-"); len(w) == 3 && w[1] != "" {
		var abbr string
		switch w[1] {
		case "northeast", "southeast", "northwest", "southwest":
			abbr = w[1][:1] + w[1][5:6]
		default:
			abbr = w[1][:1]
		}
		short = w[0] + abbr + w[2]
	}
	return short + "-az" + itoa(int(letter-'a')+1)
}

func (s *Server) vpcFilter(v *vpc) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "vpc-id":
			return []string{v.id}, true
		case "cidr", "cidr-block-association.cidr-block", "cidrBlock":
			return []string{v.cidr}, true
		case "cidr-block-association.association-id":
			return []string{v.cidrAssocID}, true
		case "cidr-block-association.state":
			return []string{"associated"}, true
		case "state":
			return []string{"available"}, true
		case "is-default", "isDefault":
			return []string{"false"}, true
		case "owner-id":
			return []string{s.AccountID}, true
		case "dhcp-options-id":
			return []string{s.st.dhcpOptionsID}, true
		}
		return tagFilter(v.tags, name)
	}
}

func (s *Server) lookupVpc(id string) (*vpc, error) { return lookup(s.st.vpcs, vpcKind, id) }

func (s *Server) describeVpcs(c *call) (any, error) {
	return describe(c, "vpcSet", s.vpcXML, listing[vpc]{pageMin: 5, pageMax: 1000,
		pick:   byID(s.st.vpcs, vpcKind, c.p.list("VpcId")),
		filter: s.vpcFilter, id: func(v *vpc) string { return v.id }})
}

func parseCIDR(s, param string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, errf(400, "InvalidParameterValue",
			"Value (%s) for parameter %s is invalid. This value is not a valid CIDR block.", s, param)
	}
	if p.Masked() != p {
		return netip.Prefix{}, errf(400, "InvalidParameterValue",
			"Value (%s) for parameter %s is invalid. This value is not a valid CIDR block.", s, param)
	}
	return p, nil
}

func (s *Server) createVpc(c *call) (any, error) {
	cidr, err := c.p.require("CidrBlock")
	if err != nil {
		return nil, err
	}
	pfx, err := parseCIDR(cidr, "cidrBlock")
	if err != nil {
		return nil, err
	}
	if pfx.Bits() < 16 || pfx.Bits() > 28 {
		return nil, errf(400, "InvalidVpc.Range", "The CIDR '%s' is invalid.", cidr)
	}
	specs, err := c.p.tagSpecs("vpc")
	if err != nil {
		return nil, err
	}
	v := s.addVpc(pfx, tagsFrom(specs["vpc"]))
	// EC2 answers CreateVpc with the VPC pending; it is available by the
	// next request.
	x := s.vpcXML(v)
	x.State = "pending"
	return struct {
		Vpc xVpc `xml:"vpc"`
	}{x}, nil
}

// addVpc creates a VPC with, as EC2 does, its main route table (with the
// local route) and its default security group.
func (s *Server) addVpc(pfx netip.Prefix, tags map[string]string) *vpc {
	if s.st.dhcpOptionsID == "" {
		s.st.dhcpOptionsID = s.newID("dopt")
	}
	v := &vpc{id: s.newID("vpc"), cidr: pfx.String(), prefix: pfx, dnsSupport: true, tags: tags}
	v.cidrAssocID = s.newID("vpc-cidr-assoc")
	s.st.vpcs[v.id] = v

	rt := &routeTable{id: s.newID("rtb"), vpcID: v.id, tags: map[string]string{},
		routes: []*rtRoute{{dest: v.cidr, gatewayID: "local", origin: "CreateRouteTable"}}}
	rt.assocs = []*rtAssoc{{id: s.newID("rtbassoc"), main: true}}
	s.st.rtbs[rt.id] = rt
	v.mainRT = rt.id

	sg := &securityGroup{id: s.newID("sg"), name: "default", desc: "default VPC security group", vpcID: v.id, tags: map[string]string{}}
	sg.ingress = []*sgRule{{id: s.newID("sgr"), proto: "-1", from: -1, to: -1, groupID: sg.id, ownerSGID: sg.id}}
	sg.egress = []*sgRule{{id: s.newID("sgr"), proto: "-1", from: -1, to: -1, cidr: "0.0.0.0/0", egress: true, ownerSGID: sg.id}}
	s.st.sgs[sg.id] = sg
	v.defaultSG = sg.id

	acl := &networkACL{id: s.newID("acl"), vpcID: v.id, isDefault: true, tags: map[string]string{}}
	s.st.acls[acl.id] = acl
	v.defaultACL = acl.id
	return v
}

func (s *Server) deleteVpc(c *call) (any, error) {
	id, err := c.p.require("VpcId")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVpc(id)
	if err != nil {
		return nil, err
	}
	dep := false
	for _, sn := range s.st.subnets {
		dep = dep || sn.vpcID == id
	}
	for _, g := range s.st.igws {
		dep = dep || g.vpcID == id
	}
	for _, rt := range s.st.rtbs {
		dep = dep || (rt.vpcID == id && rt.id != v.mainRT)
	}
	for _, sg := range s.st.sgs {
		dep = dep || (sg.vpcID == id && sg.id != v.defaultSG)
	}
	if dep {
		return nil, errf(400, "DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
	}
	delete(s.st.rtbs, v.mainRT)
	delete(s.st.sgs, v.defaultSG)
	delete(s.st.acls, v.defaultACL)
	delete(s.st.vpcs, id)
	return returnResponse{true}, nil
}

func (s *Server) modifyVpcAttribute(c *call) (any, error) {
	id, err := c.p.require("VpcId")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVpc(id)
	if err != nil {
		return nil, err
	}
	sup, hasSup := c.p.boolean("EnableDnsSupport.Value")
	host, hasHost := c.p.boolean("EnableDnsHostnames.Value")
	metrics, hasMetrics := c.p.boolean("EnableNetworkAddressUsageMetrics.Value")
	n := 0
	for _, has := range []bool{hasSup, hasHost, hasMetrics} {
		if has {
			n++
		}
	}
	if n != 1 {
		return nil, errf(400, "InvalidParameterCombination", "Exactly one attribute must be specified per call.")
	}
	switch {
	case hasSup:
		v.dnsSupport = sup
	case hasHost:
		v.dnsHostnames = host
	default:
		v.addressUsageMetrics = metrics
	}
	return returnResponse{true}, nil
}

func (s *Server) describeVpcAttribute(c *call) (any, error) {
	id, err := c.p.require("VpcId")
	if err != nil {
		return nil, err
	}
	attr, err := c.p.require("Attribute")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVpc(id)
	if err != nil {
		return nil, err
	}
	resp := struct {
		VpcID        string      `xml:"vpcId"`
		DNSSupport   *xBoolValue `xml:"enableDnsSupport"`
		DNSHostnames *xBoolValue `xml:"enableDnsHostnames"`
		UsageMetrics *xBoolValue `xml:"enableNetworkAddressUsageMetrics"`
	}{VpcID: id}
	switch attr {
	case "enableDnsSupport":
		resp.DNSSupport = &xBoolValue{v.dnsSupport}
	case "enableDnsHostnames":
		resp.DNSHostnames = &xBoolValue{v.dnsHostnames}
	case "enableNetworkAddressUsageMetrics":
		resp.UsageMetrics = &xBoolValue{v.addressUsageMetrics}
	default:
		return nil, errf(400, "InvalidParameterValue", "Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	return resp, nil
}

func (s *Server) subnetFilter(sn *subnet) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "subnet-id":
			return []string{sn.id}, true
		case "vpc-id":
			return []string{sn.vpcID}, true
		case "cidr-block", "cidr", "cidrBlock":
			return []string{sn.cidr}, true
		case "availability-zone", "availabilityZone":
			return []string{sn.az}, true
		case "availability-zone-id":
			return []string{azID(sn.az)}, true
		case "state":
			return []string{"available"}, true
		case "map-public-ip-on-launch":
			return []string{boolStr(sn.mapPublicIP)}, true
		case "default-for-az", "defaultForAz":
			return []string{"false"}, true
		case "owner-id":
			return []string{s.AccountID}, true
		case "available-ip-address-count":
			return []string{itoa(sn.freeIPs())}, true
		}
		return tagFilter(sn.tags, name)
	}
}

func (s *Server) lookupSubnet(id string) (*subnet, error) {
	return lookup(s.st.subnets, subnetKind, id)
}

func (s *Server) describeSubnets(c *call) (any, error) {
	xml := func(sn *subnet) xSubnet { return s.subnetXML(sn, c.region) }
	return describe(c, "subnetSet", xml, listing[subnet]{pageMin: 5, pageMax: 1000,
		pick:   byID(s.st.subnets, subnetKind, c.p.list("SubnetId")),
		filter: s.subnetFilter, id: func(sn *subnet) string { return sn.id }})
}

func (s *Server) createSubnet(c *call) (any, error) {
	vpcID, err := c.p.require("VpcId")
	if err != nil {
		return nil, err
	}
	cidr, err := c.p.require("CidrBlock")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVpc(vpcID)
	if err != nil {
		return nil, err
	}
	pfx, err := parseCIDR(cidr, "cidrBlock")
	if err != nil {
		return nil, err
	}
	az := c.p.get("AvailabilityZone")
	if az == "" {
		az = c.region + "a"
	}
	if !strings.HasPrefix(az, c.region) || len(az) != len(c.region)+1 || az[len(az)-1] < 'a' || az[len(az)-1] > 'z' {
		return nil, errf(400, "InvalidParameterValue",
			"Value (%s) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: %sa, %sb, %sc, %sd.",
			az, c.region, c.region, c.region, c.region)
	}
	specs, err := c.p.tagSpecs("subnet")
	if err != nil {
		return nil, err
	}
	sn, err := s.addSubnet(v, pfx, az, tagsFrom(specs["subnet"]))
	if err != nil {
		return nil, err
	}
	return struct {
		Subnet xSubnet `xml:"subnet"`
	}{s.subnetXML(sn, c.region)}, nil
}

func (s *Server) addSubnet(v *vpc, pfx netip.Prefix, az string, tags map[string]string) (*subnet, error) {
	if pfx.Bits() < 16 || pfx.Bits() > 28 || !v.prefix.Contains(pfx.Addr()) || pfx.Bits() < v.prefix.Bits() {
		return nil, errf(400, "InvalidSubnet.Range", "The CIDR '%s' is invalid.", pfx)
	}
	for _, o := range s.st.subnets {
		if o.vpcID == v.id && o.prefix.Overlaps(pfx) {
			return nil, errf(400, "InvalidSubnet.Conflict", "The CIDR '%s' conflicts with another subnet", pfx)
		}
	}
	sn := &subnet{id: s.newID("subnet"), vpcID: v.id, cidr: pfx.String(), prefix: pfx, az: az,
		used: map[netip.Addr]string{}, aclAssocID: s.newID("aclassoc"), tags: tags}
	s.st.subnets[sn.id] = sn
	return sn, nil
}

func (s *Server) deleteSubnet(c *call) (any, error) {
	id, err := c.p.require("SubnetId")
	if err != nil {
		return nil, err
	}
	if _, err := s.lookupSubnet(id); err != nil {
		return nil, err
	}
	for _, in := range s.st.instances {
		if in.subnetID == id && in.state != stateTerminated {
			return nil, errf(400, "DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted.", id)
		}
	}
	for _, rt := range s.st.rtbs {
		rt.assocs = slices.DeleteFunc(rt.assocs, func(a *rtAssoc) bool { return a.subnetID == id })
	}
	delete(s.st.subnets, id)
	return returnResponse{true}, nil
}

func (s *Server) modifySubnetAttribute(c *call) (any, error) {
	id, err := c.p.require("SubnetId")
	if err != nil {
		return nil, err
	}
	sn, err := s.lookupSubnet(id)
	if err != nil {
		return nil, err
	}
	v, ok := c.p.boolean("MapPublicIpOnLaunch.Value")
	if !ok {
		return nil, errf(400, "UnsupportedOperation", "The lab supports only the MapPublicIpOnLaunch subnet attribute.")
	}
	sn.mapPublicIP = v
	return returnResponse{true}, nil
}
