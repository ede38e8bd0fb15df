package ec2

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// state is everything the server knows; guarded by Server.mu.
type state struct {
	vpcs      map[string]*vpc
	subnets   map[string]*subnet
	igws      map[string]*internetGateway
	rtbs      map[string]*routeTable
	sgs       map[string]*securityGroup
	instances map[string]*instance
	volumes   map[string]*volume
	images    map[string]*image
	profiles  map[string]*instanceProfile // by name
	tokens    map[string]*runToken        // RunInstances ClientToken
	ids       map[string]bool             // every id ever handed out
	keyPairs  map[string]*keyPair         // by name
	acls      map[string]*networkACL

	ebsEncryptionByDefault bool

	dhcpOptionsID string
	publicIPSeq   uint32
}

func newState() *state {
	return &state{
		vpcs:      map[string]*vpc{},
		subnets:   map[string]*subnet{},
		igws:      map[string]*internetGateway{},
		rtbs:      map[string]*routeTable{},
		sgs:       map[string]*securityGroup{},
		instances: map[string]*instance{},
		volumes:   map[string]*volume{},
		images:    map[string]*image{},
		profiles:  map[string]*instanceProfile{},
		tokens:    map[string]*runToken{},
		ids:       map[string]bool{},
		keyPairs:  map[string]*keyPair{},
		acls:      map[string]*networkACL{},
	}
}

type vpc struct {
	id, cidr, cidrAssocID string
	prefix                netip.Prefix
	dnsSupport            bool
	dnsHostnames          bool
	addressUsageMetrics   bool // enableNetworkAddressUsageMetrics
	defaultSG, mainRT     string
	defaultACL            string
	tags                  map[string]string
}

type subnet struct {
	id, vpcID, cidr, az string
	prefix              netip.Prefix
	mapPublicIP         bool
	used                map[netip.Addr]string // private IP -> instance id
	aclAssocID          string                // its association with the VPC's default network ACL
	tags                map[string]string
}

type internetGateway struct {
	id, vpcID string // vpcID empty when detached
	tags      map[string]string
}

type routeTable struct {
	id, vpcID string
	routes    []*rtRoute
	assocs    []*rtAssoc
	tags      map[string]string
}

type rtRoute struct {
	dest, gatewayID, instanceID, natGatewayID, origin string
}

type rtAssoc struct {
	id, subnetID string
	main         bool
}

type securityGroup struct {
	id, name, desc, vpcID string
	ingress, egress       []*sgRule
	tags                  map[string]string
}

type sgRule struct {
	id        string
	proto     string // "-1", "tcp", "udp", "icmp" or a number
	from, to  int32  // -1 when not applicable
	cidr      string // IPv4 source/destination
	cidrV6    string
	groupID   string // referenced group
	desc      string
	egress    bool
	tags      map[string]string
	ownerSGID string
}

type instanceProfile struct {
	name, arn, id string
}

type instance struct {
	id, reservationID, imageID, instanceType string
	subnetID, vpcID, az                      string
	privateIP, publicIP                      string
	wantPublicIP                             bool
	keyName                                  string
	profile                                  *instanceProfile
	profileAssocID                           string
	profileAssocAt                           time.Time // when profileAssocID was made
	sgIDs                                    []string
	userData                                 []byte
	tags                                     map[string]string
	launchTime                               time.Time
	clientToken                              string
	launchIndex                              int
	architecture                             string
	rootDeviceName                           string
	devices                                  []*instanceDevice
	disableAPITermination                    bool
	disableAPIStop                           bool
	eniID, eniAttachmentID, mac              string // its primary network interface
	metadata                                 metadataOptions
	cpuCredits                               string // burstable types: standard or unlimited
	coreCount, threadsPerCore                int
	console                                  string // GetConsoleOutput, as the machine would print it
	impaired                                 bool   // its instance status check fails (BootFailed)

	state        string
	stateAt      time.Time // when the instance entered state
	reason       string    // stateTransitionReason
	reasonCode   string    // stateReason
	reasonDetail string
	visibleAt    time.Time
}

// metadataOptions are an instance's instance metadata service settings.
type metadataOptions struct {
	httpTokens, httpEndpoint, httpProtocolIPv6, instanceMetadataTags string
	hopLimit                                                         int
}

type instanceDevice struct {
	device, volumeID    string
	deleteOnTermination bool
	attachTime          time.Time
}

type volume struct {
	id, az, volumeType, snapshotID string
	size, iops, throughput         int
	encrypted                      bool
	createTime                     time.Time
	instanceID, device             string // attachment; empty when available
	kmsKeyID                       string // encrypted volumes: the KMS key
	deleteOnTermination            bool
	attachTime                     time.Time
	tags                           map[string]string
}

type image struct {
	Image
	snapshotID string
	tags       map[string]string
}

type runToken struct {
	fingerprint   string
	reservationID string
	instanceIDs   []string
}

// Instance states and their codes, as EC2 reports them.
const (
	statePending      = "pending"
	stateRunning      = "running"
	stateShuttingDown = "shutting-down"
	stateTerminated   = "terminated"
	stateStopping     = "stopping"
	stateStopped      = "stopped"
)

