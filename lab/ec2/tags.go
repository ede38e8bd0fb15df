package ec2

import (
	"maps"
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
