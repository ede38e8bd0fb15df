package ec2

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// How the lab finds resources by id, and how its Describe actions answer:
// the one place each kind of resource differs from the others is its kind
// (below) and, for a Describe, its listing.

// kind is what EC2's answers differ by, one kind of resource from another,
// when an id the call names is not an id or names nothing.
type kind struct {
	prefix    string // of its ids: "vpc" in vpc-0a1b2c3d
	malformed string // the code for an id that is not one of its ids; "": any id is looked up
	notFound  string // the code for an id that names nothing
	noun      string // the message's name for it: "The vpc ID '…' does not exist"
	// message, where EC2 words it otherwise, is the whole NotFound
	// message, the ids (joined by ", ") standing for its %s.
	message string
}

var (
	vpcKind          = kind{prefix: "vpc", malformed: "InvalidVpcID.Malformed", notFound: "InvalidVpcID.NotFound", noun: "vpc"}
	subnetKind       = kind{prefix: "subnet", malformed: "InvalidSubnetID.Malformed", notFound: "InvalidSubnetID.NotFound", noun: "subnet"}
	igwKind          = kind{prefix: "igw", malformed: "InvalidInternetGatewayID.Malformed", notFound: "InvalidInternetGatewayID.NotFound", noun: "internetGateway"}
	routeTableKind   = kind{prefix: "rtb", malformed: "InvalidRouteTableID.Malformed", notFound: "InvalidRouteTableID.NotFound", noun: "routeTable"}
	networkACLKind   = kind{prefix: "acl", malformed: "InvalidNetworkAclID.Malformed", notFound: "InvalidNetworkAclID.NotFound", noun: "network ACL"}
	instanceKind     = kind{prefix: "i", malformed: "InvalidInstanceID.Malformed", notFound: "InvalidInstanceID.NotFound", noun: "instance"}
	volumeKind       = kind{prefix: "vol", malformed: "InvalidVolumeID.Malformed", notFound: "InvalidVolume.NotFound", noun: "volume"}
	profileAssocKind = kind{prefix: "iip-assoc", malformed: "InvalidAssociationID.Malformed", notFound: "InvalidAssociationID.NotFound", noun: "association"}
	sgRuleKind       = kind{prefix: "sgr", malformed: "InvalidSecurityGroupRuleId.Malformed", notFound: "InvalidSecurityGroupRuleId.NotFound", noun: "security group rule"}
	// "The security group 'sg-…' does not exist", whichever action asks
	// (boto/boto3#701 quotes DescribeSecurityGroups).
	sgKind = kind{prefix: "sg", malformed: "InvalidGroupId.Malformed", notFound: "InvalidGroup.NotFound",
		message: "The security group '%s' does not exist"}
	// "The image id '[ami-…]' does not exist", whichever action asks
	// (cloudposse/terraform-aws-ec2-ami-backup#16 quotes CreateTags).
	imageKind = kind{prefix: "ami", malformed: "InvalidAMIID.Malformed", notFound: "InvalidAMIID.NotFound",
		message: "The image id '[%s]' does not exist"}
	// Key pairs are asked for by name as often as by id; neither is checked
	// for its shape.
	keyPairKind = kind{prefix: "key", notFound: "InvalidKeyPair.NotFound", message: "The key pair '%s' does not exist"}
)

// missing is the error for ids that name nothing of this kind.
func (k kind) missing(ids []string) *apiError {
	if k.message != "" {
		return errf(400, k.notFound, "%s", fmt.Sprintf(k.message, strings.Join(ids, ", ")))
	}
	return notFound(k.notFound, k.noun, ids)
}

// pick returns the resources of m the ids name, in their order, failing as
// EC2 does: at the first id that is not one of the kind's, or with every id
// that names nothing.
func pick[T any](m map[string]T, k kind, ids []string) ([]T, error) {
	var out []T
	var missing []string
	for _, id := range ids {
		if v, ok := m[id]; ok {
			out = append(out, v)
			continue
		}
		if k.malformed != "" && !validID(k.prefix, id) {
			return nil, malformed(k.malformed, id, k.prefix)
		}
		missing = append(missing, id)
	}
	if len(missing) > 0 {
		return nil, k.missing(missing)
	}
	return out, nil
}

// lookup returns the resource of m with this id.
func lookup[T any](m map[string]T, k kind, id string) (T, error) {
	got, err := pick(m, k, []string{id})
	if err != nil {
		var none T
		return none, err
	}
	return got[0], nil
}

// selectByID returns all resources of m sorted by id, or, when the call
// names ids, exactly those (sorted, once each).
func selectByID[T any](m map[string]T, k kind, ids []string) ([]T, error) {
	if len(ids) == 0 {
		return sortedValues(m), nil
	}
	if _, err := pick(m, k, ids); err != nil {
		return nil, err
	}
	sel := make(map[string]T, len(ids))
	for _, id := range ids {
		sel[id] = m[id]
	}
	return sortedValues(sel), nil
}

// byID is the pick of a listing whose call names its resources by id.
func byID[E any](m map[string]*E, k kind, ids []string) func() ([]*E, error) {
	return func() ([]*E, error) { return selectByID(m, k, ids) }
}

// listing is how one Describe action lists its kind of resource.
type listing[E any] struct {
	// pageMin and pageMax are MaxResults' range; with none, the action
	// reads neither MaxResults nor NextToken and answers in one page.
	pageMin, pageMax int
	// pageCap, when set, is the most a page holds whatever MaxResults
	// asks for (without MaxResults, a page holds them all).
	pageCap int
	// pick returns the resources the call names (all of them, when it
	// names none), sorted by id; it runs once MaxResults is known good.
	pick func() ([]*E, error)
	// filter gives a resource's values for the call's Filter.N.Name.
	filter func(*E) filterFunc
	// id is what pages them.
	id func(*E) string
}

// page answers the call as every Describe action does: MaxResults and
// NextToken read, the resources pick gives kept where they pass every
// filter (an unknown filter name refused), and the page after NextToken
// with the token of the next ("" on the last).
func (l listing[E]) page(c *call) ([]*E, string, error) {
	limit, after := 0, ""
	if l.pageMax > 0 {
		var err error
		if limit, after, err = c.p.paging(l.pageMin, l.pageMax); err != nil {
			return nil, "", err
		}
	}
	if l.pageCap > 0 {
		limit = min(limit, l.pageCap)
	}
	items, err := l.pick()
	if err != nil {
		return nil, "", err
	}
	out, err := applyFilters(items, c.p.filters(), l.filter, new(E))
	if err != nil {
		return nil, "", err
	}
	page, next := paginate(out, l.id, limit, after)
	return page, next, nil
}

// describe answers a Describe action with a page of l, each resource as x
// renders it, in the set EC2 names for the action ("vpcSet").
func describe[E, X any](c *call, set string, x func(*E) X, l listing[E]) (any, error) {
	page, next, err := l.page(c)
	if err != nil {
		return nil, err
	}
	d := described[X]{set: set, next: next}
	for _, e := range page {
		d.items = append(d.items, x(e))
	}
	return d, nil
}

// described is a Describe action's answer: <set><item>…</item>…</set>
// (<set></set> when empty), then <nextToken> when there is a next page.
type described[X any] struct {
	set   string
	items []X
	next  string
}

func (d described[X]) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	if err := e.EncodeElement(set[X]{d.items}, xml.StartElement{Name: xml.Name{Local: d.set}}); err != nil {
		return err
	}
	if d.next != "" {
		if err := e.EncodeElement(d.next, xml.StartElement{Name: xml.Name{Local: "nextToken"}}); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}