func stateCode(name string) int {
	switch name {
	case statePending:
		return 0
	case stateRunning:
		return 16
	case stateShuttingDown:
		return 32
	case stateTerminated:
		return 48
	case stateStopping:
		return 64
	case stateStopped:
		return 80
	}
	return -1
}

// newID returns an unused id such as "vpc-0a1b2c3d4e5f60718" (17 hex digits),
// drawn from the server's seeded PRNG. Call with s.mu held.
func (s *Server) newID(prefix string) string {
	for {
		id := fmt.Sprintf("%s-%01x%016x", prefix, s.idRand.Uint64()&0xf, s.idRand.Uint64())
		if !s.st.ids[id] {
			s.st.ids[id] = true
			return id
		}
	}
}

func delayOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// advance moves every instance along its lifecycle up to now.
// Call with s.mu held.
func (s *Server) advance(now time.Time) {
	pending := delayOr(s.PendingDelay, DefaultPendingDelay)
	stopping := delayOr(s.StoppingDelay, DefaultStoppingDelay)
	shutting := delayOr(s.ShuttingDownDelay, DefaultShuttingDownDelay)
	retention := delayOr(s.TerminatedRetention, DefaultTerminatedRetention)
	for _, id := range slices.Sorted(maps.Keys(s.st.instances)) {
		in := s.st.instances[id]
		switch in.state {
		case statePending:
			if at := in.stateAt.Add(pending); !now.Before(at) {
				in.state, in.stateAt = stateRunning, at
				// EC2 gives a public address once the instance runs, not
				// while it is pending.
				if in.wantPublicIP && in.publicIP == "" {
					in.publicIP = s.allocatePublicIP()
				}
			}
		case stateStopping:
			if at := in.stateAt.Add(stopping); !now.Before(at) {
				in.state, in.stateAt = stateStopped, at
				in.reasonCode, in.reasonDetail = "Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown"
			}
		case stateShuttingDown:
			if at := in.stateAt.Add(shutting); !now.Before(at) {
				in.state, in.stateAt = stateTerminated, at
				in.reasonCode, in.reasonDetail = "Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown"
				s.releaseTerminated(in)
			}
		}
		if in.state == stateTerminated && !now.Before(in.stateAt.Add(retention)) {
			delete(s.st.instances, id)
			s.forgetToken(in.clientToken)
		}
	}
}

// forgetToken drops a ClientToken once none of the instances it launched
// is left: EC2 keeps a token "for at least 24 hours after the termination
// of the instance", the lab as long as it shows the instance.
func (s *Server) forgetToken(token string) {
	t := s.st.tokens[token]
	if t == nil {
		return
	}
	for _, id := range t.instanceIDs {
		if s.st.instances[id] != nil {
			return
		}
	}
	delete(s.st.tokens, token)
}

// releaseTerminated frees what a terminated instance held: its addresses,
// its delete-on-termination volumes (others become available).
func (s *Server) releaseTerminated(in *instance) {
	if sn := s.st.subnets[in.subnetID]; sn != nil && in.privateIP != "" {
		if a, err := netip.ParseAddr(in.privateIP); err == nil {
			delete(sn.used, a)
		}
	}
	in.privateIP, in.publicIP = "", ""
	for _, d := range in.devices {
		v := s.st.volumes[d.volumeID]
		if v == nil {
			continue
		}
		if d.deleteOnTermination {
			delete(s.st.volumes, v.id)
		} else {
			v.instanceID, v.device = "", ""
		}
	}
	in.devices = nil
	in.profileAssocID = ""
}

// allocatePrivateIP takes the lowest free address of the subnet, skipping
// the 4 first and the last (reserved by AWS).
func (sn *subnet) allocatePrivateIP(instanceID string) (netip.Addr, bool) {
	first := sn.prefix.Masked().Addr()
	size := 1 << (32 - sn.prefix.Bits())
	a := first
	for i := 0; i < size-1; i++ {
		if i >= 4 {
			if _, taken := sn.used[a]; !taken {
				sn.used[a] = instanceID
				return a, true
			}
		}
		a = a.Next()
	}
	return netip.Addr{}, false
}

func (sn *subnet) freeIPs() int {
	return (1 << (32 - sn.prefix.Bits())) - 5 - len(sn.used)
}

// allocatePublicIP hands out addresses from 198.18.0.0/15 (a range reserved
// for benchmarking, so it never collides with anything real).
func (s *Server) allocatePublicIP() string {
	s.st.publicIPSeq++
	n := s.st.publicIPSeq
	return fmt.Sprintf("198.%d.%d.%d", 18+(n>>16)&1, (n>>8)&0xff, n&0xff)
}

// sortedValues returns the map's values ordered by key.
func sortedValues[T any](m map[string]T) []T {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func cloneTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	maps.Copy(out, m)
	return out
}

func tagsFrom(tags []tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[t.key] = t.value
	}
	return m
}
