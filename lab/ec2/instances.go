package ec2

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Instance is a snapshot of one instance, as the lab sees it.
type Instance struct {
	ID, ReservationID, ImageID, InstanceType string
	State                                    string // pending, running, stopping, stopped, shutting-down, terminated
	SubnetID, VpcID, AvailabilityZone        string
	PrivateIP, PublicIP                      string // empty when not assigned
	KeyName                                  string
	IAMInstanceProfileARN                    string
	SecurityGroupIDs                         []string
	VolumeIDs                                []string
	UserData                                 []byte // decoded
	Tags                                     map[string]string
	LaunchTime                               time.Time
	ClientToken                              string
}

func (s *Server) snapshot(in *instance) Instance {
	x := Instance{
		ID: in.id, ReservationID: in.reservationID, ImageID: in.imageID, InstanceType: in.instanceType,
		State: in.state, SubnetID: in.subnetID, VpcID: in.vpcID, AvailabilityZone: in.az,
		PrivateIP: in.privateIP, PublicIP: in.publicIP, KeyName: in.keyName,
		SecurityGroupIDs: slices.Clone(in.sgIDs), UserData: slices.Clone(in.userData),
		Tags: cloneTags(in.tags), LaunchTime: in.launchTime, ClientToken: in.clientToken,
	}
	if in.profile != nil {
		x.IAMInstanceProfileARN = in.profile.arn
	}
	for _, d := range in.devices {
		x.VolumeIDs = append(x.VolumeIDs, d.volumeID)
	}
	return x
}

// Instance returns a snapshot of the instance with this id, advancing the
// lifecycle to the current clock first. Visibility lag does not apply.
func (s *Server) Instance(id string) (Instance, bool) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	in := s.st.instances[id]
	if in == nil {
		return Instance{}, false
	}
	return s.snapshot(in), true
}

// Instances returns snapshots of every instance, ordered by id.
func (s *Server) Instances() []Instance {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(s.now())
	var out []Instance
	for _, in := range sortedValues(s.st.instances) {
		out = append(out, s.snapshot(in))
	}
	return out
}

// launch is a validated request to create instances.
type launch struct {
	img          *image
	instanceType string
	sn           *subnet
	sgIDs        []string
	keyName      string
	profile      *instanceProfile
	userData     []byte
	devices      []deviceSpec
	instanceTags map[string]string
	volumeTags   map[string]string
	publicIP     bool
	clientToken  string
	state        string
	visibleAt    time.Time
	// What RunInstances may set beyond the above, with EC2's defaults.
	disableAPITermination, disableAPIStop bool
	metadata                              metadataOptions
	cpuCredits                            string
	coreCount, threadsPerCore             int
}

type deviceSpec struct {
	device              string
	size, iops, thru    int
	volumeType          string
	encrypted           bool
	kmsKeyID            string
	deleteOnTermination bool
	snapshotID          string
}

