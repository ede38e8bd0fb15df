package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// Applier carries out the cloud steps of a plan.
type Applier struct {
	Client EC2
	Fleet  *nest.Fleet
	// Live is the cloud as observed for the plan: it supplies the ids of
	// resources that already exist.
	Live *reconcile.Cloud
	// AuthKey returns the tailnet auth key for a new host's user-data.
	AuthKey func(ctx context.Context, host string) (string, error)
	Logf    func(format string, args ...any)
	// Poll is the interval of the bounded waits (default 2s); WaitTimeout
	// bounds each wait for an instance state (default 10m).
	Poll        time.Duration
	WaitTimeout time.Duration

	ids map[string]string // address → live id, grown as resources are created
}

// Result is what happened to one step.
type Result struct {
	Address string
	Action  reconcile.Action
	ID      string // the resource acted on or created
}

// Error is an apply failure: which step, the AWS error code, and what had
// been applied before it.
type Error struct {
	Address string
	Op      string
	Code    string // the AWS error code, e.g. InsufficientInstanceCapacity
	Applied []Result
	Err     error
}

func (e *Error) Error() string {
	msg := e.Err.Error()
	var api smithy.APIError
	if errors.As(e.Err, &api) {
		msg = api.ErrorCode() + ": " + api.ErrorMessage()
	}
	return fmt.Sprintf("aws: %s %s: %s", e.Op, e.Address, msg)
}

func (e *Error) Unwrap() error { return e.Err }

func (a *Applier) logf(format string, args ...any) {
	if a.Logf != nil {
		a.Logf(format, args...)
	}
}

// Apply runs the cloud steps in plan order and stops at the first failure,
// returning the steps applied before it (also inside the *Error).
func (a *Applier) Apply(ctx context.Context, steps []reconcile.Step) ([]Result, error) {
	a.indexLive()
	var done []Result
	for _, st := range steps {
		if st.Plane != reconcile.PlaneCloud || st.Action == reconcile.ActionDrift {
			continue
		}
		id, op, err := a.apply(ctx, st)
		if err != nil {
			e := &Error{Address: st.Address, Op: op, Applied: done, Err: err}
			var api smithy.APIError
			if errors.As(err, &api) {
				e.Code = api.ErrorCode()
			}
			return done, e
		}
		a.logf("%s %s: done (%s)", st.Action, st.Address, id)
		done = append(done, Result{Address: st.Address, Action: st.Action, ID: id})
	}
	return done, nil
}

func (a *Applier) indexLive() {
	a.ids = map[string]string{}
	if a.Live == nil {
		return
	}
	own := func(tags reconcile.Tags, id string) {
		if tags[reconcile.TagFleet] == a.Fleet.Name && tags[reconcile.TagResource] != "" {
			a.ids[tags[reconcile.TagResource]] = id
		}
	}
	for _, v := range a.Live.VPCs {
		own(v.Tags, v.ID)
	}
	for _, s := range a.Live.Subnets {
		own(s.Tags, s.ID)
	}
	for _, g := range a.Live.InternetGateways {
		own(g.Tags, g.ID)
	}
	for _, r := range a.Live.RouteTables {
		own(r.Tags, r.ID)
	}
	for _, g := range a.Live.SecurityGroups {
		own(g.Tags, g.ID)
	}
	for _, in := range a.Live.Instances {
		if in.State != "terminated" && in.State != "shutting-down" {
			own(in.Tags, in.ID)
		}
	}
}

// parseAddress splits aws.<kind>[.<name>].
func parseAddress(addr string) (kind, name string, ok bool) {
	rest, ok := strings.CutPrefix(addr, "aws.")
	if !ok {
		return "", "", false
	}
	kind, name, _ = strings.Cut(rest, ".")
	return kind, name, true
}

func (a *Applier) need(addr string) (string, error) {
	if id := a.ids[addr]; id != "" {
		return id, nil
	}
	return "", fmt.Errorf("%s does not exist yet; apply it first (or drop --target)", addr)
}

