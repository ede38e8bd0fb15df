package ec2

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
)

// What a Terraform-built account answers besides its resources: the
// region's zones, the account's attributes and EBS defaults, the instance
// types. The shapes follow the EC2 API reference (API version 2016-11-15)
// as the botocore service model the AWS CLI ships spells them.

// zoneLetters are the availability zones of every lab region.
var zoneLetters = []string{"a", "b", "c", "d"}

type xAvailabilityZone struct {
	State              string `xml:"zoneState"`
	OptInStatus        string `xml:"optInStatus"`
	Messages           []xTag `xml:"messageSet>item"`
	RegionName         string `xml:"regionName"`
	ZoneName           string `xml:"zoneName"`
	ZoneID             string `xml:"zoneId"`
	GroupName          string `xml:"groupName"`
	NetworkBorderGroup string `xml:"networkBorderGroup"`
	ZoneType           string `xml:"zoneType"`
}

// zonesNamed is the region's zones ZoneName.N or ZoneId.N names (all of
// them when none), every name being a zone's.
func zonesNamed(region string, names, ids []string) ([]*xAvailabilityZone, error) {
	var zones []*xAvailabilityZone
	for _, l := range zoneLetters {
		zones = append(zones, &xAvailabilityZone{State: "available", OptInStatus: "opt-in-not-required",
			RegionName: region, ZoneName: region + l, ZoneID: azID(region + l), GroupName: region,
			NetworkBorderGroup: region, ZoneType: "availability-zone"})
	}
	if len(names) == 0 && len(ids) == 0 {
		return zones, nil
	}
	var sel []*xAvailabilityZone
	for _, z := range zones {
		if slices.Contains(names, z.ZoneName) || slices.Contains(ids, z.ZoneID) {
			sel = append(sel, z)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(sel, func(z *xAvailabilityZone) bool { return z.ZoneName == n }) {
			return nil, errf(400, "InvalidParameterValue", "Invalid availability zone: [%s]", n)
		}
	}
	return sel, nil
}

func zoneFilter(z *xAvailabilityZone) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "zone-name":
			return []string{z.ZoneName}, true
		case "zone-id":
			return []string{z.ZoneID}, true
		case "state":
			return []string{z.State}, true
		case "region-name":
			return []string{z.RegionName}, true
		case "zone-type":
			return []string{z.ZoneType}, true
		case "opt-in-status":
			return []string{z.OptInStatus}, true
		case "group-name":
			return []string{z.GroupName}, true
		case "network-border-group":
			return []string{z.NetworkBorderGroup}, true
		}
		return nil, false
	}
}

// describeAvailabilityZones answers in one page (the action takes no
// MaxResults).
func (s *Server) describeAvailabilityZones(c *call) (any, error) {
	xml := func(z *xAvailabilityZone) xAvailabilityZone { return *z }
	return describe(c, "availabilityZoneInfo", xml, listing[xAvailabilityZone]{
		pick: func() ([]*xAvailabilityZone, error) {
			return zonesNamed(c.region, c.p.list("ZoneName"), c.p.list("ZoneId"))
		},
		filter: zoneFilter, id: func(z *xAvailabilityZone) string { return z.ZoneName }})
}

type xAccountAttribute struct {
	Name   string       `xml:"attributeName"`
	Values []xAttrValue `xml:"attributeValueSet>item"`
}

type xAttrValue struct {
	Value string `xml:"attributeValue"`
}

// accountAttributes are what EC2 reports of an account with no default
// VPC in a region: VPC only, and its default limits.
var accountAttributes = []struct{ name, value string }{
	{"supported-platforms", "VPC"},
	{"default-vpc", "none"},
	{"max-instances", "1000"},
	{"vpc-max-security-groups-per-interface", "5"},
	{"max-elastic-ips", "5"},
	{"vpc-max-elastic-ips", "5"},
}

func (s *Server) describeAccountAttributes(c *call) (any, error) {
	want := c.p.list("AttributeName")
	resp := struct {
		Attrs set[xAccountAttribute] `xml:"accountAttributeSet"`
	}{}
	for _, n := range want {
		if !slices.ContainsFunc(accountAttributes, func(a struct{ name, value string }) bool { return a.name == n }) {
			return nil, errf(400, "InvalidParameterValue", "Value (%s) for parameter attributeName is invalid.", n)
		}
	}
	for _, a := range accountAttributes {
		if len(want) == 0 || slices.Contains(want, a.name) {
			resp.Attrs.Items = append(resp.Attrs.Items, xAccountAttribute{Name: a.name, Values: []xAttrValue{{a.value}}})
		}
	}
	return resp, nil
}

