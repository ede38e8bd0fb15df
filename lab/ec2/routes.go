package ec2

import (
	"slices"
)

type xInternetGateway struct {
	InternetGatewayID string        `xml:"internetGatewayId"`
	OwnerID           string        `xml:"ownerId"`
	Attachments       []xAttachment `xml:"attachmentSet>item"`
	Tags              []xTag        `xml:"tagSet>item,omitempty"`
}

type xAttachment struct {
	VpcID string `xml:"vpcId"`
	State string `xml:"state"`
}

type xRouteTable struct {
	RouteTableID string          `xml:"routeTableId"`
	VpcID        string          `xml:"vpcId"`
	OwnerID      string          `xml:"ownerId"`
	Routes       []xRoute        `xml:"routeSet>item"`
	Associations []xRouteTableAs `xml:"associationSet>item"`
	Tags         []xTag          `xml:"tagSet>item,omitempty"`
}

type xRoute struct {
	DestinationCidrBlock string `xml:"destinationCidrBlock"`
	GatewayID            string `xml:"gatewayId,omitempty"`
	InstanceID           string `xml:"instanceId,omitempty"`
	NatGatewayID         string `xml:"natGatewayId,omitempty"`
	State                string `xml:"state"`
	Origin               string `xml:"origin"`
}

type xRouteTableAs struct {
	Main          bool        `xml:"main"`
	AssociationID string      `xml:"routeTableAssociationId"`
	RouteTableID  string      `xml:"routeTableId"`
	SubnetID      string      `xml:"subnetId,omitempty"`
	State         xCidrStatus `xml:"associationState"`
}

func (s *Server) igwXML(g *internetGateway) xInternetGateway {
	x := xInternetGateway{InternetGatewayID: g.id, OwnerID: s.AccountID, Tags: tagsXML(g.tags)}
	if g.vpcID != "" {
		x.Attachments = []xAttachment{{VpcID: g.vpcID, State: "available"}}
	}
	return x
}

func (s *Server) igwFilter(g *internetGateway) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "internet-gateway-id":
			return []string{g.id}, true
		case "attachment.vpc-id":
			if g.vpcID == "" {
				return nil, true
			}
			return []string{g.vpcID}, true
		case "attachment.state":
			if g.vpcID == "" {
				return nil, true
			}
			return []string{"available"}, true
		case "owner-id":
			return []string{s.AccountID}, true
		}
		return tagFilter(g.tags, name)
	}
}

func (s *Server) lookupIgw(id string) (*internetGateway, error) {
	return lookup(s.st.igws, igwKind, id)
}

func (s *Server) describeInternetGateways(c *call) (any, error) {
	return describe(c, "internetGatewaySet", s.igwXML, listing[internetGateway]{pageMin: 5, pageMax: 1000,
		pick:   byID(s.st.igws, igwKind, c.p.list("InternetGatewayId")),
		filter: s.igwFilter, id: func(g *internetGateway) string { return g.id }})
}

func (s *Server) createInternetGateway(c *call) (any, error) {
	specs, err := c.p.tagSpecs("internet-gateway")
	if err != nil {
		return nil, err
	}
	g := &internetGateway{id: s.newID("igw"), tags: tagsFrom(specs["internet-gateway"])}
	s.st.igws[g.id] = g
	return struct {
		Igw xInternetGateway `xml:"internetGateway"`
	}{s.igwXML(g)}, nil
}

func (s *Server) igwAndVpc(c *call) (*internetGateway, *vpc, error) {
	gid, err := c.p.require("InternetGatewayId")
	if err != nil {
		return nil, nil, err
	}
	vid, err := c.p.require("VpcId")
	if err != nil {
		return nil, nil, err
	}
	g, err := s.lookupIgw(gid)
	if err != nil {
		return nil, nil, err
	}
	v, err := s.lookupVpc(vid)
	if err != nil {
		return nil, nil, err
	}
	return g, v, nil
}

func (s *Server) attachInternetGateway(c *call) (any, error) {
	g, v, err := s.igwAndVpc(c)
	if err != nil {
		return nil, err
	}
	if g.vpcID != "" {
		return nil, errf(400, "Resource.AlreadyAssociated", "resource %s is already attached to network %s", g.id, g.vpcID)
	}
	for _, o := range s.st.igws {
		if o.vpcID == v.id {
			return nil, errf(400, "Resource.AlreadyAssociated", "Network %s already has an internet gateway attached", v.id)
		}
	}
	g.vpcID = v.id
	return returnResponse{true}, nil
}

func (s *Server) detachInternetGateway(c *call) (any, error) {
	g, v, err := s.igwAndVpc(c)
	if err != nil {
		return nil, err
	}
	if g.vpcID != v.id {
		return nil, errf(400, "Gateway.NotAttached", "resource %s is not attached to network %s", g.id, v.id)
	}
	for _, in := range s.st.instances {
		if in.vpcID == v.id && in.publicIP != "" {
			return nil, errf(400, "DependencyViolation",
				"Network %s has some mapped public address(es). Please unmap those public address(es) before detaching the gateway.", v.id)
		}
	}
	g.vpcID = ""
	return returnResponse{true}, nil
}

