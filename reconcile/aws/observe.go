package aws

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

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
	if a.VPC.Adopt == nil && !claimed(f, reconcile.Address(reconcile.KindVPC, ""), c.VPCs, func(v reconcile.VPC) reconcile.Tags { return v.Tags }) {
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
			addr, mine := reconcile.Address(kind, name), false
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
			mine = mine || in.Tags[reconcile.TagFleet] == f.Name && in.Tags[reconcile.TagResource] == reconcile.Address(reconcile.KindInstance, h)
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
func claimed[T any](f *nest.Fleet, addr string, items []T, tags func(T) reconcile.Tags) bool {
	for _, x := range items {
		if t := tags(x); t[reconcile.TagFleet] == f.Name && t[reconcile.TagResource] == addr {
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

func (o *Observer) vpcs(ctx context.Context, queries [][]types.Filter) ([]reconcile.VPC, error) {
	seen := map[string]bool{}
	var out []reconcile.VPC
	for _, filters := range queries {
		p := ec2.NewDescribeVpcsPaginator(o.Client, &ec2.DescribeVpcsInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeVpcs")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe VPCs: %w", err)
			}
			for _, v := range page.Vpcs {
				if id := aws.ToString(v.VpcId); !seen[id] {
					seen[id] = true
					if tagMap(v.Tags)[reconcile.TagFleet] != "" || o.account == "" {
						o.account = aws.ToString(v.OwnerId)
					}
					out = append(out, reconcile.VPC{ID: id, CIDR: aws.ToString(v.CidrBlock), Tags: tagMap(v.Tags)})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) subnets(ctx context.Context, queries [][]types.Filter) ([]reconcile.Subnet, error) {
	seen := map[string]bool{}
	var out []reconcile.Subnet
	for _, filters := range queries {
		p := ec2.NewDescribeSubnetsPaginator(o.Client, &ec2.DescribeSubnetsInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeSubnets")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe subnets: %w", err)
			}
			for _, s := range page.Subnets {
				if id := aws.ToString(s.SubnetId); !seen[id] {
					seen[id] = true
					out = append(out, reconcile.Subnet{ID: id, VPCID: aws.ToString(s.VpcId), CIDR: aws.ToString(s.CidrBlock),
						Zone: aws.ToString(s.AvailabilityZone), MapPublicIP: aws.ToBool(s.MapPublicIpOnLaunch), Tags: tagMap(s.Tags)})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) internetGateways(ctx context.Context, queries [][]types.Filter) ([]reconcile.InternetGateway, error) {
	seen := map[string]bool{}
	var out []reconcile.InternetGateway
	for _, filters := range queries {
		p := ec2.NewDescribeInternetGatewaysPaginator(o.Client, &ec2.DescribeInternetGatewaysInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeInternetGateways")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe internet gateways: %w", err)
			}
			for _, g := range page.InternetGateways {
				id := aws.ToString(g.InternetGatewayId)
				if seen[id] {
					continue
				}
				seen[id] = true
				ig := reconcile.InternetGateway{ID: id, Tags: tagMap(g.Tags)}
				for _, at := range g.Attachments {
					if at.State == types.AttachmentStatusAttached || at.State == "available" {
						ig.VPCID = aws.ToString(at.VpcId)
					}
				}
				out = append(out, ig)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) routeTables(ctx context.Context, queries [][]types.Filter) ([]reconcile.RouteTable, error) {
	seen := map[string]bool{}
	var out []reconcile.RouteTable
	for _, filters := range queries {
		p := ec2.NewDescribeRouteTablesPaginator(o.Client, &ec2.DescribeRouteTablesInput{Filters: filters, MaxResults: o.page(100)})
		for p.HasMorePages() {
			o.count("DescribeRouteTables")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe route tables: %w", err)
			}
			for _, rt := range page.RouteTables {
				id := aws.ToString(rt.RouteTableId)
				if seen[id] {
					continue
				}
				seen[id] = true
				r := reconcile.RouteTable{ID: id, VPCID: aws.ToString(rt.VpcId), Tags: tagMap(rt.Tags)}
				for _, route := range rt.Routes {
					target := cmp.Or(aws.ToString(route.GatewayId), aws.ToString(route.NatGatewayId), aws.ToString(route.NetworkInterfaceId), aws.ToString(route.InstanceId))
					r.Routes = append(r.Routes, reconcile.Route{Destination: aws.ToString(route.DestinationCidrBlock), Target: target})
				}
				for _, as := range rt.Associations {
					if s := aws.ToString(as.SubnetId); s != "" {
						r.Associations = append(r.Associations, s)
					}
					r.Main = r.Main || aws.ToBool(as.Main)
				}
				sort.Strings(r.Associations)
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (o *Observer) securityGroups(ctx context.Context, queries [][]types.Filter) ([]reconcile.SecurityGroup, error) {
	seen := map[string]bool{}
	var out []reconcile.SecurityGroup
	for _, filters := range queries {
		p := ec2.NewDescribeSecurityGroupsPaginator(o.Client, &ec2.DescribeSecurityGroupsInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeSecurityGroups")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe security groups: %w", err)
			}
			for _, g := range page.SecurityGroups {
				id := aws.ToString(g.GroupId)
				if seen[id] {
					continue
				}
				seen[id] = true
				out = append(out, reconcile.SecurityGroup{ID: id, VPCID: aws.ToString(g.VpcId), Name: aws.ToString(g.GroupName),
					Ingress: rules(g.IpPermissions), Egress: rules(g.IpPermissionsEgress), Tags: tagMap(g.Tags)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func rules(perms []types.IpPermission) []reconcile.SecurityRule {
	var out []reconcile.SecurityRule
	for _, p := range perms {
		r := reconcile.SecurityRule{Protocol: aws.ToString(p.IpProtocol), FromPort: int(aws.ToInt32(p.FromPort)), ToPort: int(aws.ToInt32(p.ToPort))}
		if r.Protocol == "-1" {
			r.Protocol, r.FromPort, r.ToPort = "all", 0, 0
		}
		for _, ipr := range p.IpRanges {
			r.CIDRs = append(r.CIDRs, aws.ToString(ipr.CidrIp))
		}
		sort.Strings(r.CIDRs)
		out = append(out, r)
	}
	return out
}

// liveStates are the instance states nestbot observes: terminated
// instances are gone for every purpose.
var liveStates = []string{"pending", "running", "stopping", "stopped", "shutting-down"}

func (o *Observer) instances(ctx context.Context, queries [][]types.Filter) ([]reconcile.Instance, error) {
	state := types.Filter{Name: aws.String("instance-state-name"), Values: liveStates}
	seen := map[string]bool{}
	var out []reconcile.Instance
	rootVolume := map[string]string{} // volume id → instance id
	for _, filters := range queries {
		filters = append(slices.Clone(filters), state)
		p := ec2.NewDescribeInstancesPaginator(o.Client, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: o.page(1000)})
		for p.HasMorePages() {
			o.count("DescribeInstances")
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("aws: describe instances: %w", err)
			}
			for _, res := range page.Reservations {
				for _, in := range res.Instances {
					id := aws.ToString(in.InstanceId)
					if seen[id] {
						continue
					}
					seen[id] = true
					li := reconcile.Instance{ID: id, Type: string(in.InstanceType), ImageID: aws.ToString(in.ImageId),
						SubnetID: aws.ToString(in.SubnetId), VPCID: aws.ToString(in.VpcId), PrivateIP: aws.ToString(in.PrivateIpAddress),
						PublicIP: aws.ToString(in.PublicIpAddress), KeyName: aws.ToString(in.KeyName), Tags: tagMap(in.Tags)}
					if in.State != nil {
						li.State = string(in.State.Name)
					}
					if in.IamInstanceProfile != nil {
						li.InstanceProfile = path.Base(aws.ToString(in.IamInstanceProfile.Arn))
					}
					for _, bd := range in.BlockDeviceMappings {
						if aws.ToString(bd.DeviceName) == aws.ToString(in.RootDeviceName) && bd.Ebs != nil {
							li.RootVolume.ID = aws.ToString(bd.Ebs.VolumeId)
							rootVolume[li.RootVolume.ID] = id
						}
					}
					out = append(out, li)
				}
			}
		}
	}
	if err := o.volumes(ctx, out, rootVolume); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// volumes fills in the root volumes' size, type and encryption. They are
// described by id, up to maxVolumeIDs in one call and without MaxResults
// (EC2 refuses MaxResults with volume ids, and returns all of them), so
// that 1,000 instances cost one DescribeVolumes; a NextToken is followed
// should one come back.
func (o *Observer) volumes(ctx context.Context, instances []reconcile.Instance, byVolume map[string]string) error {
	if len(byVolume) == 0 {
		return nil
	}
	ids := make([]string, 0, len(byVolume))
	for id := range byVolume {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	index := map[string]int{}
	for i, in := range instances {
		index[in.ID] = i
	}
	fill := func(vols []types.Volume) {
		for _, v := range vols {
			id := aws.ToString(v.VolumeId)
			if i, ok := index[byVolume[id]]; ok {
				instances[i].RootVolume = reconcile.Volume{ID: id, SizeGB: int(aws.ToInt32(v.Size)), Type: string(v.VolumeType), Encrypted: aws.ToBool(v.Encrypted)}
			}
		}
	}
	for start := 0; start < len(ids); start += maxVolumeIDs {
		part := ids[start:min(start+maxVolumeIDs, len(ids))]
		err := o.describeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: part}, fill)
		var api smithy.APIError
		if errors.As(err, &api) && api.ErrorCode() == "InvalidVolume.NotFound" {
			// An instance went away since it was described, and its root
			// volume with it. A filter skips what does not exist: this part
			// is described again by filter, as many values as EC2 takes.
			err = nil
			for from := 0; from < len(part) && err == nil; from += maxFilterValues {
				err = o.describeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{
					{Name: aws.String("volume-id"), Values: part[from:min(from+maxFilterValues, len(part))]}}}, fill)
			}
		}
		if err != nil {
			return fmt.Errorf("aws: describe volumes: %w", err)
		}
	}
	return nil
}

// Limits of one Describe call. EC2's pagination guide asks for no more than
// 1,000 ids in one call; one filter takes fewer values (200 is the limit
// seen in practice; EC2 does not document it).
const (
	maxVolumeIDs    = 1000
	maxFilterValues = 200
)

func (o *Observer) describeVolumes(ctx context.Context, in *ec2.DescribeVolumesInput, fill func([]types.Volume)) error {
	p := ec2.NewDescribeVolumesPaginator(o.Client, in)
	for p.HasMorePages() {
		o.count("DescribeVolumes")
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		fill(page.Volumes)
	}
	return nil
}

// images resolves the AMIs the hosts ask for by name: one DescribeImages per
// distinct (name, owners), available images only. Exact ids are described too,
// so that an id that does not exist is an error at plan time.
func (o *Observer) images(ctx context.Context, f *nest.Fleet) ([]reconcile.Image, error) {
	type query struct{ name, owners string }
	seenQ := map[query]bool{}
	seen := map[string]bool{}
	var ids []string
	var out []reconcile.Image
	add := func(images []types.Image) {
		for _, im := range images {
			id := aws.ToString(im.ImageId)
			if seen[id] {
				continue
			}
			seen[id] = true
			ri := reconcile.Image{ID: id, Name: aws.ToString(im.Name), OwnerID: aws.ToString(im.OwnerId), State: string(im.State), RootDevice: aws.ToString(im.RootDeviceName)}
			ri.CreationDate, _ = parseAWSTime(aws.ToString(im.CreationDate))
			out = append(out, ri)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(f.Hosts)) {
		h := f.Hosts[name]
		if h.AWS == nil {
			continue
		}
		ami := h.AWS.AMI
		if ami.ID != "" {
			if !seen[ami.ID] && !slices.Contains(ids, ami.ID) {
				ids = append(ids, ami.ID)
			}
			continue
		}
		q := query{ami.Name, strings.Join(ami.Owners, ",")}
		if seenQ[q] {
			continue
		}
		seenQ[q] = true
		o.count("DescribeImages")
		res, err := o.Client.DescribeImages(ctx, &ec2.DescribeImagesInput{
			Owners:  ami.Owners,
			Filters: []types.Filter{{Name: aws.String("name"), Values: []string{ami.Name}}, {Name: aws.String("state"), Values: []string{"available"}}},
		})
		if err != nil {
			return nil, fmt.Errorf("aws: describe images named %q: %w", ami.Name, err)
		}
		add(res.Images)
	}
	if len(ids) > 0 {
		o.count("DescribeImages")
		res, err := o.Client.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: ids})
		if err != nil {
			return nil, fmt.Errorf("aws: describe images %s: %w", strings.Join(ids, ", "), err)
		}
		add(res.Images)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
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
