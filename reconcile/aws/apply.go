package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/ducksnest/nestbot/internal/logs"
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
	// DeployKey is nestbot's SSH public key (authorized_keys format), for
	// the user-data of hosts that nestbot logs in to over OpenSSH.
	DeployKey string
	// Logger receives a record per step and per wait, with the host it
	// concerns; nil discards.
	Logger *slog.Logger
	// Poll is the interval of the bounded waits (default 2s); WaitTimeout
	// bounds each wait for an instance state (default 10m).
	Poll        time.Duration
	WaitTimeout time.Duration

	ids map[reconcile.Address]string // address → live id, grown as resources are created
}

// Result is what happened to one step.
type Result struct {
	Address reconcile.Address
	Action  reconcile.Action
	ID      string // the resource acted on or created
}

// Error is an apply failure: which step, the AWS error code, and what had
// been applied before it.
type Error struct {
	Address reconcile.Address
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

func (a *Applier) log() *slog.Logger { return logs.Or(a.Logger) }

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
		a.log().Info(fmt.Sprintf("%s %s: done (%s)", st.Action, st.Address, id), "address", st.Address, "id", id)
		done = append(done, Result{Address: st.Address, Action: st.Action, ID: id})
	}
	return done, nil
}

func (a *Applier) indexLive() {
	a.ids = map[reconcile.Address]string{}
	if a.Live == nil {
		return
	}
	own := func(tags reconcile.Tags, id string) {
		if tags[reconcile.TagFleet] != a.Fleet.Name {
			return
		}
		if addr, err := reconcile.ParseAddress(tags[reconcile.TagResource]); err == nil {
			a.ids[addr] = id
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

func (a *Applier) need(addr reconcile.Address) (string, error) {
	if id := a.ids[addr]; id != "" {
		return id, nil
	}
	return "", fmt.Errorf("%s does not exist yet; apply it first (or drop --target)", addr)
}

func (a *Applier) apply(ctx context.Context, st reconcile.Step) (id, op string, err error) {
	kind, name := st.Address.Kind, st.Address.Name
	if st.Address.Plane != reconcile.PlaneCloud {
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
	addr := reconcile.CloudAddress(kind, name)
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
		vpc, err := a.need(reconcile.CloudAddress(reconcile.KindVPC, ""))
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
		vpc, err := a.need(reconcile.CloudAddress(reconcile.KindVPC, ""))
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
		vpc, err := a.need(reconcile.CloudAddress(reconcile.KindVPC, ""))
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
		vpc, err := a.need(reconcile.CloudAddress(reconcile.KindVPC, ""))
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
			vpc, err := a.need(reconcile.CloudAddress(reconcile.KindVPC, ""))
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
	fleet := a.ids[reconcile.CloudAddress(reconcile.KindVPC, "")]
	if kind == reconcile.KindVPC || fleet == "" || a.Live == nil {
		return nil
	}
	vpc := a.Live.VPCOf(kind, id)
	if vpc == "" || vpc == fleet {
		return nil
	}
	return fmt.Errorf("%s is in %s, not the fleet's VPC %s: nestbot never deletes a resource of another VPC; plan again", id, vpc, fleet)
}
