package aws

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// What the Observer reads of instances, their root volumes and the images
// nest.yaml names.

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
