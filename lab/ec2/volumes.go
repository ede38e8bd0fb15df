package ec2

import (
	"math"
	"slices"
	"time"
)

type xVolume struct {
	VolumeID         string              `xml:"volumeId"`
	Size             int                 `xml:"size"`
	SnapshotID       string              `xml:"snapshotId"`
	AvailabilityZone string              `xml:"availabilityZone"`
	Status           string              `xml:"status"`
	CreateTime       string              `xml:"createTime"`
	Attachments      []xVolumeAttachment `xml:"attachmentSet>item"`
	Tags             []xTag              `xml:"tagSet>item,omitempty"`
	VolumeType       string              `xml:"volumeType"`
	Iops             int                 `xml:"iops,omitempty"`
	Throughput       int                 `xml:"throughput,omitempty"`
	Encrypted        bool                `xml:"encrypted"`
	KmsKeyID         string              `xml:"kmsKeyId,omitempty"`
	MultiAttach      bool                `xml:"multiAttachEnabled"`
}

type xVolumeAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xVolumeModification struct {
	VolumeID           string `xml:"volumeId"`
	ModificationState  string `xml:"modificationState"`
	TargetSize         int    `xml:"targetSize"`
	TargetIops         int    `xml:"targetIops"`
	TargetVolumeType   string `xml:"targetVolumeType"`
	TargetThroughput   int    `xml:"targetThroughput,omitempty"`
	OriginalSize       int    `xml:"originalSize"`
	OriginalIops       int    `xml:"originalIops"`
	OriginalVolumeType string `xml:"originalVolumeType"`
	OriginalThroughput int    `xml:"originalThroughput,omitempty"`
	Progress           int    `xml:"progress"`
	StartTime          string `xml:"startTime"`
}

func volumeStatus(v *volume) string {
	if v.instanceID != "" {
		return "in-use"
	}
	return "available"
}

func (s *Server) volumeXML(v *volume) xVolume {
	x := xVolume{VolumeID: v.id, Size: v.size, SnapshotID: v.snapshotID, AvailabilityZone: v.az,
		Status: volumeStatus(v), CreateTime: fmtTime(v.createTime), Tags: tagsXML(v.tags),
		VolumeType: v.volumeType, Iops: v.iops, Throughput: v.throughput, Encrypted: v.encrypted, KmsKeyID: v.kmsKeyID}
	if v.instanceID != "" {
		x.Attachments = []xVolumeAttachment{{VolumeID: v.id, InstanceID: v.instanceID, Device: v.device,
			Status: "attached", AttachTime: fmtTime(v.attachTime), DeleteOnTermination: v.deleteOnTermination}}
	}
	return x
}

func (s *Server) volumeFilter(v *volume) filterFunc {
	return func(name string) ([]string, bool) {
		attached := func(val string) ([]string, bool) {
			if v.instanceID == "" {
				return nil, true
			}
			return []string{val}, true
		}
		switch name {
		case "volume-id":
			return []string{v.id}, true
		case "status":
			return []string{volumeStatus(v)}, true
		case "size":
			return []string{itoa(v.size)}, true
		case "volume-type":
			return []string{v.volumeType}, true
		case "encrypted":
			return []string{boolStr(v.encrypted)}, true
		case "availability-zone":
			return []string{v.az}, true
		case "snapshot-id":
			return []string{v.snapshotID}, true
		case "attachment.instance-id":
			return attached(v.instanceID)
		case "attachment.device":
			return attached(v.device)
		case "attachment.status":
			return attached("attached")
		case "attachment.delete-on-termination":
			return attached(boolStr(v.deleteOnTermination))
		}
		return tagFilter(v.tags, name)
	}
}

// maxVolumePage is the most volumes one DescribeVolumes page holds.
const maxVolumePage = 500