func (a *Applier) apply(ctx context.Context, st reconcile.Step) (id, op string, err error) {
	kind, name, ok := parseAddress(st.Address)
	if !ok {
		return "", "apply", fmt.Errorf("not a cloud address")
	}
	switch st.Action {
	case reconcile.ActionAdopt:
		if err := a.tag(ctx, st.ID, a.stepTags(kind, name, st)); err != nil {
			return "", "adopt", err
		}
		a.ids[st.Address] = st.ID
		return st.ID, "adopt", nil
	case reconcile.ActionCreate:
		id, err := a.create(ctx, kind, name)
		if err == nil {
			a.ids[st.Address] = id
		}
		return id, "create", err
	case reconcile.ActionUpdate:
		return st.ID, "update", a.update(ctx, kind, name, st)
	case reconcile.ActionDelete:
		err := a.delete(ctx, kind, st.ID)
		if err == nil {
			delete(a.ids, st.Address)
		}
		return st.ID, "delete", err
	case reconcile.ActionReplace:
		if err := a.delete(ctx, kind, st.ID); err != nil {
			return st.ID, "replace (delete)", err
		}
		delete(a.ids, st.Address)
		var id string
		var err error
		if kind == reconcile.KindInstance {
			id, err = a.createInstance(ctx, name, st.ID)
		} else {
			id, err = a.create(ctx, kind, name)
		}
		if err == nil {
			a.ids[st.Address] = id
		}
		return id, "replace (create)", err
	}
	return "", string(st.Action), fmt.Errorf("action %s is not a cloud action", st.Action)
}

func (a *Applier) desiredTags(kind, name string) reconcile.Tags {
	f := a.Fleet
	addr := reconcile.Address(kind, name)
	switch kind {
	case reconcile.KindSubnet:
		return reconcile.DesiredTags(f.Name, addr, f.Name+"-"+name, "")
	case reconcile.KindRouteTable:
		return reconcile.DesiredTags(f.Name, addr, f.Name+"-"+name, "")
	case reconcile.KindInstance:
		t := reconcile.DesiredTags(f.Name, addr, name, name)
		if h := f.Hosts[name]; h != nil && h.AWS != nil {
			t[reconcile.TagUserData] = reconcile.UserDataHash(f, h)
		}
		return t
	}
	return reconcile.DesiredTags(f.Name, addr, f.Name, "")
}

// stepTags are the tags an adopt or update writes: nestbot's own, and Name
// only where the step changes it, so that an adopted resource keeps the Name
// it had (Terraform's, say), as the plan shows.
func (a *Applier) stepTags(kind, name string, st reconcile.Step) reconcile.Tags {
	t := a.desiredTags(kind, name)
	if !slices.ContainsFunc(st.Changes, func(c reconcile.Change) bool { return c.Attr == "tags.Name" }) {
		delete(t, "Name")
	}
	return t
}

func tagSpec(rt types.ResourceType, tags reconcile.Tags) []types.TagSpecification {
	return []types.TagSpecification{{ResourceType: rt, Tags: sdkTags(tags)}}
}

func sdkTags(tags reconcile.Tags) []types.Tag {
	out := make([]types.Tag, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

func (a *Applier) tag(ctx context.Context, id string, tags reconcile.Tags) error {
	_, err := a.Client.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: sdkTags(tags)})
	return err
}

