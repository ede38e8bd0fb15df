package ec2

import (
	"strings"
)

type xReservation struct {
	ReservationID string      `xml:"reservationId"`
	OwnerID       string      `xml:"ownerId"`
	Groups        []xGroup    `xml:"groupSet>item"`
	Instances     []xInstance `xml:"instancesSet>item"`
}

type xInstance struct {
	InstanceID         string         `xml:"instanceId"`
	ImageID            string         `xml:"imageId"`
	State              xInstanceState `xml:"instanceState"`
	PrivateDNSName     string         `xml:"privateDnsName"`
	DNSName            string         `xml:"dnsName"`
	Reason             string         `xml:"reason"`
	KeyName            string         `xml:"keyName,omitempty"`
	AmiLaunchIndex     int            `xml:"amiLaunchIndex"`
	InstanceType       string         `xml:"instanceType"`
	LaunchTime         string         `xml:"launchTime"`
	Placement          xPlacement     `xml:"placement"`
	Monitoring         xMonitoring    `xml:"monitoring"`
	SubnetID           string         `xml:"subnetId,omitempty"`
	VpcID              string         `xml:"vpcId,omitempty"`
	PrivateIP          string         `xml:"privateIpAddress,omitempty"`
	PublicIP           string         `xml:"ipAddress,omitempty"`
	SourceDestCheck    bool           `xml:"sourceDestCheck"`
	Groups             []xGroup       `xml:"groupSet>item"`
	StateReason        *xStateReason  `xml:"stateReason"`
	Architecture       string         `xml:"architecture"`
	RootDeviceType     string         `xml:"rootDeviceType"`
	RootDeviceName     string         `xml:"rootDeviceName"`
	BlockDevices       []xInstanceBDM `xml:"blockDeviceMapping>item"`
	VirtualizationType string         `xml:"virtualizationType"`
	ClientToken        string         `xml:"clientToken,omitempty"`
	Tags               []xTag         `xml:"tagSet>item,omitempty"`
	Hypervisor         string         `xml:"hypervisor"`
	IAMInstanceProfile *xIAMProfile   `xml:"iamInstanceProfile"`
	EbsOptimized       bool           `xml:"ebsOptimized"`
	EnaSupport         bool           `xml:"enaSupport"`
	NetworkInterfaces  []xInstanceENI `xml:"networkInterfaceSet>item"`
	CPUOptions         xCPUOptions    `xml:"cpuOptions"`
	MetadataOptions    xMetadata      `xml:"metadataOptions"`
	PlatformDetails    string         `xml:"platformDetails"`
}

type xInstanceENI struct {
	Association     *xENIAssociation `xml:"association"`
	Attachment      xENIAttachment   `xml:"attachment"`
	Description     string           `xml:"description"`
	Groups          []xGroup         `xml:"groupSet>item"`
	MacAddress      string           `xml:"macAddress"`
	ID              string           `xml:"networkInterfaceId"`
	OwnerID         string           `xml:"ownerId"`
	PrivateDNSName  string           `xml:"privateDnsName,omitempty"`
	PrivateIP       string           `xml:"privateIpAddress,omitempty"`
	PrivateIPs      []xENIPrivateIP  `xml:"privateIpAddressesSet>item"`
	SourceDestCheck bool             `xml:"sourceDestCheck"`
	Status          string           `xml:"status"`
	SubnetID        string           `xml:"subnetId"`
	VpcID           string           `xml:"vpcId"`
	InterfaceType   string           `xml:"interfaceType"`
}

type xENIAssociation struct {
	IPOwnerID     string `xml:"ipOwnerId"`
	PublicDNSName string `xml:"publicDnsName"`
	PublicIP      string `xml:"publicIp"`
}

