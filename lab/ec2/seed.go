package ec2

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// SeedImage adds an image (AMI) and returns its id. Empty fields take the
// defaults documented on Image.
func (s *Server) SeedImage(img Image) (string, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seedImage(img)
}

func (s *Server) seedImage(img Image) (string, error) {
	if img.ID == "" {
		img.ID = s.newID("ami")
	} else if !strings.HasPrefix(img.ID, "ami-") {
		return "", fmt.Errorf("ec2.SeedImage: id %q does not start with ami-", img.ID)
	} else if s.st.images[img.ID] != nil {
		return "", fmt.Errorf("ec2.SeedImage: image %s already exists", img.ID)
	}
	s.st.ids[img.ID] = true
	if img.OwnerID == "" {
		img.OwnerID = s.AccountID
	}
	if img.State == "" {
		img.State = "available"
	}
	if img.Architecture == "" {
		img.Architecture = "x86_64"
	}
	if img.RootDeviceName == "" {
		img.RootDeviceName = "/dev/xvda"
	}
	if img.RootVolumeGiB == 0 {
		img.RootVolumeGiB = 8
	}
	if img.CreationDate.IsZero() {
		img.CreationDate = s.now()
	}
	tags := cloneTags(img.Tags)
	img.Tags = nil
	s.st.images[img.ID] = &image{Image: img, snapshotID: s.newID("snap"), tags: tags}
	return img.ID, nil
}

// SeedInstanceProfile registers an IAM instance profile that RunInstances
// accepts by name or ARN, and returns its ARN.
func (s *Server) SeedInstanceProfile(name string) string {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seedProfile(name).arn
}

func (s *Server) seedProfile(name string) *instanceProfile {
	if ip := s.st.profiles[name]; ip != nil {
		return ip
	}
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	id := []byte("AIPA")
	for i := 0; i < 17; i++ {
		id = append(id, alnum[s.idRand.IntN(len(alnum))])
	}
	ip := &instanceProfile{name: name, id: string(id),
		arn: "arn:aws:iam::" + s.AccountID + ":instance-profile/" + name}
	s.st.profiles[name] = ip
	return ip
}

// InstanceSpec describes an instance to seed directly, bypassing
// RunInstances (no ClientToken, no visibility lag, no OnRunInstance call).
type InstanceSpec struct {
	Name             string            // Name tag; none when empty
	Tags             map[string]string // further tags
	ImageID          string            // a seeded image; required
	InstanceType     string            // "t3.micro" when empty
	SubnetID         string            // required
	State            string            // "running" (default), "pending" or "stopped"
	KeyName          string
	InstanceProfile  string // name of a seeded instance profile
	UserData         []byte
	RootVolumeGiB    int    // the image's size when zero
	RootVolumeType   string // "gp3" when empty
	RootEncrypted    bool
	SecurityGroupIDs []string // the VPC's default group when empty
}

// SeedInstance creates one instance in its own reservation, visible at once.
func (s *Server) SeedInstance(spec InstanceSpec) (Instance, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.seedInstance(spec)
	if err != nil {
		return Instance{}, err
	}
	return s.snapshot(in), nil
}

