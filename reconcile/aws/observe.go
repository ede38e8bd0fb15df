package aws

import (
	"context"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// DefaultPageSize is the MaxResults of the Describe calls that page through
// the fleet's resources (volumes and images are described by id or name
// instead). EC2 caps some calls lower (route tables at 100); the cap is
// applied.
const DefaultPageSize = 1000

// Observer reads the cloud plane of one fleet.
type Observer struct {
	Client   EC2
	PageSize int32 // 0: DefaultPageSize

	mu      sync.Mutex
	calls   map[string]int
	account string // the caller's account id, learned from the VPCs' owner
}

// Calls returns how many API calls of each kind the observer made.
func (o *Observer) Calls() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.calls))
	for k, v := range o.calls {
		out[k] = v
	}
	return out
}

func (o *Observer) count(op string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.calls == nil {
		o.calls = map[string]int{}
	}
	o.calls[op]++
}

func (o *Observer) page(limit int32) *int32 {
	n := o.PageSize
	if n == 0 {
		n = DefaultPageSize
	}
	return aws.Int32(min(n, limit))
}

func fleetFilter(fleet string) []types.Filter {
	return []types.Filter{{Name: aws.String("tag:" + reconcile.TagFleet), Values: []string{fleet}}}
}

// Observe reads every resource tagged as the fleet's, the untagged ones
// that nest.yaml names for adoption, the root volumes of the instances, and
// the images the hosts ask for. Every Describe is paginated and filtered by
// tags, so the number of calls grows with pages, not with resources.
func (o *Observer) Observe(ctx context.Context, f *nest.Fleet) (reconcile.Cloud, error) {
	var c reconcile.Cloud
	if f.AWS == nil {
		return c, nil
	}
	c.Region = f.AWS.Region
	tagged := fleetFilter(f.Name)
	a := f.AWS
	queries := func(adopts []*nest.Adopt, idFilter string) [][]types.Filter {
		return append([][]types.Filter{tagged}, adoptFilters(adopts, idFilter)...)
	}
	var err error
	if c.VPCs, err = o.vpcs(ctx, queries([]*nest.Adopt{a.VPC.Adopt}, "vpc-id")); err != nil {
		return c, err
	}
	// No silent twins: what nestbot would create is looked for untagged,
	// once per kind, and only while something of that kind is neither the
	// fleet's nor adopted (a converged fleet costs no call more).
	if a.VPC.Adopt == nil && !claimed(f, reconcile.CloudAddress(reconcile.KindVPC, ""), c.VPCs, func(v reconcile.VPC) reconcile.Tags { return v.Tags }) {
		all, err := o.vpcs(ctx, [][]types.Filter{nil})
		if err != nil {
			return c, err
		}
		c.VPCs = merge(c.VPCs, all, func(v reconcile.VPC) string { return v.ID })
	}
	fleetVPCs := candidateVPCs(f, c.VPCs)
	lookFor := func(kind string, names []string, adopt func(string) *nest.Adopt, tags func(int) reconcile.Tags, n int) bool {
		if len(fleetVPCs) == 0 {
			return false
		}
		for _, name := range names {
			if adopt(name) != nil {
				continue
			}
			addr, mine := reconcile.CloudAddress(kind, name).String(), false
			for i := range n {
				mine = mine || tags(i)[reconcile.TagFleet] == f.Name && tags(i)[reconcile.TagResource] == addr
			}
			if !mine {
				return true
			}
		}
		return false
	}
	inFleetVPCs := func(filter string) [][]types.Filter {
		return [][]types.Filter{{{Name: aws.String(filter), Values: fleetVPCs}}}
	}

	subnetNames := slices.Sorted(maps.Keys(a.Subnets))
	subnetAdopts := []*nest.Adopt{}
	for _, name := range subnetNames {
		subnetAdopts = append(subnetAdopts, a.Subnets[name].Adopt)
	}
	if c.Subnets, err = o.subnets(ctx, queries(subnetAdopts, "subnet-id")); err != nil {
		return c, err
	}
	if lookFor(reconcile.KindSubnet, subnetNames, func(n string) *nest.Adopt { return a.Subnets[n].Adopt },
		func(i int) reconcile.Tags { return c.Subnets[i].Tags }, len(c.Subnets)) {
		more, err := o.subnets(ctx, inFleetVPCs("vpc-id"))
		if err != nil {
			return c, err
		}
		c.Subnets = merge(c.Subnets, more, func(s reconcile.Subnet) string { return s.ID })
	}
	one := func(adopt *nest.Adopt) func(string) *nest.Adopt { return func(string) *nest.Adopt { return adopt } }
	if c.InternetGateways, err = o.internetGateways(ctx, queries([]*nest.Adopt{a.InternetGateway.Adopt}, "internet-gateway-id")); err != nil {
		return c, err
	}
	if lookFor(reconcile.KindInternetGateway, []string{""}, one(a.InternetGateway.Adopt),
		func(i int) reconcile.Tags { return c.InternetGateways[i].Tags }, len(c.InternetGateways)) {
		more, err := o.internetGateways(ctx, inFleetVPCs("attachment.vpc-id"))
		if err != nil {
			return c, err
		}
		c.InternetGateways = merge(c.InternetGateways, more, func(g reconcile.InternetGateway) string { return g.ID })
	}
	if c.RouteTables, err = o.routeTables(ctx, queries([]*nest.Adopt{a.RouteTable.Adopt}, "route-table-id")); err != nil {
		return c, err
	}
	if lookFor(reconcile.KindRouteTable, []string{"public"}, one(a.RouteTable.Adopt),
		func(i int) reconcile.Tags { return c.RouteTables[i].Tags }, len(c.RouteTables)) {
		more, err := o.routeTables(ctx, inFleetVPCs("vpc-id"))
		if err != nil {
			return c, err
		}
		c.RouteTables = merge(c.RouteTables, more, func(r reconcile.RouteTable) string { return r.ID })
	}
	if c.SecurityGroups, err = o.securityGroups(ctx, queries([]*nest.Adopt{a.SecurityGroup.Adopt}, "group-id")); err != nil {
		return c, err
	}
	if lookFor(reconcile.KindSecurityGroup, []string{""}, one(a.SecurityGroup.Adopt),
		func(i int) reconcile.Tags { return c.SecurityGroups[i].Tags }, len(c.SecurityGroups)) {
		more, err := o.securityGroups(ctx, inFleetVPCs("vpc-id"))
		if err != nil {
			return c, err
		}
		c.SecurityGroups = merge(c.SecurityGroups, more, func(g reconcile.SecurityGroup) string { return g.ID })
	}

	var hosts []string
	var instanceAdopts []*nest.Adopt
	for _, name := range slices.Sorted(maps.Keys(f.Hosts)) {
		if h := f.Hosts[name]; h.AWS != nil {
			hosts = append(hosts, name)
			instanceAdopts = append(instanceAdopts, h.AWS.Adopt)
		}
	}
	if c.Instances, err = o.instances(ctx, queries(instanceAdopts, "instance-id")); err != nil {
		return c, err
	}
	// An instance that looks like a host's is one Named as it, anywhere.
	var named []string
	for _, h := range hosts {
		mine := false
		for _, in := range c.Instances {
			mine = mine || in.Tags[reconcile.TagFleet] == f.Name && in.Tags[reconcile.TagResource] == reconcile.CloudAddress(reconcile.KindInstance, h).String()
		}
		if !mine && f.Hosts[h].AWS.Adopt == nil {
			named = append(named, reconcile.LookalikeNames(f.Name, reconcile.KindInstance, h)...)
		}
	}
	if len(named) > 0 {
		more, err := o.instances(ctx, [][]types.Filter{{{Name: aws.String("tag:Name"), Values: named}}})
		if err != nil {
			return c, err
		}
		c.Instances = merge(c.Instances, more, func(in reconcile.Instance) string { return in.ID })
	}
	if c.Images, err = o.images(ctx, f); err != nil {
		return c, err
	}
	c.AccountID = o.account
	return c, nil
}