func (s *Server) getEbsEncryptionByDefault(c *call) (any, error) {
	return struct {
		Enabled bool `xml:"ebsEncryptionByDefault"`
	}{s.st.ebsEncryptionByDefault}, nil
}

func (s *Server) setEbsEncryptionByDefault(c *call) (any, error) {
	s.st.ebsEncryptionByDefault = c.action == "EnableEbsEncryptionByDefault"
	return struct {
		Enabled bool `xml:"ebsEncryptionByDefault"`
	}{s.st.ebsEncryptionByDefault}, nil
}

// kmsKeyARN is the account's AWS managed EBS key (alias aws/ebs) in a
// region, which encrypts a volume that names no key of its own.
func (s *Server) kmsKeyARN(region string) string {
	h := sha256.Sum256([]byte("aws/ebs " + s.AccountID + " " + region))
	x := hex.EncodeToString(h[:16])
	return "arn:aws:kms:" + region + ":" + s.AccountID + ":key/" + x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// instanceType is what DescribeInstanceTypes says of a type.
type instanceType struct {
	name            string
	vcpus, cores    int
	memoryMiB       int
	burstable       bool
	architecture    string
	networkMaxENIs  int
	networkIPsPerIf int
}

// instanceTypes are the types the lab knows, as the EC2 instance type
// documentation lists them.
var instanceTypes = []instanceType{
	{"t3.nano", 2, 1, 512, true, "x86_64", 2, 2},
	{"t3.micro", 2, 1, 1024, true, "x86_64", 2, 2},
	{"t3.small", 2, 1, 2048, true, "x86_64", 3, 4},
	{"t3.medium", 2, 1, 4096, true, "x86_64", 3, 6},
	{"t3.large", 2, 1, 8192, true, "x86_64", 3, 12},
	{"t3.xlarge", 4, 2, 16384, true, "x86_64", 4, 15},
	{"t3.2xlarge", 8, 4, 32768, true, "x86_64", 4, 15},
	{"t3a.medium", 2, 1, 4096, true, "x86_64", 3, 6},
	{"t4g.small", 2, 2, 2048, true, "arm64", 3, 4},
	{"t4g.medium", 2, 2, 4096, true, "arm64", 3, 6},
	{"m5.large", 2, 1, 8192, false, "x86_64", 3, 10},
	{"m5.xlarge", 4, 2, 16384, false, "x86_64", 4, 15},
	{"c5.large", 2, 1, 4096, false, "x86_64", 3, 10},
	{"m1.small", 1, 1, 1740, false, "x86_64", 2, 4},
}

func lookupInstanceType(name string) (instanceType, bool) {
	i := slices.IndexFunc(instanceTypes, func(t instanceType) bool { return t.name == name })
	if i < 0 {
		return instanceType{}, false
	}
	return instanceTypes[i], true
}

type xInstanceTypeInfo struct {
	InstanceType      string   `xml:"instanceType"`
	CurrentGeneration bool     `xml:"currentGeneration"`
	FreeTierEligible  bool     `xml:"freeTierEligible"`
	UsageClasses      []string `xml:"supportedUsageClasses>item"`
	RootDeviceTypes   []string `xml:"supportedRootDeviceTypes>item"`
	Virtualization    []string `xml:"supportedVirtualizationTypes>item"`
	BareMetal         bool     `xml:"bareMetal"`
	Hypervisor        string   `xml:"hypervisor"`
	Processor         struct {
		Architectures []string `xml:"supportedArchitectures>item"`
	} `xml:"processorInfo"`
	VCPU struct {
		DefaultVCpus          int `xml:"defaultVCpus"`
		DefaultCores          int `xml:"defaultCores"`
		DefaultThreadsPerCore int `xml:"defaultThreadsPerCore"`
	} `xml:"vCpuInfo"`
	Memory struct {
		SizeInMiB int `xml:"sizeInMiB"`
	} `xml:"memoryInfo"`
	InstanceStorageSupported bool `xml:"instanceStorageSupported"`
	Ebs                      struct {
		EbsOptimizedSupport string `xml:"ebsOptimizedSupport"`
		EncryptionSupport   string `xml:"encryptionSupport"`
		NvmeSupport         string `xml:"nvmeSupport"`
	} `xml:"ebsInfo"`
	Network struct {
		Performance               string `xml:"networkPerformance"`
		MaximumNetworkInterfaces  int    `xml:"maximumNetworkInterfaces"`
		Ipv4AddressesPerInterface int    `xml:"ipv4AddressesPerInterface"`
		Ipv6AddressesPerInterface int    `xml:"ipv6AddressesPerInterface"`
		Ipv6Supported             bool   `xml:"ipv6Supported"`
		EnaSupport                string `xml:"enaSupport"`
	} `xml:"networkInfo"`
	HibernationSupported          bool     `xml:"hibernationSupported"`
	BurstablePerformanceSupported bool     `xml:"burstablePerformanceSupported"`
	DedicatedHostsSupported       bool     `xml:"dedicatedHostsSupported"`
	AutoRecoverySupported         bool     `xml:"autoRecoverySupported"`
	BootModes                     []string `xml:"supportedBootModes>item"`
}

func (t instanceType) xml() xInstanceTypeInfo {
	x := xInstanceTypeInfo{InstanceType: t.name, CurrentGeneration: t.name != "m1.small", FreeTierEligible: t.name == "t3.micro",
		UsageClasses: []string{"on-demand", "spot"}, RootDeviceTypes: []string{"ebs"}, Virtualization: []string{"hvm"},
		Hypervisor: "nitro", BurstablePerformanceSupported: t.burstable, AutoRecoverySupported: true,
		BootModes: []string{"legacy-bios", "uefi"}}
	x.Processor.Architectures = []string{t.architecture}
	x.VCPU.DefaultVCpus, x.VCPU.DefaultCores, x.VCPU.DefaultThreadsPerCore = t.vcpus, t.cores, t.vcpus/t.cores
	x.Memory.SizeInMiB = t.memoryMiB
	x.Ebs.EbsOptimizedSupport, x.Ebs.EncryptionSupport, x.Ebs.NvmeSupport = "default", "supported", "required"
	x.Network.Performance, x.Network.MaximumNetworkInterfaces, x.Network.Ipv4AddressesPerInterface = "Up to 5 Gigabit", t.networkMaxENIs, t.networkIPsPerIf
	x.Network.Ipv6AddressesPerInterface, x.Network.Ipv6Supported, x.Network.EnaSupport = t.networkIPsPerIf, true, "required"
	return x
}

func instanceTypeFilter(t *instanceType) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "instance-type":
			return []string{t.name}, true
		case "burstable-performance-supported":
			return []string{boolStr(t.burstable)}, true
		case "processor-info.supported-architecture":
			return []string{t.architecture}, true
		case "current-generation":
			return []string{boolStr(t.name != "m1.small")}, true
		}
		return nil, false
	}
}