func (s *Server) seedInstance(spec InstanceSpec) (*instance, error) {
	now := s.now()
	img := s.st.images[spec.ImageID]
	if img == nil {
		return nil, fmt.Errorf("ec2.SeedInstance: image %q is not seeded", spec.ImageID)
	}
	sn := s.st.subnets[spec.SubnetID]
	if sn == nil {
		return nil, fmt.Errorf("ec2.SeedInstance: subnet %q does not exist", spec.SubnetID)
	}
	if sn.freeIPs() < 1 {
		return nil, fmt.Errorf("ec2.SeedInstance: subnet %s is full", sn.id)
	}
	l := &launch{img: img, instanceType: spec.InstanceType, sn: sn, keyName: spec.KeyName,
		userData: spec.UserData, instanceTags: cloneTags(spec.Tags), volumeTags: map[string]string{},
		publicIP: sn.mapPublicIP, state: spec.State, visibleAt: now}
	if l.instanceType == "" {
		l.instanceType = "t3.micro"
	}
	if err := parseLaunchOptions(params{}, l); err != nil {
		return nil, err
	}
	switch l.state {
	case "":
		l.state = stateRunning
	case stateRunning, statePending, stateStopped:
	default:
		return nil, fmt.Errorf("ec2.SeedInstance: cannot seed an instance in state %q", l.state)
	}
	if spec.Name != "" {
		l.instanceTags["Name"] = spec.Name
	}
	for _, id := range spec.SecurityGroupIDs {
		if sg := s.st.sgs[id]; sg == nil || sg.vpcID != sn.vpcID {
			return nil, fmt.Errorf("ec2.SeedInstance: security group %q is not in %s", id, sn.vpcID)
		}
	}
	l.sgIDs = spec.SecurityGroupIDs
	if len(l.sgIDs) == 0 {
		l.sgIDs = []string{s.st.vpcs[sn.vpcID].defaultSG}
	}
	if spec.InstanceProfile != "" {
		l.profile = s.st.profiles[spec.InstanceProfile]
		if l.profile == nil {
			return nil, fmt.Errorf("ec2.SeedInstance: instance profile %q is not seeded", spec.InstanceProfile)
		}
	}
	root := deviceSpec{device: img.RootDeviceName, size: img.RootVolumeGiB, volumeType: "gp3",
		encrypted: spec.RootEncrypted, deleteOnTermination: true, snapshotID: img.snapshotID}
	if spec.RootVolumeGiB != 0 {
		root.size = spec.RootVolumeGiB
	}
	if spec.RootVolumeType != "" {
		if !validVolumeType(spec.RootVolumeType) {
			return nil, fmt.Errorf("ec2.SeedInstance: invalid volume type %q", spec.RootVolumeType)
		}
		root.volumeType = spec.RootVolumeType
	}
	l.devices = []deviceSpec{root}
	return s.createInstance(l, s.newID("r"), 0, now), nil
}

// FleetSpec describes a Terraform-built fleet: resources carry only Name
// tags (never nest:* tags), as they would before nestbot adopts them.
type FleetSpec struct {
	Name            string // Name-tag prefix, e.g. "ducksnest"
	VpcCIDR         string
	Subnets         []FleetSubnet
	Image           Image  // seeded unless an image with its ID exists
	InstanceProfile string // seeded when not empty
	Hosts           []FleetHost
}

// FleetSubnet is one public subnet of a seeded fleet.
type FleetSubnet struct {
	Name             string // Name tag suffix, e.g. "public-a"
	CIDR             string
	AvailabilityZone string
}

// FleetHost is one instance of a seeded fleet.
type FleetHost struct {
	Name           string // Name tag, e.g. "ec2-controlplane"
	InstanceType   string
	Subnet         int // index into FleetSpec.Subnets
	RootVolumeGiB  int
	RootVolumeType string
	RootEncrypted  bool
	UserData       []byte
}

// Fleet is what SeedFleet created.
type Fleet struct {
	VpcID              string
	SubnetIDs          []string
	InternetGatewayID  string
	RouteTableID       string // the public route table (0.0.0.0/0 → IGW)
	SecurityGroupID    string // egress-only
	ImageID            string
	InstanceProfileARN string
	InstanceIDs        []string // in Hosts order
}