func (a *Applier) create(ctx context.Context, kind, name string) (string, error) {
	f, tags := a.Fleet, a.desiredTags(kind, name)
	switch kind {
	case reconcile.KindVPC:
		out, err := a.Client.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(f.AWS.VPC.CIDR), TagSpecifications: tagSpec(types.ResourceTypeVpc, tags)})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.Vpc.VpcId), nil
	case reconcile.KindSubnet:
		s := f.AWS.Subnets[name]
		vpc, err := a.need(reconcile.Address(reconcile.KindVPC, ""))
		if err != nil {
			return "", err
		}
		out, err := a.Client.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpc), CidrBlock: aws.String(s.CIDR),
			AvailabilityZone: aws.String(s.Zone), TagSpecifications: tagSpec(types.ResourceTypeSubnet, tags)})
		if err != nil {
			return "", err
		}
		id := aws.ToString(out.Subnet.SubnetId)
		if s.Public {
			if err := a.setMapPublicIP(ctx, id, true); err != nil {
				return id, err
			}
		}
		return id, nil
	case reconcile.KindInternetGateway:
		vpc, err := a.need(reconcile.Address(reconcile.KindVPC, ""))
		if err != nil {
			return "", err
		}
		out, err := a.Client.CreateInternetGateway(ctx, &ec2.CreateInternetGatewayInput{TagSpecifications: tagSpec(types.ResourceTypeInternetGateway, tags)})
		if err != nil {
			return "", err
		}
		id := aws.ToString(out.InternetGateway.InternetGatewayId)
		_, err = a.Client.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: aws.String(id), VpcId: aws.String(vpc)})
		return id, err
	case reconcile.KindRouteTable:
		vpc, err := a.need(reconcile.Address(reconcile.KindVPC, ""))
		if err != nil {
			return "", err
		}
		out, err := a.Client.CreateRouteTable(ctx, &ec2.CreateRouteTableInput{VpcId: aws.String(vpc), TagSpecifications: tagSpec(types.ResourceTypeRouteTable, tags)})
		if err != nil {
			return "", err
		}
		id := aws.ToString(out.RouteTable.RouteTableId)
		return id, a.syncRouteTable(ctx, id, nil)
	case reconcile.KindSecurityGroup:
		vpc, err := a.need(reconcile.Address(reconcile.KindVPC, ""))
		if err != nil {
			return "", err
		}
		out, err := a.Client.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String(f.Name + "-nest"),
			Description: aws.String("nestbot: " + f.Name + " hosts (egress-only unless nest.yaml says otherwise)"),
			VpcId:       aws.String(vpc), TagSpecifications: tagSpec(types.ResourceTypeSecurityGroup, tags)})
		if err != nil {
			return "", err
		}
		id := aws.ToString(out.GroupId)
		// EC2 gives a new group one egress rule: all traffic to 0.0.0.0/0.
		have := []reconcile.SecurityRule{{Protocol: "all", CIDRs: []string{"0.0.0.0/0"}}}
		return id, a.syncRules(ctx, id, nil, have)
	case reconcile.KindInstance:
		return a.createInstance(ctx, name, "")
	}
	return "", fmt.Errorf("unknown kind %q", kind)
}

func (a *Applier) setMapPublicIP(ctx context.Context, subnet string, on bool) error {
	_, err := a.Client.ModifySubnetAttribute(ctx, &ec2.ModifySubnetAttributeInput{SubnetId: aws.String(subnet),
		MapPublicIpOnLaunch: &types.AttributeBooleanValue{Value: aws.Bool(on)}})
	return err
}

// ClientToken derives the RunInstances idempotency token of a host's launch
// from the fleet, the host and what makes the instance the one nest.yaml
// asks for: the attributes whose change replaces it (AMI, subnet, key pair,
// root volume encryption, and the user-data template where
// aws.user_data_changes is replace). It never holds the commit: a launch
// whose answer was lost, applied again from another commit while EC2 does
// not show the instance yet, sends the same token, and EC2 answers with
// the instance it launched instead of launching a second. after lists the
// instances this token already launched and that are gone since (EC2
// keeps a token for at least 24 hours after its instance terminates), so
// that the host's next launch is a new one.
func ClientToken(f *nest.Fleet, h *nest.Host, ami string, after ...string) string {
	userData := ""
	if f.AWS != nil && f.AWS.UserDataChanges == "replace" {
		userData = reconcile.UserDataHash(f, h)
	}
	encrypted := h.AWS.RootVolume.Encrypted == nil || *h.AWS.RootVolume.Encrypted
	parts := []string{"nest-launch-1", f.Name, h.Name, ami, h.AWS.Subnet, h.AWS.KeyName, strconv.FormatBool(encrypted), userData}
	sum := sha256.Sum256([]byte(strings.Join(append(parts, after...), "\x00")))
	return "nest-" + hex.EncodeToString(sum[:])[:48]
}

// maxRelaunches bounds how often one create moves to a new token because
// the one before had launched an instance that is gone.
const maxRelaunches = 4