func (s *Server) deleteInternetGateway(c *call) (any, error) {
	id, err := c.p.require("InternetGatewayId")
	if err != nil {
		return nil, err
	}
	g, err := s.lookupIgw(id)
	if err != nil {
		return nil, err
	}
	if g.vpcID != "" {
		return nil, errf(400, "DependencyViolation", "The internetGateway '%s' has dependencies and cannot be deleted.", id)
	}
	delete(s.st.igws, id)
	return returnResponse{true}, nil
}

func (s *Server) routeTableXML(rt *routeTable) xRouteTable {
	x := xRouteTable{RouteTableID: rt.id, VpcID: rt.vpcID, OwnerID: s.AccountID, Tags: tagsXML(rt.tags)}
	for _, r := range rt.routes {
		state := "active"
		if g := r.gatewayID; g != "" && g != "local" {
			if igw := s.st.igws[g]; igw == nil || igw.vpcID != rt.vpcID {
				state = "blackhole"
			}
		}
		if r.instanceID != "" {
			if in := s.st.instances[r.instanceID]; in == nil || in.state == stateTerminated {
				state = "blackhole"
			}
		}
		x.Routes = append(x.Routes, xRoute{DestinationCidrBlock: r.dest, GatewayID: r.gatewayID,
			InstanceID: r.instanceID, NatGatewayID: r.natGatewayID, State: state, Origin: r.origin})
	}
	for _, a := range rt.assocs {
		x.Associations = append(x.Associations, xRouteTableAs{Main: a.main, AssociationID: a.id,
			RouteTableID: rt.id, SubnetID: a.subnetID, State: xCidrStatus{"associated"}})
	}
	return x
}

func (s *Server) routeTableFilter(rt *routeTable) filterFunc {
	return func(name string) ([]string, bool) {
		var out []string
		switch name {
		case "route-table-id":
			return []string{rt.id}, true
		case "vpc-id":
			return []string{rt.vpcID}, true
		case "owner-id":
			return []string{s.AccountID}, true
		case "association.subnet-id":
			for _, a := range rt.assocs {
				if a.subnetID != "" {
					out = append(out, a.subnetID)
				}
			}
			return out, true
		case "association.route-table-association-id":
			for _, a := range rt.assocs {
				out = append(out, a.id)
			}
			return out, true
		case "association.route-table-id":
			if len(rt.assocs) > 0 {
				out = []string{rt.id}
			}
			return out, true
		case "association.main":
			main := false
			for _, a := range rt.assocs {
				main = main || a.main
			}
			return []string{boolStr(main)}, true
		case "route.destination-cidr-block":
			for _, r := range rt.routes {
				out = append(out, r.dest)
			}
			return out, true
		case "route.gateway-id":
			for _, r := range rt.routes {
				if r.gatewayID != "" {
					out = append(out, r.gatewayID)
				}
			}
			return out, true
		case "route.origin":
			for _, r := range rt.routes {
				out = append(out, r.origin)
			}
			return out, true
		}
		return tagFilter(rt.tags, name)
	}
}

func (s *Server) lookupRouteTable(id string) (*routeTable, error) {
	return lookup(s.st.rtbs, routeTableKind, id)
}

func (s *Server) describeRouteTables(c *call) (any, error) {
	return describe(c, "routeTableSet", s.routeTableXML, listing[routeTable]{pageMin: 5, pageMax: 100,
		pick:   byID(s.st.rtbs, routeTableKind, c.p.list("RouteTableId")),
		filter: s.routeTableFilter, id: func(rt *routeTable) string { return rt.id }})
}

func (s *Server) createRouteTable(c *call) (any, error) {
	vid, err := c.p.require("VpcId")
	if err != nil {
		return nil, err
	}
	v, err := s.lookupVpc(vid)
	if err != nil {
		return nil, err
	}
	specs, err := c.p.tagSpecs("route-table")
	if err != nil {
		return nil, err
	}
	rt := &routeTable{id: s.newID("rtb"), vpcID: v.id, tags: tagsFrom(specs["route-table"]),
		routes: []*rtRoute{{dest: v.cidr, gatewayID: "local", origin: "CreateRouteTable"}}}
	s.st.rtbs[rt.id] = rt
	return struct {
		RouteTable  xRouteTable `xml:"routeTable"`
		ClientToken string      `xml:"clientToken,omitempty"`
	}{s.routeTableXML(rt), c.p.get("ClientToken")}, nil
}