// DucksNestFleet is the DucksNest homelab as Terraform left it: VPC
// 10.20.0.0/16, public subnets in ap-northeast-2a and -2c, an internet
// gateway, one public route table, an egress-only security group and the
// ec2-controlplane instance (t3.medium, NixOS AMI, 20 GB encrypted gp3).
func DucksNestFleet() FleetSpec {
	return FleetSpec{
		Name:    "ducksnest",
		VpcCIDR: "10.20.0.0/16",
		Subnets: []FleetSubnet{
			{Name: "public-a", CIDR: "10.20.0.0/24", AvailabilityZone: "ap-northeast-2a"},
			{Name: "public-c", CIDR: "10.20.1.0/24", AvailabilityZone: "ap-northeast-2c"},
		},
		Image: Image{Name: "NixOS-25.05-updated-kernel-image", OwnerID: "427812963091",
			CreationDate: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Public: true},
		InstanceProfile: "ducksnest-controlplane",
		Hosts: []FleetHost{{Name: "ec2-controlplane", InstanceType: "t3.medium", Subnet: 0,
			RootVolumeGiB: 20, RootVolumeType: "gp3", RootEncrypted: true}},
	}
}

// SeedFleet creates spec's resources, all tagged only with Name.
func (s *Server) SeedFleet(spec FleetSpec) (Fleet, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	var f Fleet
	pfx, err := netip.ParsePrefix(spec.VpcCIDR)
	if err != nil {
		return f, fmt.Errorf("ec2.SeedFleet: vpc cidr: %w", err)
	}
	name := func(suffix string) map[string]string { return map[string]string{"Name": spec.Name + "-" + suffix} }

	v := s.addVpc(pfx.Masked(), name("vpc"))
	v.dnsHostnames = true
	f.VpcID = v.id

	g := &internetGateway{id: s.newID("igw"), vpcID: v.id, tags: name("igw")}
	s.st.igws[g.id] = g
	f.InternetGatewayID = g.id

	rt := &routeTable{id: s.newID("rtb"), vpcID: v.id, tags: name("public"), routes: []*rtRoute{
		{dest: v.cidr, gatewayID: "local", origin: "CreateRouteTable"},
		{dest: "0.0.0.0/0", gatewayID: g.id, origin: "CreateRoute"},
	}}
	s.st.rtbs[rt.id] = rt
	f.RouteTableID = rt.id

	for _, fs := range spec.Subnets {
		sp, err := netip.ParsePrefix(fs.CIDR)
		if err != nil {
			return f, fmt.Errorf("ec2.SeedFleet: subnet %s: %w", fs.Name, err)
		}
		sn, err := s.addSubnet(v, sp.Masked(), fs.AvailabilityZone, name(fs.Name))
		if err != nil {
			return f, fmt.Errorf("ec2.SeedFleet: subnet %s: %w", fs.Name, err)
		}
		sn.mapPublicIP = true
		rt.assocs = append(rt.assocs, &rtAssoc{id: s.newID("rtbassoc"), subnetID: sn.id})
		f.SubnetIDs = append(f.SubnetIDs, sn.id)
	}

	sg := s.addSecurityGroup(v.id, spec.Name, spec.Name+" hosts (egress only)", name("sg"))
	f.SecurityGroupID = sg.id

	f.ImageID = spec.Image.ID
	if s.st.images[spec.Image.ID] == nil {
		if f.ImageID, err = s.seedImage(spec.Image); err != nil {
			return f, err
		}
	}
	if spec.InstanceProfile != "" {
		f.InstanceProfileARN = s.seedProfile(spec.InstanceProfile).arn
	}
	for _, h := range spec.Hosts {
		if h.Subnet < 0 || h.Subnet >= len(f.SubnetIDs) {
			return f, fmt.Errorf("ec2.SeedFleet: host %s: no subnet %d", h.Name, h.Subnet)
		}
		in, err := s.seedInstance(InstanceSpec{Name: h.Name, ImageID: f.ImageID, InstanceType: h.InstanceType,
			SubnetID: f.SubnetIDs[h.Subnet], InstanceProfile: spec.InstanceProfile, UserData: h.UserData,
			RootVolumeGiB: h.RootVolumeGiB, RootVolumeType: h.RootVolumeType, RootEncrypted: h.RootEncrypted,
			SecurityGroupIDs: []string{sg.id}})
		if err != nil {
			return f, fmt.Errorf("ec2.SeedFleet: host %s: %w", h.Name, err)
		}
		f.InstanceIDs = append(f.InstanceIDs, in.id)
	}
	return f, nil
}