func (a *Applier) createInstance(ctx context.Context, host, replacing string) (string, error) {
	f := a.Fleet
	h := f.Hosts[host]
	if h == nil || h.AWS == nil {
		return "", fmt.Errorf("host %s has no aws block", host)
	}
	subnet, err := a.need(reconcile.Address(reconcile.KindSubnet, h.AWS.Subnet))
	if err != nil {
		return "", err
	}
	sg, err := a.need(reconcile.Address(reconcile.KindSecurityGroup, ""))
	if err != nil {
		return "", err
	}
	ami, rootDevice, err := a.image(h)
	if err != nil {
		return "", err
	}
	// An earlier apply may have launched it (its answer lost, or observed
	// before EC2 showed it): the host's tagged instance, in any state but
	// gone, is taken instead of launching a second.
	if in, err := a.launched(ctx, host, replacing); err != nil || in != nil {
		if err != nil {
			return "", err
		}
		return a.takeLaunched(ctx, host, in)
	}
	if a.AuthKey == nil {
		return "", errors.New("no tailnet auth key source: set tailnet.auth_key in nest.yaml")
	}
	key, err := a.AuthKey(ctx, host)
	if err != nil {
		return "", fmt.Errorf("tailnet auth key: %w", err)
	}
	tags := a.desiredTags(reconcile.KindInstance, host)
	in := &ec2.RunInstancesInput{
		ImageId: aws.String(ami), InstanceType: types.InstanceType(h.AWS.InstanceType),
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		SubnetId: aws.String(subnet), SecurityGroupIds: []string{sg},
		UserData: aws.String(EncodeUserData(UserData(f, h, key))),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String(rootDevice), Ebs: &types.EbsBlockDevice{
			VolumeSize: aws.Int32(int32(h.AWS.RootVolume.SizeGB)), VolumeType: types.VolumeType(h.AWS.RootVolume.Type),
			Encrypted: h.AWS.RootVolume.Encrypted, DeleteOnTermination: aws.Bool(true)}}},
		TagSpecifications: append(tagSpec(types.ResourceTypeInstance, tags), tagSpec(types.ResourceTypeVolume, tags)...),
	}
	if h.AWS.InstanceProfile != "" {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String(h.AWS.InstanceProfile)}
	}
	if h.AWS.KeyName != "" {
		in.KeyName = aws.String(h.AWS.KeyName)
	}
	var gone []string
	for range maxRelaunches {
		token := ClientToken(f, h, ami, gone...)
		in.ClientToken = aws.String(token)
		out, err := a.Client.RunInstances(ctx, in)
		var api smithy.APIError
		if errors.As(err, &api) && api.ErrorCode() == "IdempotentParameterMismatch" {
			// This token launched an instance with other arguments (another
			// auth key, another type): that one is the host's, or is gone.
			found, ended, err := a.byToken(ctx, token)
			switch {
			case err != nil:
				return "", err
			case found != nil:
				return a.takeLaunched(ctx, host, found)
			case len(ended) > 0:
				gone = append(gone, ended...)
				continue
			}
			return "", fmt.Errorf("an earlier apply launched this host's instance (ClientToken %s) and EC2 does not show it yet; "+
				"nothing was launched: plan and apply again in a few minutes", token)
		}
		if err != nil {
			return "", err
		}
		if len(out.Instances) != 1 {
			return "", fmt.Errorf("RunInstances returned %d instances", len(out.Instances))
		}
		launched := out.Instances[0]
		id := aws.ToString(launched.InstanceId)
		if s := instanceState(launched); s == "terminated" || s == "shutting-down" {
			// EC2 answered with what this token launched before, since gone.
			a.logf("create aws.instance.%s: %s, launched earlier with this ClientToken, is %s: launching anew", host, id, s)
			gone = append(gone, id)
			continue
		}
		a.logf("create aws.instance.%s: launched %s, waiting for it to run", host, id)
		// EC2 is eventually consistent: the new instance may be invisible to
		// DescribeInstances for a while. It is waited for, never launched again.
		return id, a.waitState(ctx, id, "running")
	}
	return "", fmt.Errorf("EC2 answered %d launches with instances that are gone (%s)", maxRelaunches, strings.Join(gone, ", "))
}

func instanceState(in types.Instance) string {
	if in.State == nil {
		return ""
	}
	return string(in.State.Name)
}

// launched finds the host's instance by nestbot's tags, in every state
// (terminated and shutting-down ones are gone; replacing is the instance
// this apply just terminated).
func (a *Applier) launched(ctx context.Context, host, replacing string) (*types.Instance, error) {
	in := &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + reconcile.TagFleet), Values: []string{a.Fleet.Name}},
		{Name: aws.String("tag:" + reconcile.TagResource), Values: []string{reconcile.Address(reconcile.KindInstance, host)}},
	}}
	var found *types.Instance
	p := ec2.NewDescribeInstancesPaginator(a.Client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("look for the host's instance before launching: %w", err)
		}
		for _, r := range page.Reservations {
			for i, x := range r.Instances {
				s := instanceState(x)
				if s == "terminated" || s == "shutting-down" || aws.ToString(x.InstanceId) == replacing {
					continue
				}
				if found == nil || aws.ToString(x.InstanceId) < aws.ToString(found.InstanceId) {
					found = &r.Instances[i]
				}
			}
		}
	}
	return found, nil
}

