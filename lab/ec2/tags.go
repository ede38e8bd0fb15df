package ec2

import (
	"iter"
	"maps"
	"slices"
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

// tagged is one kind of resource that has tags: its kind, the resource
// type DescribeTags names, and the tags of each, by id.
type tagged struct {
	kind         kind
	resourceType string
	find         func(id string) *map[string]string // nil: none has this id
	each         iter.Seq2[string, map[string]string]
}

// taggedIn is the kind of resource m holds, by id; of gives one's id and
// its tags.
func taggedIn[T any](k kind, resourceType string, m map[string]T, of func(T) (string, *map[string]string)) tagged {
	return tagged{kind: k, resourceType: resourceType,
		find: func(id string) *map[string]string {
			v, ok := m[id]
			if !ok {
				return nil
			}
			_, tags := of(v)
			return tags
		},
		each: func(yield func(string, map[string]string) bool) {
			for _, v := range m {
				if id, tags := of(v); !yield(id, *tags) {
					return
				}
			}
		}}
}

// taggable is every kind of resource that has tags.
func (s *Server) taggable() []tagged {
	return []tagged{
		taggedIn(vpcKind, "vpc", s.st.vpcs, func(v *vpc) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(subnetKind, "subnet", s.st.subnets, func(v *subnet) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(igwKind, "internet-gateway", s.st.igws, func(v *internetGateway) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(routeTableKind, "route-table", s.st.rtbs, func(v *routeTable) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(sgKind, "security-group", s.st.sgs, func(v *securityGroup) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(instanceKind, "instance", s.st.instances, func(v *instance) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(volumeKind, "volume", s.st.volumes, func(v *volume) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(imageKind, "image", s.st.images, func(v *image) (string, *map[string]string) { return v.ID, &v.tags }),
		taggedIn(keyPairKind, "key-pair", s.keyPairsByID(), func(v *keyPair) (string, *map[string]string) { return v.id, &v.tags }),
		taggedIn(networkACLKind, "network-acl", s.st.acls, func(v *networkACL) (string, *map[string]string) { return v.id, &v.tags }),
	}
}

// tagsOf finds the tag map of any taggable resource by id.
func (s *Server) tagsOf(id string) (*map[string]string, error) {
	prefix, _, _ := strings.Cut(id, "-")
	kinds := s.taggable()
	i := slices.IndexFunc(kinds, func(t tagged) bool { return t.kind.prefix == prefix })
	if i < 0 {
		return nil, errf(400, "InvalidID", "The ID '%s' is not valid", id)
	}
	tags := kinds[i].find(id)
	if tags == nil {
		return nil, kinds[i].kind.missing([]string{id})
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
func (s *Server) allTags() []*tagDescription {
	var out []*tagDescription
	for _, t := range s.taggable() {
		for id, tags := range t.each {
			for k, v := range tags {
				out = append(out, &tagDescription{Key: k, ResourceID: id, ResourceType: t.resourceType, Value: v})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ResourceID != out[j].ResourceID {
			return out[i].ResourceID < out[j].ResourceID
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func tagDescriptionFilter(t *tagDescription) filterFunc {
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
}

func (s *Server) describeTags(c *call) (any, error) {
	xml := func(t *tagDescription) tagDescription { return *t }
	return describe(c, "tagSet", xml, listing[tagDescription]{pageMin: 5, pageMax: 1000,
		pick:   func() ([]*tagDescription, error) { return s.allTags(), nil },
		filter: tagDescriptionFilter, id: func(t *tagDescription) string { return t.ResourceID + "\x00" + t.Key }})
}
