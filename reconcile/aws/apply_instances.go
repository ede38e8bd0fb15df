package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
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

// How the Applier launches, waits for and changes instances: one launch per
// ClientToken, whatever answers are lost.

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
	subnet, err := a.need(reconcile.CloudAddress(reconcile.KindSubnet, h.AWS.Subnet))
	if err != nil {
		return "", err
	}
	sg, err := a.need(reconcile.CloudAddress(reconcile.KindSecurityGroup, ""))
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
		UserData: aws.String(EncodeUserData(UserData(f, h, key, a.DeployKey))),
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
			a.log().Info(fmt.Sprintf("create %s: %s, launched earlier with this ClientToken, is %s: launching anew", reconcile.CloudAddress(reconcile.KindInstance, host), id, s), "host", host, "instance", id)
			gone = append(gone, id)
			continue
		}
		a.log().Info(fmt.Sprintf("create %s: launched %s, waiting for it to run", reconcile.CloudAddress(reconcile.KindInstance, host), id), "host", host, "instance", id)
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
		{Name: aws.String("tag:" + reconcile.TagResource), Values: []string{reconcile.CloudAddress(reconcile.KindInstance, host).String()}},
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
	a.log().Info(fmt.Sprintf("create %s: %s (%s) was launched for it already: taking it, not launching another", reconcile.CloudAddress(reconcile.KindInstance, host), id, state), "host", host, "instance", id)
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
			a.log().Info(fmt.Sprintf("update %s: stopping %s to change its type", reconcile.CloudAddress(reconcile.KindInstance, host), id), "host", host, "instance", id)
			if _, err := a.Client.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}); err != nil {
				return err
			}
		}
		if err := a.waitState(ctx, id, "stopped"); err != nil {
			return err
		}
		a.log().Info(fmt.Sprintf("update %s: changing the type of %s from %s to %s", reconcile.CloudAddress(reconcile.KindInstance, host), id, live.Type, h.AWS.InstanceType), "host", host, "instance", id)
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
		a.log().Info(fmt.Sprintf("update %s: starting %s, waiting for it to run", reconcile.CloudAddress(reconcile.KindInstance, host), id), "host", host, "instance", id)
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
		a.log().Info(fmt.Sprintf("update %s: associating instance profile %s with %s", reconcile.CloudAddress(reconcile.KindInstance, host), want, id), "host", host, "instance", id)
		_, err = a.Client.AssociateIamInstanceProfile(ctx, &ec2.AssociateIamInstanceProfileInput{InstanceId: aws.String(id), IamInstanceProfile: profile})
	case want == "":
		a.log().Info(fmt.Sprintf("update %s: disassociating instance profile %s from %s", reconcile.CloudAddress(reconcile.KindInstance, host), profileName(current), id), "host", host, "instance", id)
		_, err = a.Client.DisassociateIamInstanceProfile(ctx, &ec2.DisassociateIamInstanceProfileInput{AssociationId: current.AssociationId})
	default:
		a.log().Info(fmt.Sprintf("update %s: replacing instance profile %s of %s with %s", reconcile.CloudAddress(reconcile.KindInstance, host), profileName(current), id, want), "host", host, "instance", id)
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