// byToken finds what a ClientToken launched: the instance that is not
// gone, or the ids of those that are.
func (a *Applier) byToken(ctx context.Context, token string) (alive *types.Instance, gone []string, err error) {
	out, err := a.Client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("client-token"), Values: []string{token}}}})
	if err != nil {
		return nil, nil, fmt.Errorf("look for the instance ClientToken %s launched: %w", token, err)
	}
	for _, r := range out.Reservations {
		for i, x := range r.Instances {
			switch instanceState(x) {
			case "terminated", "shutting-down":
				gone = append(gone, aws.ToString(x.InstanceId))
			default:
				alive = &r.Instances[i]
			}
		}
	}
	sort.Strings(gone)
	return alive, gone, nil
}

// takeLaunched makes an instance found already launched the host's: waited
// for while it starts, taken as it is otherwise (the next plan shows what
// differs from nest.yaml).
func (a *Applier) takeLaunched(ctx context.Context, host string, in *types.Instance) (string, error) {
	id, state := aws.ToString(in.InstanceId), instanceState(*in)
	a.logf("create aws.instance.%s: %s (%s) was launched for it already: taking it, not launching another", host, id, state)
	if state == "pending" || state == "running" {
		return id, a.waitState(ctx, id, "running")
	}
	return id, nil
}

// image finds the AMI (and its root device) of a host, as the plan resolved it.
func (a *Applier) image(h *nest.Host) (id, rootDevice string, err error) {
	var best *reconcile.Image
	for i := range a.Live.Images {
		im := &a.Live.Images[i]
		if h.AWS.AMI.ID != "" && im.ID == h.AWS.AMI.ID {
			best = im
			break
		}
		if h.AWS.AMI.ID == "" && im.State == "available" && matchName(h.AWS.AMI.Name, im.Name) &&
			(best == nil || im.CreationDate.After(best.CreationDate) || im.CreationDate.Equal(best.CreationDate) && im.ID > best.ID) {
			best = im
		}
	}
	if best == nil {
		return "", "", fmt.Errorf("no image for host %s (ami %q): plan again", h.Name, cmp.Or(h.AWS.AMI.ID, h.AWS.AMI.Name))
	}
	return best.ID, cmp.Or(best.RootDevice, "/dev/xvda"), nil
}

func (a *Applier) waitState(ctx context.Context, id, want string) error {
	poll, limit := a.Poll, a.WaitTimeout
	if poll == 0 {
		poll = 2 * time.Second
	}
	if limit == 0 {
		limit = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := "not visible yet"
	for {
		out, err := a.Client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		var api smithy.APIError
		switch {
		case err == nil:
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					if in.State != nil {
						last = string(in.State.Name)
					}
				}
			}
			if last == want {
				return nil
			}
			if last == "terminated" && want != "terminated" {
				return fmt.Errorf("instance %s terminated while waiting for it to be %s", id, want)
			}
		case errors.As(err, &api) && api.ErrorCode() == "InvalidInstanceID.NotFound":
			if want == "terminated" && last != "not visible yet" {
				return nil // gone
			}
		case ctx.Err() != nil:
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instance %s: still %s after %s, want %s", id, last, limit, want)
		case <-time.After(poll):
		}
	}
}

