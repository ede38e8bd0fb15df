package ec2

import (
	"maps"
	"sort"
	"strings"
)

// Tags returns a copy of the tags of the resource with this id (a VPC,
// subnet, internet gateway, route table, security group, instance, volume
// or image), and false when there is none.
func (s *Server) Tags(id string) (map[string]string, bool) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.tagsOf(id)
	if err != nil {
		return nil, false
	}
	return maps.Clone(*t), true
}

// tagsOf finds the tag map of any taggable resource by id.
func (s *Server) tagsOf(id string) (*map[string]string, error) {
	prefix, _, _ := strings.Cut(id, "-")
	var tags *map[string]string
	var code, what string
	switch prefix {
	case "vpc":
		if v := s.st.vpcs[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidVpcID.NotFound", "vpc"
	case "subnet":
		if v := s.st.subnets[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidSubnetID.NotFound", "subnet"
	case "igw":
		if v := s.st.igws[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidInternetGatewayID.NotFound", "internetGateway"
	case "rtb":
		if v := s.st.rtbs[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidRouteTableID.NotFound", "routeTable"
	case "sg":
		if v := s.st.sgs[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidGroup.NotFound", "security group"
	case "i":
		if v := s.st.instances[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidInstanceID.NotFound", "instance"
	case "vol":
		if v := s.st.volumes[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidVolume.NotFound", "volume"
	case "ami":
		if v := s.st.images[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidAMIID.NotFound", "image"
	case "key":
		for _, k := range s.st.keyPairs {
			if k.id == id {
				tags = &k.tags
			}
		}
		code, what = "InvalidKeyPair.NotFound", "key pair"
	case "acl":
		if v := s.st.acls[id]; v != nil {
			tags = &v.tags
		}
		code, what = "InvalidNetworkAclID.NotFound", "network ACL"
	default:
		return nil, errf(400, "InvalidID", "The ID '%s' is not valid", id)
	}
	if tags == nil {
		return nil, notFound(code, what, []string{id})
	}
	if *tags == nil {
		*tags = map[string]string{}
	}
	return tags, nil
}

func (s *Server) taggedResources(p params) ([]*map[string]string, error) {
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	var out []*map[string]string
	for _, id := range ids {
		t, err := s.tagsOf(id)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func (s *Server) createTags(c *call) (any, error) {
	targets, err := s.taggedResources(c.p)
	if err != nil {
		return nil, err
	}
	tags := c.p.tags("Tag")
	if len(tags) == 0 {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter tagSet")
	}
	if err := validateTags(tags); err != nil {
		return nil, err
	}
	for _, t := range targets {
		n := len(*t)
		for _, tg := range tags {
			if _, ok := (*t)[tg.key]; !ok {
				n++
			}
		}
		if n > 50 {
			return nil, errf(400, "TagLimitExceeded", "The maximum number of tags per resource is 50.")
		}
	}
	for _, t := range targets {
		for _, tg := range tags {
			(*t)[tg.key] = tg.value
		}
	}
	return returnResponse{true}, nil
}

func (s *Server) deleteTags(c *call) (any, error) {
	targets, err := s.taggedResources(c.p)
	if err != nil {
		return nil, err
	}
	items := c.p.items("Tag")
	for _, t := range targets {
		if len(items) == 0 {
			clear(*t)
			continue
		}
		for _, it := range items {
			k := it.get("Key")
			if v, ok := it["Value"]; ok && (*t)[k] != v {
				continue
			}
			delete(*t, k)
		}
	}
	return returnResponse{true}, nil
}

// SetTag sets one tag on the resource with this id, as CreateTags would,
// and reports whether there is such a resource.
func (s *Server) SetTag(id, key, value string) bool {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.tagsOf(id)
	if err != nil {
		return false
	}
	(*t)[key] = value
	return true
}

// tagDescription is one tag of one resource, as DescribeTags lists it.
type tagDescription struct {
	Key          string `xml:"key"`
	ResourceID   string `xml:"resourceId"`
	ResourceType string `xml:"resourceType"`
	Value        string `xml:"value"`
}

// allTags lists every tag of every resource, by resource id and key.
func (s *Server) allTags() []tagDescription {
	var out []tagDescription
	add := func(id, typ string, tags map[string]string) {
		for k, v := range tags {
			out = append(out, tagDescription{Key: k, ResourceID: id, ResourceType: typ, Value: v})
		}
	}
	for _, v := range s.st.vpcs {
		add(v.id, "vpc", v.tags)
	}
	for _, v := range s.st.subnets {
		add(v.id, "subnet", v.tags)
	}
	for _, v := range s.st.igws {
		add(v.id, "internet-gateway", v.tags)
	}
	for _, v := range s.st.rtbs {
		add(v.id, "route-table", v.tags)
	}
	for _, v := range s.st.sgs {
		add(v.id, "security-group", v.tags)
	}
	for _, v := range s.st.instances {
		add(v.id, "instance", v.tags)
	}
	for _, v := range s.st.volumes {
		add(v.id, "volume", v.tags)
	}
	for _, v := range s.st.images {
		add(v.ID, "image", v.tags)
	}
	for _, v := range s.st.keyPairs {
		add(v.id, "key-pair", v.tags)
	}
	for _, v := range s.st.acls {
		add(v.id, "network-acl", v.tags)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ResourceID != out[j].ResourceID {
			return out[i].ResourceID < out[j].ResourceID
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func (s *Server) describeTags(c *call) (any, error) {
	limit, after, err := c.p.paging(5, 1000)
	if err != nil {
		return nil, err
	}
	out, err := applyFilters(s.allTags(), c.p.filters(), func(t tagDescription) filterFunc {
		return func(name string) ([]string, bool) {
			switch name {
			case "key":
				return []string{t.Key}, true
			case "value":
				return []string{t.Value}, true
			case "resource-id":
				return []string{t.ResourceID}, true
			case "resource-type":
				return []string{t.ResourceType}, true
			}
			return tagFilter(map[string]string{t.Key: t.Value}, name)
		}
	}, tagDescription{})
	if err != nil {
		return nil, err
	}
	page, next := paginate(out, func(t tagDescription) string { return t.ResourceID + "\x00" + t.Key }, limit, after)
	return struct {
		Tags      set[tagDescription] `xml:"tagSet"`
		NextToken string              `xml:"nextToken,omitempty"`
	}{set[tagDescription]{page}, next}, nil
}