// validInstanceType accepts names shaped like "t3.medium".
func validInstanceType(t string) bool {
	family, size, ok := strings.Cut(t, ".")
	if !ok || family == "" || size == "" || family[0] < 'a' || family[0] > 'z' {
		return false
	}
	for _, c := range family + size {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (s *Server) runInstances(c *call) (any, error) {
	p := c.p
	imageID, err := p.require("ImageId")
	if err != nil {
		return nil, err
	}
	minCount, okMin, err := p.int("MinCount")
	if err != nil {
		return nil, err
	}
	maxCount, okMax, err := p.int("MaxCount")
	if err != nil {
		return nil, err
	}
	if !okMin || !okMax {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter MinCount and MaxCount")
	}
	if minCount < 1 || maxCount < minCount {
		return nil, errf(400, "InvalidParameterValue", "Value (%d) for parameter maxCount is invalid. Expected a value between minCount (%d) and 1000.", maxCount, minCount)
	}
	if maxCount > 1000 {
		return nil, errf(400, "InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of 1000 allows.", maxCount)
	}
	token := p.get("ClientToken")
	if len(token) > 64 {
		return nil, errf(400, "InvalidParameterValue", "Value (%s) for parameter clientToken is invalid. Maximum length is 64.", token)
	}
	if token != "" {
		if prev := s.st.tokens[token]; prev != nil {
			if prev.fingerprint != fingerprint(p) {
				return nil, errf(400, "IdempotentParameterMismatch",
					"Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			}
			return s.reservationXML(prev.reservationID, prev.instanceIDs), nil
		}
	}
	l, err := s.parseLaunch(c, imageID)
	if err != nil {
		return nil, err
	}
	if s.capacityFaulted(l.instanceType) {
		return nil, errf(500, "InsufficientInstanceCapacity",
			"We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity.",
			l.instanceType, l.sn.az)
	}
	n := min(maxCount, l.sn.freeIPs())
	if n < minCount {
		return nil, errf(400, "InsufficientFreeAddressesInSubnet",
			"There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", l.sn.id)
	}

	l.clientToken = token
	l.state = statePending
	l.visibleAt = c.now.Add(s.visibilityLag())
	resID := s.newID("r")
	var ids []string
	for i := 0; i < n; i++ {
		in := s.createInstance(l, resID, i, c.now)
		ids = append(ids, in.id)
		if s.OnRunInstance != nil {
			snap, hook := s.snapshot(in), s.OnRunInstance
			c.after = append(c.after, func() { hook(snap) })
		}
	}
	if token != "" {
		s.st.tokens[token] = &runToken{fingerprint: fingerprint(p), reservationID: resID, instanceIDs: ids}
	}
	return s.reservationXML(resID, ids), nil
}

// fingerprint identifies a RunInstances request's arguments, apart from the
// token itself, for ClientToken idempotency.
func fingerprint(p params) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(p)) {
		switch k {
		case "ClientToken", "DryRun", "Action", "Version":
			continue
		}
		h.Write([]byte(k + "=" + p[k] + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// parseLaunch validates everything RunInstances needs before any change.
func (s *Server) parseLaunch(c *call, imageID string) (*launch, error) {
	p := c.p
	l := &launch{instanceType: p.get("InstanceType"), keyName: p.get("KeyName")}
	if l.instanceType == "" {
		l.instanceType = "m1.small"
	}
	if !validInstanceType(l.instanceType) {
		return nil, errf(400, "InvalidParameterValue", "Invalid value '%s' for InstanceType.", l.instanceType)
	}
	if l.keyName != "" {
		if _, err := lookup(s.st.keyPairs, keyPairKind, l.keyName); err != nil {
			return nil, err
		}
	}
	if err := parseLaunchOptions(p, l); err != nil {
		return nil, err
	}

	subnetID := p.get("SubnetId")
	sgIDs := p.list("SecurityGroupId")
	if ni := p.sub("NetworkInterface.1"); len(ni) > 0 {
		if subnetID == "" {
			subnetID = ni.get("SubnetId")
		}
		sgIDs = append(sgIDs, ni.list("SecurityGroupId")...)
		l.publicIP, _ = ni.boolean("AssociatePublicIpAddress")
	}
	if subnetID == "" {
		return nil, errf(400, "VPCIdNotSpecified", "No default VPC for this user. GroupName is only supported for EC2-Classic and default VPC.")
	}
	sn, err := s.lookupSubnet(subnetID)
	if err != nil {
		return nil, err
	}
	l.sn = sn
	if _, set := p.sub("NetworkInterface.1").boolean("AssociatePublicIpAddress"); !set {
		l.publicIP = sn.mapPublicIP
	}

	img, err := lookup(s.visibleImages(), imageKind, imageID)
	if err != nil {
		return nil, err
	}
	if img.State != "available" {
		return nil, errf(400, "InvalidAMIID.Unavailable", "Image %s is not available (state: %s)", imageID, img.State)
	}
	l.img = img

	for _, name := range p.list("SecurityGroup") {
		found := ""
		for _, sg := range s.st.sgs {
			if sg.vpcID == sn.vpcID && sg.name == name {
				found = sg.id
			}
		}
		if found == "" {
			return nil, errf(400, "InvalidGroup.NotFound", "The security group '%s' does not exist in VPC '%s'", name, sn.vpcID)
		}
		sgIDs = append(sgIDs, found)
	}
	for _, id := range sgIDs {
		sg, err := s.lookupSG(id)
		if err != nil {
			return nil, err
		}
		if sg.vpcID != sn.vpcID {
			return nil, errf(400, "InvalidParameter", "Security group %s and subnet %s belong to different networks.", id, sn.id)
		}
		if !slices.Contains(l.sgIDs, id) {
			l.sgIDs = append(l.sgIDs, id)
		}
	}
	if len(l.sgIDs) == 0 {
		if v := s.st.vpcs[sn.vpcID]; v != nil {
			l.sgIDs = []string{v.defaultSG}
		}
	}

	if l.profile, err = s.profileFromParams(p.sub("IamInstanceProfile")); err != nil {
		return nil, err
	}
	if ud := p.get("UserData"); ud != "" {
		b, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return nil, errf(400, "InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		if len(b) > 16384 {
			return nil, errf(400, "InvalidParameterValue", "User data is limited to 16384 bytes")
		}
		l.userData = b
	}
	if l.devices, err = parseDevices(p, img); err != nil {
		return nil, err
	}
	for i := range l.devices {
		d := &l.devices[i]
		d.encrypted = d.encrypted || s.st.ebsEncryptionByDefault
		if d.encrypted && d.kmsKeyID == "" {
			d.kmsKeyID = s.kmsKeyARN(c.region)
		}
	}
	specs, err := p.tagSpecs("instance", "volume", "network-interface")
	if err != nil {
		return nil, err
	}
	l.instanceTags, l.volumeTags = tagsFrom(specs["instance"]), tagsFrom(specs["volume"])
	return l, nil
}

func (s *Server) profileFromParams(p params) (*instanceProfile, error) {
	name, arn := p.get("Name"), p.get("Arn")
	switch {
	case name != "":
		if ip := s.st.profiles[name]; ip != nil {
			return ip, nil
		}
		return nil, errf(400, "InvalidParameterValue",
			"Value (%s) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name", name)
	case arn != "":
		for _, ip := range s.st.profiles {
			if ip.arn == arn {
				return ip, nil
			}
		}
		return nil, errf(400, "InvalidParameterValue",
			"Value (%s) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN", arn)
	}
	return nil, nil
}

func validVolumeType(t string) bool {
	switch t {
	case "standard", "gp2", "gp3", "io1", "io2", "st1", "sc1":
		return true
	}
	return false
}

// parseDevices returns the root device (from the image, possibly
// overridden) followed by any extra EBS mappings.
func parseDevices(p params, img *image) ([]deviceSpec, error) {
	root := deviceSpec{device: img.RootDeviceName, size: img.RootVolumeGiB, volumeType: "gp3",
		deleteOnTermination: true, snapshotID: img.snapshotID}
	out := []deviceSpec{root}
	for _, m := range p.items("BlockDeviceMapping") {
		dev := m.get("DeviceName")
		if dev == "" {
			return nil, errf(400, "InvalidBlockDeviceMapping", "A block device mapping requires a device name")
		}
		if m.get("NoDevice") != "" || m.get("VirtualName") != "" {
			continue
		}
		d := deviceSpec{device: dev, volumeType: "gp3", deleteOnTermination: true}
		isRoot := dev == img.RootDeviceName
		if isRoot {
			d = out[0]
		}
		ebs := m.sub("Ebs")
		if v := ebs.get("VolumeType"); v != "" {
			if !validVolumeType(v) {
				return nil, errf(400, "InvalidParameterValue", "Value (%s) for parameter volumeType is invalid.", v)
			}
			d.volumeType = v
		}
		size, hasSize, err := ebs.int("VolumeSize")
		if err != nil {
			return nil, err
		}
		if hasSize {
			if size < 1 || size > 16384 {
				return nil, errf(400, "InvalidParameterValue", "Volume size %d is out of range (1-16384 GiB)", size)
			}
			if isRoot && size < img.RootVolumeGiB {
				return nil, errf(400, "InvalidBlockDeviceMapping",
					"Volume of size %dGB is smaller than snapshot '%s', expect size >= %dGB", size, img.snapshotID, img.RootVolumeGiB)
			}
			d.size = size
		} else if !isRoot {
			return nil, errf(400, "InvalidBlockDeviceMapping", "The device '%s' requires a volume size", dev)
		}
		if v, ok := ebs.boolean("Encrypted"); ok {
			d.encrypted = v
		}
		if k := ebs.get("KmsKeyId"); k != "" {
			if !d.encrypted {
				return nil, errf(400, "InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
			}
			d.kmsKeyID = k
		}
		if v, ok := ebs.boolean("DeleteOnTermination"); ok {
			d.deleteOnTermination = v
		}
		if d.iops, _, err = ebs.int("Iops"); err != nil {
			return nil, err
		}
		if d.thru, _, err = ebs.int("Throughput"); err != nil {
			return nil, err
		}
		if isRoot {
			out[0] = d
		} else {
			out = append(out, d)
		}
	}
	return out, nil
}

func defaultIOPS(volumeType string, size int) int {
	switch volumeType {
	case "gp3":
		return 3000
	case "gp2":
		return max(100, min(16000, 3*size))
	}
	return 0
}

// createInstance adds one instance (and its volumes) for a validated launch.
func (s *Server) createInstance(l *launch, resID string, index int, now time.Time) *instance {
	in := &instance{
		id: s.newID("i"), reservationID: resID, imageID: l.img.ID, instanceType: l.instanceType,
		subnetID: l.sn.id, vpcID: l.sn.vpcID, az: l.sn.az, wantPublicIP: l.publicIP, keyName: l.keyName,
		profile: l.profile, sgIDs: slices.Clone(l.sgIDs), userData: slices.Clone(l.userData),
		tags: cloneTags(l.instanceTags), launchTime: now, clientToken: l.clientToken, launchIndex: index,
		architecture: l.img.Architecture, rootDeviceName: l.img.RootDeviceName,
		state: l.state, stateAt: now, visibleAt: l.visibleAt,
		disableAPITermination: l.disableAPITermination, disableAPIStop: l.disableAPIStop,
		metadata: l.metadata, cpuCredits: l.cpuCredits, coreCount: l.coreCount, threadsPerCore: l.threadsPerCore,
	}
	in.eniID, in.eniAttachmentID = s.newID("eni"), s.newID("eni-attach")
	in.mac = fmt.Sprintf("06:%s:%s:%s:%s:%s", in.eniID[4:6], in.eniID[6:8], in.eniID[8:10], in.eniID[10:12], in.eniID[12:14])
	ip, _ := l.sn.allocatePrivateIP(in.id)
	in.privateIP = ip.String()
	if l.publicIP && in.state == stateRunning { // a pending one gets its address when it runs
		in.publicIP = s.allocatePublicIP()
	}
	if in.profile != nil {
		in.profileAssocID, in.profileAssocAt = s.newID("iip-assoc"), now
	}
	for _, d := range l.devices {
		v := &volume{id: s.newID("vol"), az: in.az, volumeType: d.volumeType, snapshotID: d.snapshotID,
			size: d.size, iops: d.iops, throughput: d.thru, encrypted: d.encrypted, createTime: now,
			instanceID: in.id, device: d.device, deleteOnTermination: d.deleteOnTermination,
			attachTime: now, tags: cloneTags(l.volumeTags)}
		if v.iops == 0 {
			v.iops = defaultIOPS(v.volumeType, v.size)
		}
		if v.encrypted {
			v.kmsKeyID = cmp.Or(d.kmsKeyID, s.kmsKeyARN(regionOf(in.az)))
		}
		if v.throughput == 0 && v.volumeType == "gp3" {
			v.throughput = 125
		}
		s.st.volumes[v.id] = v
		in.devices = append(in.devices, &instanceDevice{device: d.device, volumeID: v.id,
			deleteOnTermination: d.deleteOnTermination, attachTime: now})
	}
	s.st.instances[in.id] = in
	return in
}

// regionOf turns an availability zone into its region.
func regionOf(az string) string {
	if az == "" {
		return ""
	}
	return strings.TrimRight(az, "abcdefghijklmnopqrstuvwxyz")
}

// parseLaunchOptions reads what RunInstances sets beyond the machine and
// its network — termination and stop protection, the instance metadata
// options, the CPU options and credits — checked against the type, with
// EC2's defaults.
func parseLaunchOptions(p params, l *launch) error {
	l.disableAPITermination, _ = p.boolean("DisableApiTermination")
	l.disableAPIStop, _ = p.boolean("DisableApiStop")
	l.metadata = metadataOptions{httpTokens: "optional", httpEndpoint: "enabled", httpProtocolIPv6: "disabled",
		instanceMetadataTags: "disabled", hopLimit: 1}
	if err := l.metadata.set(p.sub("MetadataOptions")); err != nil {
		return err
	}
	t, known := lookupInstanceType(l.instanceType)
	l.coreCount, l.threadsPerCore = 1, 2
	if known {
		l.coreCount, l.threadsPerCore = t.cores, t.vcpus/t.cores
	}
	cpu := p.sub("CpuOptions")
	if n, ok, err := cpu.int("CoreCount"); err != nil {
		return err
	} else if ok {
		l.coreCount = n
	}
	if n, ok, err := cpu.int("ThreadsPerCore"); err != nil {
		return err
	} else if ok {
		if n != 1 && n != 2 {
			return errf(400, "InvalidParameterValue", "Value (%d) for parameter threadsPerCore is invalid. Expected 1 or 2.", n)
		}
		l.threadsPerCore = n
	}
	if known && t.burstable {
		l.cpuCredits = "unlimited"
		if strings.HasPrefix(l.instanceType, "t2.") {
			l.cpuCredits = "standard"
		}
	}
	if c := p.get("CreditSpecification.CpuCredits"); c != "" {
		if !known || !t.burstable {
			return errf(400, "InvalidParameterCombination", "The CreditSpecification parameter applies to burstable performance instances only (T2, T3, T3a, T4g), not %s.", l.instanceType)
		}
		if c != "standard" && c != "unlimited" {
			return errf(400, "InvalidParameterValue", "Value (%s) for parameter cpuCredits is invalid. Expected standard or unlimited.", c)
		}
		l.cpuCredits = c
	}
	return nil
}

// set applies MetadataOptions.* (RunInstances) or the same keys at the top
// level (ModifyInstanceMetadataOptions).
func (m *metadataOptions) set(p params) error {
	for key, field := range map[string]*string{"HttpTokens": &m.httpTokens, "HttpEndpoint": &m.httpEndpoint,
		"HttpProtocolIpv6": &m.httpProtocolIPv6, "InstanceMetadataTags": &m.instanceMetadataTags} {
		v := p.get(key)
		if v == "" {
			continue
		}
		allowed := []string{"enabled", "disabled"}
		if key == "HttpTokens" {
			allowed = []string{"optional", "required"}
		}
		if !slices.Contains(allowed, v) {
			return errf(400, "InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected one of %s.", v, key, strings.Join(allowed, ", "))
		}
		*field = v
	}
	if n, ok, err := p.int("HttpPutResponseHopLimit"); err != nil {
		return err
	} else if ok {
		if n < 1 || n > 64 {
			return errf(400, "InvalidParameterValue", "Value (%d) for parameter httpPutResponseHopLimit is invalid. Expected 1 to 64.", n)
		}
		m.hopLimit = n
	}
	return nil
}