// instanceTypesNamed is the types names names (all of them when none),
// sorted by name.
func instanceTypesNamed(names []string) ([]*instanceType, error) {
	var items []*instanceType
	for _, t := range instanceTypes {
		items = append(items, &t)
	}
	if len(names) > 0 {
		items = nil
		for _, n := range names {
			t, ok := lookupInstanceType(n)
			if !ok {
				return nil, errf(400, "InvalidInstanceType", "The following supplied instance types do not exist: [%s]", n)
			}
			items = append(items, &t)
		}
	}
	slices.SortFunc(items, func(a, b *instanceType) int { return strings.Compare(a.name, b.name) })
	return items, nil
}

func (s *Server) describeInstanceTypes(c *call) (any, error) {
	return describe(c, "instanceTypeSet", (*instanceType).xml, listing[instanceType]{pageMin: 5, pageMax: 100,
		pick:   func() ([]*instanceType, error) { return instanceTypesNamed(c.p.list("InstanceType")) },
		filter: instanceTypeFilter, id: func(t *instanceType) string { return t.name }})
}

// describeInstanceCreditSpecifications answers for burstable instances
// (T2, T3, T4g: unlimited, the default of T3 and T4g); asked by id for
// another, EC2 refuses.
func (s *Server) describeInstanceCreditSpecifications(c *call) (any, error) {
	type credit struct {
		InstanceID string `xml:"instanceId"`
		CpuCredits string `xml:"cpuCredits"`
	}
	var list []*instance
	if ids := c.p.list("InstanceId"); len(ids) > 0 {
		var err error
		if list, err = s.lookupInstances(c.p); err != nil {
			return nil, err
		}
		for _, in := range list {
			if t, _ := lookupInstanceType(in.instanceType); !t.burstable {
				return nil, errf(400, "UnsupportedOperation",
					"The instance %s is not a burstable performance instance; only T2, T3, T3a and T4g instances have credit specifications.", in.id)
			}
		}
	} else {
		for _, in := range sortedValues(s.st.instances) {
			if t, _ := lookupInstanceType(in.instanceType); t.burstable && in.state != stateTerminated {
				list = append(list, in)
			}
		}
	}
	resp := struct {
		Credits set[credit] `xml:"instanceCreditSpecificationSet"`
	}{}
	for _, in := range list {
		resp.Credits.Items = append(resp.Credits.Items, credit{in.id, in.cpuCredits})
	}
	return resp, nil
}