func (a *Applier) update(ctx context.Context, kind, name string, st reconcile.Step) error {
	changed := map[string]reconcile.Change{}
	tagsChanged := false
	for _, c := range st.Changes {
		changed[c.Attr] = c
		tagsChanged = tagsChanged || strings.HasPrefix(c.Attr, "tags.")
	}
	if tagsChanged {
		if err := a.tag(ctx, st.ID, a.stepTags(kind, name, st)); err != nil {
			return err
		}
	}
	switch kind {
	case reconcile.KindSubnet:
		if _, ok := changed["map_public_ip"]; ok {
			return a.setMapPublicIP(ctx, st.ID, a.Fleet.AWS.Subnets[name].Public)
		}
	case reconcile.KindInternetGateway:
		if _, ok := changed["vpc"]; ok {
			vpc, err := a.need(reconcile.Address(reconcile.KindVPC, ""))
			if err != nil {
				return err
			}
			_, err = a.Client.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: aws.String(st.ID), VpcId: aws.String(vpc)})
			return err
		}
	case reconcile.KindRouteTable:
		return a.syncRouteTable(ctx, st.ID, a.liveRouteTable(st.ID))
	case reconcile.KindSecurityGroup:
		var in, eg []reconcile.SecurityRule
		for _, g := range a.Live.SecurityGroups {
			if g.ID == st.ID {
				in, eg = g.Ingress, g.Egress
			}
		}
		return a.syncRules(ctx, st.ID, in, eg)
	case reconcile.KindInstance:
		return a.updateInstance(ctx, name, st.ID, changed)
	}
	return nil
}

func (a *Applier) updateInstance(ctx context.Context, host, id string, changed map[string]reconcile.Change) error {
	h := a.Fleet.Hosts[host]
	var live *reconcile.Instance
	for i := range a.Live.Instances {
		if a.Live.Instances[i].ID == id {
			live = &a.Live.Instances[i]
		}
	}
	if live == nil {
		return fmt.Errorf("instance %s is not in the observed state: plan again", id)
	}
	if c, ok := changed["root_volume.size_gb"]; ok || changed["root_volume.type"].Attr != "" {
		in := &ec2.ModifyVolumeInput{VolumeId: aws.String(live.RootVolume.ID), VolumeType: types.VolumeType(h.AWS.RootVolume.Type)}
		if ok {
			size, _ := strconv.Atoi(c.After)
			in.Size = aws.Int32(int32(size))
		}
		if _, err := a.Client.ModifyVolume(ctx, in); err != nil {
			return err
		}
	}
	if _, ok := changed["instance_profile"]; ok {
		if err := a.setInstanceProfile(ctx, host, id, h.AWS.InstanceProfile); err != nil {
			return err
		}
	}
	_, typeChanged := changed["instance_type"]
	_, start := changed["state"]
	if typeChanged {
		// The type of a running instance cannot change: stop → modify → start.
		if live.State == "running" || live.State == "pending" {
			a.logf("update aws.instance.%s: stopping %s to change its type", host, id)
			if _, err := a.Client.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}); err != nil {
				return err
			}
		}
		if err := a.waitState(ctx, id, "stopped"); err != nil {
			return err
		}
		a.logf("update aws.instance.%s: changing the type of %s from %s to %s", host, id, live.Type, h.AWS.InstanceType)
		if _, err := a.Client.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(id),
			InstanceType: &types.AttributeValue{Value: aws.String(h.AWS.InstanceType)}}); err != nil {
			return err
		}
		start = true
	}
	if start {
		if live.State == "stopping" && !typeChanged {
			if err := a.waitState(ctx, id, "stopped"); err != nil {
				return err
			}
		}
		a.logf("update aws.instance.%s: starting %s, waiting for it to run", host, id)
		if _, err := a.Client.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}}); err != nil {
			return err
		}
		return a.waitState(ctx, id, "running")
	}
	return nil
}

// setInstanceProfile makes want ("" for none) the instance's IAM instance
// profile, as EC2 does it: the current association is looked up, then
// replaced, removed, or made when there is none.
func (a *Applier) setInstanceProfile(ctx context.Context, host, id, want string) error {
	out, err := a.Client.DescribeIamInstanceProfileAssociations(ctx, &ec2.DescribeIamInstanceProfileAssociationsInput{
		Filters: []types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}}})
	if err != nil {
		return err
	}
	var current *types.IamInstanceProfileAssociation
	for i, as := range out.IamInstanceProfileAssociations {
		if as.State == types.IamInstanceProfileAssociationStateAssociated || as.State == types.IamInstanceProfileAssociationStateAssociating {
			current = &out.IamInstanceProfileAssociations[i]
		}
	}
	profile := &types.IamInstanceProfileSpecification{Name: aws.String(want)}
	switch {
	case current == nil && want == "":
		return nil
	case current == nil:
		a.logf("update aws.instance.%s: associating instance profile %s with %s", host, want, id)
		_, err = a.Client.AssociateIamInstanceProfile(ctx, &ec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id), IamInstanceProfile: profile})
	case want == "":
		a.logf("update aws.instance.%s: disassociating instance profile %s from %s", host, profileName(current), id)
		_, err = a.Client.DisassociateIamInstanceProfile(ctx, &ec2.DisassociateIamInstanceProfileInput{AssociationId: current.AssociationId})
	default:
		a.logf("update aws.instance.%s: replacing instance profile %s of %s with %s", host, profileName(current), id, want)
		_, err = a.Client.ReplaceIamInstanceProfileAssociation(ctx, &ec2.ReplaceIamInstanceProfileAssociationInput{
			AssociationId: current.AssociationId, IamInstanceProfile: profile})
	}
	return err
}