type xENIAttachment struct {
	AttachTime          string `xml:"attachTime"`
	AttachmentID        string `xml:"attachmentId"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
	DeviceIndex         int    `xml:"deviceIndex"`
	Status              string `xml:"status"`
	NetworkCardIndex    int    `xml:"networkCardIndex"`
}

type xENIPrivateIP struct {
	Association    *xENIAssociation `xml:"association"`
	Primary        bool             `xml:"primary"`
	PrivateDNSName string           `xml:"privateDnsName,omitempty"`
	PrivateIP      string           `xml:"privateIpAddress"`
}

type xCPUOptions struct {
	CoreCount      int `xml:"coreCount"`
	ThreadsPerCore int `xml:"threadsPerCore"`
}

type xMetadata struct {
	State                string `xml:"state"`
	HTTPTokens           string `xml:"httpTokens"`
	HopLimit             int    `xml:"httpPutResponseHopLimit"`
	HTTPEndpoint         string `xml:"httpEndpoint"`
	HTTPProtocolIPv6     string `xml:"httpProtocolIpv6"`
	InstanceMetadataTags string `xml:"instanceMetadataTags"`
}

func (m metadataOptions) xml() xMetadata {
	return xMetadata{State: "applied", HTTPTokens: m.httpTokens, HopLimit: m.hopLimit, HTTPEndpoint: m.httpEndpoint,
		HTTPProtocolIPv6: m.httpProtocolIPv6, InstanceMetadataTags: m.instanceMetadataTags}
}

type xInstanceState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Tenancy          string `xml:"tenancy"`
}

type xMonitoring struct {
	State string `xml:"state"`
}

type xStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xInstanceBDM struct {
	DeviceName string  `xml:"deviceName"`
	Ebs        xEbsDev `xml:"ebs"`
}

type xEbsDev struct {
	VolumeID            string `xml:"volumeId"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xIAMProfile struct {
	Arn string `xml:"arn"`
	ID  string `xml:"id"`
}

// dnsNames returns EC2's private and public DNS names for an instance.
func (s *Server) dnsNames(in *instance) (private, public string) {
	region := regionOf(in.az)
	dash := func(ip string) string { return strings.ReplaceAll(ip, ".", "-") }
	if in.privateIP != "" {
		if region == "us-east-1" {
			private = "ip-" + dash(in.privateIP) + ".ec2.internal"
		} else {
			private = "ip-" + dash(in.privateIP) + "." + region + ".compute.internal"
		}
	}
	if v := s.st.vpcs[in.vpcID]; in.publicIP != "" && v != nil && v.dnsHostnames {
		if region == "us-east-1" {
			public = "ec2-" + dash(in.publicIP) + ".compute-1.amazonaws.com"
		} else {
			public = "ec2-" + dash(in.publicIP) + "." + region + ".compute.amazonaws.com"
		}
	}
	return private, public
}

func (s *Server) groupsXML(ids []string) []xGroup {
	var out []xGroup
	for _, id := range ids {
		g := xGroup{GroupID: id}
		if sg := s.st.sgs[id]; sg != nil {
			g.GroupName = sg.name
		}
		out = append(out, g)
	}
	return out
}

func (s *Server) instanceXML(in *instance) xInstance {
	private, public := s.dnsNames(in)
	x := xInstance{
		InstanceID: in.id, ImageID: in.imageID,
		State:          xInstanceState{stateCode(in.state), in.state},
		PrivateDNSName: private, DNSName: public, Reason: in.reason, KeyName: in.keyName,
		AmiLaunchIndex: in.launchIndex, InstanceType: in.instanceType, LaunchTime: fmtTime(in.launchTime),
		Placement:  xPlacement{AvailabilityZone: in.az, Tenancy: "default"},
		Monitoring: xMonitoring{"disabled"}, SubnetID: in.subnetID, VpcID: in.vpcID,
		PrivateIP: in.privateIP, PublicIP: in.publicIP, SourceDestCheck: true,
		Groups: s.groupsXML(in.sgIDs), Architecture: in.architecture, RootDeviceType: "ebs",
		RootDeviceName: in.rootDeviceName, VirtualizationType: "hvm", ClientToken: in.clientToken,
		Tags: tagsXML(in.tags), Hypervisor: "xen", EnaSupport: true, PlatformDetails: "Linux/UNIX",
	}
	if in.reasonCode != "" {
		x.StateReason = &xStateReason{in.reasonCode, in.reasonDetail}
	}
	if in.profile != nil {
		x.IAMInstanceProfile = &xIAMProfile{Arn: in.profile.arn, ID: in.profile.id}
	}
	x.CPUOptions = xCPUOptions{in.coreCount, in.threadsPerCore}
	x.MetadataOptions = in.metadata.xml()
	if in.state != stateTerminated && in.eniID != "" {
		eni := xInstanceENI{Attachment: xENIAttachment{AttachTime: fmtTime(in.launchTime), AttachmentID: in.eniAttachmentID,
			DeleteOnTermination: true, Status: "attached"}, Groups: s.groupsXML(in.sgIDs), MacAddress: in.mac, ID: in.eniID,
			OwnerID: s.AccountID, PrivateDNSName: private, PrivateIP: in.privateIP, SourceDestCheck: true, Status: "in-use",
			SubnetID: in.subnetID, VpcID: in.vpcID, InterfaceType: "interface"}
		if in.publicIP != "" {
			eni.Association = &xENIAssociation{IPOwnerID: "amazon", PublicDNSName: public, PublicIP: in.publicIP}
		}
		eni.PrivateIPs = []xENIPrivateIP{{Association: eni.Association, Primary: true, PrivateDNSName: private, PrivateIP: in.privateIP}}
		x.NetworkInterfaces = []xInstanceENI{eni}
	}
	for _, d := range in.devices {
		x.BlockDevices = append(x.BlockDevices, xInstanceBDM{DeviceName: d.device, Ebs: xEbsDev{
			VolumeID: d.volumeID, Status: "attached", AttachTime: fmtTime(d.attachTime),
			DeleteOnTermination: d.deleteOnTermination}})
	}
	return x
}

// reservationXML renders instances grouped into their reservations, in the
// order given.
func (s *Server) reservationsXML(list []*instance) []xReservation {
	var out []xReservation
	index := map[string]int{}
	for _, in := range list {
		i, ok := index[in.reservationID]
		if !ok {
			out = append(out, xReservation{ReservationID: in.reservationID, OwnerID: s.AccountID})
			i = len(out) - 1
			index[in.reservationID] = i
		}
		out[i].Instances = append(out[i].Instances, s.instanceXML(in))
	}
	return out
}

// reservationXML is RunInstances' answer: one reservation, current state of
// its instances (those not yet gone).
func (s *Server) reservationXML(resID string, ids []string) xReservation {
	r := xReservation{ReservationID: resID, OwnerID: s.AccountID}
	for _, id := range ids {
		if in := s.st.instances[id]; in != nil {
			r.Instances = append(r.Instances, s.instanceXML(in))
		}
	}
	return r
}

func (s *Server) instanceFilter(in *instance) filterFunc {
	return func(name string) ([]string, bool) {
		one := func(v string) ([]string, bool) {
			if v == "" {
				return nil, true
			}
			return []string{v}, true
		}
		switch name {
		case "instance-id":
			return one(in.id)
		case "instance-state-name":
			return one(in.state)
		case "instance-state-code":
			return one(itoa(stateCode(in.state)))
		case "instance-type":
			return one(in.instanceType)
		case "image-id":
			return one(in.imageID)
		case "subnet-id", "network-interface.subnet-id":
			return one(in.subnetID)
		case "vpc-id", "network-interface.vpc-id":
			return one(in.vpcID)
		case "availability-zone":
			return one(in.az)
		case "private-ip-address", "network-interface.addresses.private-ip-address":
			return one(in.privateIP)
		case "ip-address":
			return one(in.publicIP)
		case "key-name":
			return one(in.keyName)
		case "reservation-id":
			return one(in.reservationID)
		case "client-token":
			return one(in.clientToken)
		case "architecture":
			return one(in.architecture)
		case "launch-index":
			return one(itoa(in.launchIndex))
		case "owner-id":
			return one(s.AccountID)
		case "private-dns-name", "dns-name":
			private, public := s.dnsNames(in)
			if name == "dns-name" {
				return one(public)
			}
			return one(private)
		case "iam-instance-profile.arn":
			if in.profile == nil {
				return nil, true
			}
			return one(in.profile.arn)
		case "instance.group-id", "group-id":
			return in.sgIDs, true
		case "instance.group-name", "group-name":
			var out []string
			for _, g := range s.groupsXML(in.sgIDs) {
				out = append(out, g.GroupName)
			}
			return out, true
		case "block-device-mapping.volume-id":
			var out []string
			for _, d := range in.devices {
				out = append(out, d.volumeID)
			}
			return out, true
		}
		return tagFilter(in.tags, name)
	}
}

func (s *Server) describeInstances(c *call) (any, error) {
	ids := c.p.list("InstanceId")
	if len(ids) > 0 && c.p.has("MaxResults") {
		return nil, errf(400, "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	visible := map[string]*instance{}
	for id, in := range s.st.instances {
		if !c.now.Before(in.visibleAt) {
			visible[id] = in
		}
	}
	page, next, err := listing[instance]{pageMin: 5, pageMax: 1000,
		pick:   byID(visible, instanceKind, ids),
		filter: s.instanceFilter, id: func(in *instance) string { return in.id }}.page(c)
	if err != nil {
		return nil, err
	}
	resp := struct {
		Reservations set[xReservation] `xml:"reservationSet"`
		NextToken    string            `xml:"nextToken,omitempty"`
	}{NextToken: next}
	resp.Reservations.Items = s.reservationsXML(page)
	return resp, nil
}