// describeVolumes answers as EC2's API reference describes MaxResults for
// this action: "This value can be between 5 and 500; if you specify a value
// larger than 500, only 500 items are returned. If this parameter is not
// used, then all items are returned. You cannot specify this parameter and
// the volume IDs parameter in the same request."
func (s *Server) describeVolumes(c *call) (any, error) {
	ids := c.p.list("VolumeId")
	if len(ids) > 0 && c.p.has("MaxResults") {
		return nil, errf(400, "InvalidParameterCombination", "The parameter volumeSet cannot be used with the parameter maxResults")
	}
	if n, ok, _ := c.p.int("MaxResults"); ok && n < 5 {
		return nil, errf(400, "InvalidParameterValue",
			"Value ( %d ) for parameter maxResults is invalid. Expecting a value between 5 and %d.", n, maxVolumePage)
	}
	return describe(c, "volumeSet", s.volumeXML, listing[volume]{pageMin: 5, pageMax: math.MaxInt32, pageCap: maxVolumePage,
		pick:   byID(s.st.volumes, volumeKind, ids),
		filter: s.volumeFilter, id: func(v *volume) string { return v.id }})
}

func (s *Server) modifyVolume(c *call) (any, error) {
	id, err := c.p.require("VolumeId")
	if err != nil {
		return nil, err
	}
	v, err := lookup(s.st.volumes, volumeKind, id)
	if err != nil {
		return nil, err
	}
	size, hasSize, err := c.p.int("Size")
	if err != nil {
		return nil, err
	}
	iops, hasIOPS, err := c.p.int("Iops")
	if err != nil {
		return nil, err
	}
	thru, hasThru, err := c.p.int("Throughput")
	if err != nil {
		return nil, err
	}
	vt := c.p.get("VolumeType")
	switch {
	case vt != "" && !validVolumeType(vt):
		return nil, errf(400, "InvalidParameterValue", "Value (%s) for parameter volumeType is invalid.", vt)
	case hasSize && size < v.size:
		return nil, errf(400, "InvalidParameterValue", "New size cannot be smaller than existing size")
	case hasSize && size > 16384:
		return nil, errf(400, "InvalidParameterValue", "Volume size %d is out of range (1-16384 GiB)", size)
	}
	m := xVolumeModification{VolumeID: v.id, ModificationState: "modifying", OriginalSize: v.size,
		OriginalIops: v.iops, OriginalVolumeType: v.volumeType, OriginalThroughput: v.throughput,
		StartTime: fmtTime(c.now)}
	if hasSize {
		v.size = size
	}
	if vt != "" && vt != v.volumeType {
		v.volumeType = vt
		v.iops, v.throughput = defaultIOPS(vt, v.size), 0
		if vt == "gp3" {
			v.throughput = 125
		}
	}
	if hasIOPS {
		v.iops = iops
	}
	if hasThru {
		v.throughput = thru
	}
	m.TargetSize, m.TargetIops, m.TargetVolumeType, m.TargetThroughput = v.size, v.iops, v.volumeType, v.throughput
	return struct {
		Mod xVolumeModification `xml:"volumeModification"`
	}{m}, nil
}

// Image describes an AMI to seed with SeedImage.
type Image struct {
	ID             string // generated ("ami-…") when empty
	Name           string
	Description    string
	OwnerID        string // empty means the server's account
	OwnerAlias     string // e.g. "amazon"; matched by DescribeImages Owner.N
	CreationDate   time.Time
	State          string // "available" when empty
	Architecture   string // "x86_64" when empty
	RootDeviceName string // "/dev/xvda" when empty
	RootVolumeGiB  int    // 8 when zero
	Public         bool
	Tags           map[string]string
}

type xImage struct {
	ImageID            string `xml:"imageId"`
	ImageLocation      string `xml:"imageLocation"`
	State              string `xml:"imageState"`
	OwnerID            string `xml:"imageOwnerId"`
	CreationDate       string `xml:"creationDate"`
	IsPublic           bool   `xml:"isPublic"`
	Architecture       string `xml:"architecture"`
	ImageType          string `xml:"imageType"`
	OwnerAlias         string `xml:"imageOwnerAlias,omitempty"`
	Name               string `xml:"name"`
	Description        string `xml:"description,omitempty"`
	RootDeviceType     string `xml:"rootDeviceType"`
	RootDeviceName     string `xml:"rootDeviceName"`
	BlockDevices       []xBDM `xml:"blockDeviceMapping>item"`
	VirtualizationType string `xml:"virtualizationType"`
	Hypervisor         string `xml:"hypervisor"`
	EnaSupport         bool   `xml:"enaSupport"`
	Tags               []xTag `xml:"tagSet>item,omitempty"`
}