func profileName(as *types.IamInstanceProfileAssociation) string {
	if as.IamInstanceProfile == nil {
		return aws.ToString(as.AssociationId)
	}
	return path.Base(aws.ToString(as.IamInstanceProfile.Arn))
}

func (a *Applier) liveRouteTable(id string) *reconcile.RouteTable {
	for i := range a.Live.RouteTables {
		if a.Live.RouteTables[i].ID == id {
			return &a.Live.RouteTables[i]
		}
	}
	return nil
}

// syncRouteTable makes the public route table route 0.0.0.0/0 to the
// internet gateway and be associated with exactly the public subnets.
func (a *Applier) syncRouteTable(ctx context.Context, id string, have *reconcile.RouteTable) error {
	igw, err := a.need(reconcile.Address(reconcile.KindInternetGateway, ""))
	if err != nil {
		return err
	}
	hasDefault := false
	if have != nil {
		for _, r := range have.Routes {
			if r.Destination == "0.0.0.0/0" {
				if r.Target == igw {
					hasDefault = true
					continue
				}
				if _, err := a.Client.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(id), DestinationCidrBlock: aws.String("0.0.0.0/0")}); err != nil {
					return err
				}
			}
		}
	}
	if !hasDefault {
		if _, err := a.Client.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(id), DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: aws.String(igw)}); err != nil {
			return err
		}
	}
	want := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(a.Fleet.AWS.Subnets)) {
		if a.Fleet.AWS.Subnets[name].Public {
			sid, err := a.need(reconcile.Address(reconcile.KindSubnet, name))
			if err != nil {
				return err
			}
			want[sid] = true
		}
	}
	// Associations are re-read: disassociating needs their ids.
	out, err := a.Client.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{id}})
	if err != nil {
		return err
	}
	associated := map[string]bool{}
	for _, rt := range out.RouteTables {
		for _, as := range rt.Associations {
			sid := aws.ToString(as.SubnetId)
			if sid == "" {
				continue
			}
			if !want[sid] {
				if _, err := a.Client.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: as.RouteTableAssociationId}); err != nil {
					return err
				}
				continue
			}
			associated[sid] = true
		}
	}
	for _, sid := range slices.Sorted(maps.Keys(want)) {
		if !associated[sid] {
			if _, err := a.Client.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: aws.String(id), SubnetId: aws.String(sid)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncRules authorizes the missing rules and revokes the extra ones.
func (a *Applier) syncRules(ctx context.Context, id string, haveIn, haveEg []reconcile.SecurityRule) error {
	sg := a.Fleet.AWS.SecurityGroup
	addIn, delIn := ruleDiff(desired(sg.Ingress), haveIn)
	addEg, delEg := ruleDiff(desired(sg.Egress), haveEg)
	if len(delIn) > 0 {
		if _, err := a.Client.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: delIn}); err != nil {
			return err
		}
	}
	if len(delEg) > 0 {
		if _, err := a.Client.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: aws.String(id), IpPermissions: delEg}); err != nil {
			return err
		}
	}
	if len(addIn) > 0 {
		if _, err := a.Client.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: addIn}); err != nil {
			return err
		}
	}
	if len(addEg) > 0 {
		if _, err := a.Client.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: aws.String(id), IpPermissions: addEg}); err != nil {
			return err
		}
	}
	return nil
}

func desired(rules []nest.Rule) []reconcile.SecurityRule {
	out := make([]reconcile.SecurityRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, reconcile.SecurityRule{Protocol: r.Protocol, FromPort: r.Ports.From, ToPort: r.Ports.To, CIDRs: r.CIDRs})
	}
	return out
}

