package reconcile

import (
	"fmt"
	"strings"

	"github.com/ducksnest/nestbot/pki"
)

// Address names what a plan step acts on, as Terraform's addrs do: a
// plane, a kind within it, and a name. It is written
//
//	aws.<kind>             aws.vpc, aws.internet_gateway, aws.security_group
//	aws.<kind>.<name>      aws.subnet.<subnet>, aws.route_table.public, aws.instance.<host>
//	tailnet.node.<host>
//	pki.cert.<id>          pki.cert.ca, pki.cert.<host>/k8s-kubelet
//	pki.key.<id>           pki.key.service-account
//	host.<host>
//
// A name is the rest of the address after its kind: it may hold dots and
// slashes (a certificate id does), so String and ParseAddress round-trip
// whatever the name. The zero Address is no address.
type Address struct {
	Plane Plane
	// Kind is, in the cloud plane, a Kind* constant; in the tailnet plane,
	// KindNode; in the pki plane, KindCert or KindKey; in the hosts plane, "".
	Kind string
	// Name is the subnet, host, certificate id, …; "" for the cloud
	// resources a fleet has one of (its VPC, internet gateway, security group).
	Name string
}

// Address kinds of the tailnet and pki planes (the cloud's are Kind* above).
const (
	KindNode = "node" // a tailnet node
	KindCert = "cert" // a certificate and its key
	KindKey  = "key"  // a key pair without a certificate
)

// prefix is how the addresses of a plane begin.
func (p Plane) prefix() string {
	switch p {
	case PlaneCloud:
		return "aws"
	case PlaneHosts:
		return "host"
	}
	return string(p) // tailnet, pki
}

// planeOfPrefix is the plane whose addresses begin with prefix, or "".
func planeOfPrefix(prefix string) Plane {
	for _, p := range Planes() {
		if p.prefix() == prefix {
			return p
		}
	}
	return ""
}

// kindNamed reports whether kind is one of plane's, and whether an address
// of it must have a name. A cloud address need not: nestbot gives the VPC,
// the internet gateway and the security group none, and the others a name,
// but it plans the deletion of whatever address a resource's nest:resource
// tag holds, aws.security_group.old included.
func kindNamed(plane Plane, kind string) (named, ok bool) {
	switch plane {
	case PlaneCloud:
		switch kind {
		case KindVPC, KindSubnet, KindInternetGateway, KindRouteTable, KindSecurityGroup, KindInstance:
			return false, true
		}
	case PlaneTailnet:
		return true, kind == KindNode
	case PlanePKI:
		return true, kind == KindCert || kind == KindKey
	}
	return false, false
}

// CloudAddress returns the plan address of a cloud resource; name is ""
// for the resources a fleet has one of.
func CloudAddress(kind, name string) Address {
	return Address{Plane: PlaneCloud, Kind: kind, Name: name}
}

// HostAddress returns the plan address of a host's rollout.
func HostAddress(name string) Address { return Address{Plane: PlaneHosts, Name: name} }

// TailnetAddress returns the plan address of a tailnet node.
func TailnetAddress(name string) Address {
	return Address{Plane: PlaneTailnet, Kind: KindNode, Name: name}
}

// CertAddress returns the plan address of a certificate or key.
func CertAddress(id string) Address {
	if id == pki.ServiceAccount {
		return Address{Plane: PlanePKI, Kind: KindKey, Name: id}
	}
	return Address{Plane: PlanePKI, Kind: KindCert, Name: id}
}

// String is the address as plans, tags and journals write it.
func (a Address) String() string {
	if a.Plane == "" {
		return ""
	}
	s := a.Plane.prefix()
	if a.Kind != "" {
		s += "." + a.Kind
	}
	if a.Name != "" {
		s += "." + a.Name
	}
	return s
}

// Is reports whether a is of the plane and kind given.
func (a Address) Is(plane Plane, kind string) bool { return a.Plane == plane && a.Kind == kind }

// Within reports whether a is target or lies under it: aws.subnet.public-a
// is within aws.subnet.public-a, aws.subnet and aws. target is an address
// or its leading part, as --target takes it.
func (a Address) Within(target string) bool {
	s := a.String()
	return s == target || strings.HasPrefix(s, target+".")
}

// ParseAddress reads an address as String writes it, refusing one of no
// plane nestbot plans, of a kind its plane does not have, or without the
// name its kind needs.
func ParseAddress(s string) (Address, error) {
	if s == "" {
		return Address{}, fmt.Errorf("empty plan address")
	}
	head, rest, _ := strings.Cut(s, ".")
	a := Address{Plane: planeOfPrefix(head)}
	if a.Plane == "" {
		return Address{}, fmt.Errorf("plan address %q: %q is not a plane's (aws, tailnet, pki or host)", s, head)
	}
	if a.Plane == PlaneHosts {
		if rest == "" {
			return Address{}, fmt.Errorf("plan address %q: no host name (host.<name>)", s)
		}
		a.Name = rest
		return a, nil
	}
	a.Kind, a.Name, _ = strings.Cut(rest, ".")
	named, ok := kindNamed(a.Plane, a.Kind)
	switch {
	case !ok:
		return Address{}, fmt.Errorf("plan address %q: %q is not a kind of %s address", s, a.Kind, head)
	case named && a.Name == "":
		return Address{}, fmt.Errorf("plan address %q: no name (%s.%s.<name>)", s, head, a.Kind)
	}
	return a, nil
}

// MarshalText writes the address as String does, so JSON holds it as a string.
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads an address as ParseAddress does.
func (a *Address) UnmarshalText(b []byte) error {
	parsed, err := ParseAddress(string(b))
	if err != nil {
		return err
	}
	*a = parsed
	return nil
}

// MustParseAddress is ParseAddress for an address known to be good, as in
// a test's table; it panics on a bad one.
func MustParseAddress(s string) Address {
	a, err := ParseAddress(s)
	if err != nil {
		panic("reconcile: " + err.Error())
	}
	return a
}