type xBDM struct {
	DeviceName string `xml:"deviceName"`
	Ebs        struct {
		SnapshotID          string `xml:"snapshotId"`
		VolumeSize          int    `xml:"volumeSize"`
		DeleteOnTermination bool   `xml:"deleteOnTermination"`
		VolumeType          string `xml:"volumeType"`
		Encrypted           bool   `xml:"encrypted"`
	} `xml:"ebs"`
}

func imageXML(img *image) xImage {
	x := xImage{ImageID: img.ID, ImageLocation: img.OwnerID + "/" + img.Name, State: img.State,
		OwnerID: img.OwnerID, CreationDate: fmtTime(img.CreationDate), IsPublic: img.Public,
		Architecture: img.Architecture, ImageType: "machine", OwnerAlias: img.OwnerAlias, Name: img.Name,
		Description: img.Description, RootDeviceType: "ebs", RootDeviceName: img.RootDeviceName,
		VirtualizationType: "hvm", Hypervisor: "xen", EnaSupport: true, Tags: tagsXML(img.tags)}
	b := xBDM{DeviceName: img.RootDeviceName}
	b.Ebs.SnapshotID, b.Ebs.VolumeSize, b.Ebs.DeleteOnTermination, b.Ebs.VolumeType =
		img.snapshotID, img.RootVolumeGiB, true, "gp3"
	x.BlockDevices = []xBDM{b}
	return x
}

func imageFilter(img *image) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "image-id":
			return []string{img.ID}, true
		case "name":
			return []string{img.Name}, true
		case "owner-id":
			return []string{img.OwnerID}, true
		case "owner-alias":
			return []string{img.OwnerAlias}, true
		case "state":
			return []string{img.State}, true
		case "architecture":
			return []string{img.Architecture}, true
		case "description":
			return []string{img.Description}, true
		case "is-public":
			return []string{boolStr(img.Public)}, true
		case "image-type":
			return []string{"machine"}, true
		case "root-device-type":
			return []string{"ebs"}, true
		case "root-device-name":
			return []string{img.RootDeviceName}, true
		case "virtualization-type":
			return []string{"hvm"}, true
		}
		return tagFilter(img.tags, name)
	}
}

// visibleImages is every image but those a fault hides, by id.
func (s *Server) visibleImages() map[string]*image {
	visible := map[string]*image{}
	for id, img := range s.st.images {
		if !s.imageFaulted(id) {
			visible[id] = img
		}
	}
	return visible
}

func (s *Server) describeImages(c *call) (any, error) {
	return describe(c, "imagesSet", imageXML, listing[image]{pageMin: 1, pageMax: 1000,
		pick: func() ([]*image, error) {
			items, err := selectByID(s.visibleImages(), imageKind, c.p.list("ImageId"))
			if err != nil {
				return nil, err
			}
			return s.imagesOwnedBy(items, c.p.list("Owner")), nil
		},
		filter: imageFilter, id: func(img *image) string { return img.ID }})
}

// imagesOwnedBy is those of images one of owners owns (all of them when
// there are none): an account id, "self" or an owner alias ("amazon").
func (s *Server) imagesOwnedBy(images []*image, owners []string) []*image {
	if len(owners) == 0 {
		return images
	}
	return slices.DeleteFunc(images, func(img *image) bool {
		for _, o := range owners {
			if o == img.OwnerID || (o == "self" && img.OwnerID == s.AccountID) || (o != "" && o == img.OwnerAlias) {
				return false
			}
		}
		return true
	})
}