// ruleKey is one (protocol, ports, CIDR) permission.
type ruleKey struct {
	proto    string
	from, to int
	cidr     string
}

func flatten(rules []reconcile.SecurityRule) map[ruleKey]bool {
	m := map[ruleKey]bool{}
	for _, r := range rules {
		proto := r.Protocol
		if proto == "-1" {
			proto = "all"
		}
		from, to := r.FromPort, r.ToPort
		if proto == "all" {
			from, to = 0, 0
		}
		for _, c := range r.CIDRs {
			m[ruleKey{proto, from, to, c}] = true
		}
	}
	return m
}

func ruleDiff(want, have []reconcile.SecurityRule) (add, del []types.IpPermission) {
	w, h := flatten(want), flatten(have)
	perm := func(k ruleKey) types.IpPermission {
		p := types.IpPermission{IpProtocol: aws.String(k.proto), IpRanges: []types.IpRange{{CidrIp: aws.String(k.cidr)}}}
		if k.proto == "all" {
			p.IpProtocol = aws.String("-1")
		} else {
			p.FromPort, p.ToPort = aws.Int32(int32(k.from)), aws.Int32(int32(k.to))
		}
		return p
	}
	for _, k := range sortedRuleKeys(w) {
		if !h[k] {
			add = append(add, perm(k))
		}
	}
	for _, k := range sortedRuleKeys(h) {
		if !w[k] {
			del = append(del, perm(k))
		}
	}
	return add, del
}

func sortedRuleKeys(m map[ruleKey]bool) []ruleKey {
	keys := make([]ruleKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortRuleKeys(keys)
	return keys
}

func (a *Applier) delete(ctx context.Context, kind, id string) error {
	if id == "" {
		return errors.New("no resource id in the plan")
	}
	if err := a.inFleetVPC(kind, id); err != nil {
		return err
	}
	var err error
	switch kind {
	case reconcile.KindInstance:
		if _, err = a.Client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err == nil {
			err = a.waitState(ctx, id, "terminated")
		}
	case reconcile.KindSecurityGroup:
		_, err = a.Client.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
	case reconcile.KindRouteTable:
		var out *ec2.DescribeRouteTablesOutput
		if out, err = a.Client.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{id}}); err != nil {
			return err
		}
		for _, rt := range out.RouteTables {
			for _, as := range rt.Associations {
				if aws.ToBool(as.Main) {
					continue
				}
				if _, err = a.Client.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: as.RouteTableAssociationId}); err != nil {
					return err
				}
			}
		}
		_, err = a.Client.DeleteRouteTable(ctx, &ec2.DeleteRouteTableInput{RouteTableId: aws.String(id)})
	case reconcile.KindInternetGateway:
		for _, g := range a.Live.InternetGateways {
			if g.ID == id && g.VPCID != "" {
				if _, err = a.Client.DetachInternetGateway(ctx, &ec2.DetachInternetGatewayInput{InternetGatewayId: aws.String(id), VpcId: aws.String(g.VPCID)}); err != nil {
					return err
				}
			}
		}
		_, err = a.Client.DeleteInternetGateway(ctx, &ec2.DeleteInternetGatewayInput{InternetGatewayId: aws.String(id)})
	case reconcile.KindSubnet:
		_, err = a.Client.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(id)})
	case reconcile.KindVPC:
		_, err = a.Client.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(id)})
	default:
		err = fmt.Errorf("unknown kind %q", kind)
	}
	return err
}

// inFleetVPC refuses to delete a resource that the observed state puts in
// another VPC than the fleet's. A plan never holds such a step (the planner
// reports it as an error); this guards a plan file that does.
func (a *Applier) inFleetVPC(kind, id string) error {
	fleet := a.ids[reconcile.Address(reconcile.KindVPC, "")]
	if kind == reconcile.KindVPC || fleet == "" || a.Live == nil {
		return nil
	}
	vpc := a.Live.VPCOf(kind, id)
	if vpc == "" || vpc == fleet {
		return nil
	}
	return fmt.Errorf("%s is in %s, not the fleet's VPC %s: nestbot never deletes a resource of another VPC; plan again", id, vpc, fleet)
}