func (s *Server) createRoute(c *call) (any, error) {
	id, err := c.p.require("RouteTableId")
	if err != nil {
		return nil, err
	}
	dest, err := c.p.require("DestinationCidrBlock")
	if err != nil {
		return nil, err
	}
	rt, err := s.lookupRouteTable(id)
	if err != nil {
		return nil, err
	}
	if _, err := parseCIDR(dest, "destinationCidrBlock"); err != nil {
		return nil, err
	}
	r := &rtRoute{dest: dest, origin: "CreateRoute",
		gatewayID: c.p.get("GatewayId"), instanceID: c.p.get("InstanceId"), natGatewayID: c.p.get("NatGatewayId")}
	targets := 0
	for _, t := range []string{r.gatewayID, r.instanceID, r.natGatewayID} {
		if t != "" {
			targets++
		}
	}
	if targets != 1 {
		return nil, errf(400, "InvalidParameterCombination", "The parameter combination is not valid: exactly one route target must be specified.")
	}
	if r.gatewayID != "" {
		g := s.st.igws[r.gatewayID]
		if g == nil {
			return nil, errf(400, "InvalidGatewayID.NotFound", "The gateway ID '%s' does not exist", r.gatewayID)
		}
		if g.vpcID != rt.vpcID {
			return nil, errf(400, "InvalidParameterValue", "route table %s and network gateway %s belong to different networks", rt.id, g.id)
		}
	}
	if r.instanceID != "" {
		if in := s.st.instances[r.instanceID]; in == nil {
			return nil, notFound("InvalidInstanceID.NotFound", "instance", []string{r.instanceID})
		}
	}
	for _, o := range rt.routes {
		if o.dest == dest {
			return nil, errf(400, "RouteAlreadyExists", "The route identified by %s already exists.", dest)
		}
	}
	rt.routes = append(rt.routes, r)
	return returnResponse{true}, nil
}

func (s *Server) deleteRoute(c *call) (any, error) {
	id, err := c.p.require("RouteTableId")
	if err != nil {
		return nil, err
	}
	dest, err := c.p.require("DestinationCidrBlock")
	if err != nil {
		return nil, err
	}
	rt, err := s.lookupRouteTable(id)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(rt.routes, func(r *rtRoute) bool { return r.dest == dest })
	if i < 0 {
		return nil, errf(400, "InvalidRoute.NotFound", "no route with destination-cidr-block %s in route table %s", dest, id)
	}
	if rt.routes[i].gatewayID == "local" {
		return nil, errf(400, "InvalidParameterValue", "cannot remove local route %s in route table %s", dest, id)
	}
	rt.routes = slices.Delete(rt.routes, i, i+1)
	return returnResponse{true}, nil
}

func (s *Server) associateRouteTable(c *call) (any, error) {
	id, err := c.p.require("RouteTableId")
	if err != nil {
		return nil, err
	}
	sid, err := c.p.require("SubnetId")
	if err != nil {
		return nil, err
	}
	rt, err := s.lookupRouteTable(id)
	if err != nil {
		return nil, err
	}
	sn, err := s.lookupSubnet(sid)
	if err != nil {
		return nil, err
	}
	if sn.vpcID != rt.vpcID {
		return nil, errf(400, "InvalidParameterValue", "route table %s and subnet %s belong to different networks", rt.id, sn.id)
	}
	for _, o := range s.st.rtbs {
		for _, a := range o.assocs {
			if a.subnetID == sid {
				return nil, errf(400, "Resource.AlreadyAssociated",
					"the specified association for route table %s conflicts with an existing association", rt.id)
			}
		}
	}
	a := &rtAssoc{id: s.newID("rtbassoc"), subnetID: sid}
	rt.assocs = append(rt.assocs, a)
	return struct {
		AssociationID string      `xml:"associationId"`
		State         xCidrStatus `xml:"associationState"`
	}{a.id, xCidrStatus{"associated"}}, nil
}

func (s *Server) disassociateRouteTable(c *call) (any, error) {
	id, err := c.p.require("AssociationId")
	if err != nil {
		return nil, err
	}
	for _, rt := range s.st.rtbs {
		for i, a := range rt.assocs {
			if a.id != id {
				continue
			}
			if a.main {
				return nil, errf(400, "InvalidParameterValue", "cannot disassociate the main route table association %s", id)
			}
			rt.assocs = slices.Delete(rt.assocs, i, i+1)
			return returnResponse{true}, nil
		}
	}
	return nil, errf(400, "InvalidAssociationID.NotFound", "The association ID '%s' does not exist", id)
}

func (s *Server) deleteRouteTable(c *call) (any, error) {
	id, err := c.p.require("RouteTableId")
	if err != nil {
		return nil, err
	}
	rt, err := s.lookupRouteTable(id)
	if err != nil {
		return nil, err
	}
	if len(rt.assocs) > 0 {
		return nil, errf(400, "DependencyViolation", "The routeTable '%s' has dependencies and cannot be deleted.", id)
	}
	delete(s.st.rtbs, id)
	return returnResponse{true}, nil
}