// claimed reports whether one of the observed resources carries the
// fleet's tags for addr.
func claimed[T any](f *nest.Fleet, addr reconcile.Address, items []T, tags func(T) reconcile.Tags) bool {
	for _, x := range items {
		if t := tags(x); t[reconcile.TagFleet] == f.Name && t[reconcile.TagResource] == addr.String() {
			return true
		}
	}
	return false
}

// candidateVPCs are the observed VPCs the fleet's network may be in: the
// fleet's own, those nest.yaml's adopt block found, and the untagged ones
// that look like it. The planner tells which it is.
func candidateVPCs(f *nest.Fleet, vpcs []reconcile.VPC) []string {
	var out []string
	for _, v := range vpcs {
		if v.Tags[reconcile.TagFleet] == f.Name || v.Tags[reconcile.TagFleet] == "" && (f.AWS.VPC.Adopt.Takes() || reconcile.VPCLooksLike(f, v)) {
			out = append(out, v.ID)
		}
	}
	return out
}

// merge adds to have what more holds that have does not, sorted by id.
func merge[T any](have, more []T, id func(T) string) []T {
	seen := map[string]bool{}
	for _, x := range have {
		seen[id(x)] = true
	}
	for _, x := range more {
		if !seen[id(x)] {
			seen[id(x)] = true
			have = append(have, x)
		}
	}
	sort.Slice(have, func(i, j int) bool { return id(have[i]) < id(have[j]) })
	return have
}

// adoptFilters returns, for each adopt block, the extra Describe filters
// that find its target: by id (idFilter), or by tag.
func adoptFilters(adopts []*nest.Adopt, idFilter string) [][]types.Filter {
	var out [][]types.Filter
	for _, ad := range adopts {
		switch {
		case !ad.Takes():
		case ad.GroupName != "":
			out = append(out, []types.Filter{{Name: aws.String("group-name"), Values: []string{ad.GroupName}}})
		case ad.ID != "":
			out = append(out, []types.Filter{{Name: aws.String(idFilter), Values: []string{ad.ID}}})
		case ad.Tag != "":
			k, v, _ := strings.Cut(ad.Tag, "=")
			out = append(out, []types.Filter{{Name: aws.String("tag:" + k), Values: []string{v}}})
		}
	}
	return out
}

func tagMap(tags []types.Tag) reconcile.Tags {
	if len(tags) == 0 {
		return nil
	}
	m := make(reconcile.Tags, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}
