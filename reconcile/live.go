package reconcile

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// Live is everything observed of the fleet at one moment: one plain struct
// per plane. It is also the snapshot file format (--live / --save-live), so
// any plan can be reproduced offline.
type Live struct {
	FormatVersion string    `json:"format_version"`
	ObservedAt    time.Time `json:"observed_at"`
	// Planes lists the planes that were observed; null (or absent) means
	// all four. A plane that was not observed is not planned, and the plan
	// says so.
	Planes []Plane `json:"planes"`
	// Repo holds what was read from git for the hosts plane.
	Repo    Repo               `json:"repo"`
	Cloud   Cloud              `json:"cloud"`
	Tailnet Tailnet            `json:"tailnet"`
	PKI     PKI                `json:"pki"`
	Hosts   map[string]HostRun `json:"hosts,omitempty"`
}

// Repo is what git says about the target: the commit being planned, and for
// each revision a host runs, the paths changed since.
type Repo struct {
	Revision string `json:"revision,omitempty"`
	// Changed maps a revision some host runs to the repository paths that
	// differ between it and Revision. A missing entry means "not known".
	Changed map[string][]string `json:"changed,omitempty"`
	// Toplevels maps a host to its system's store path at Revision, where
	// nix evaluated it. Hosts that run and boot it are not rolled.
	Toplevels map[string]string `json:"toplevels,omitempty"`
	// EvalError says why the toplevels were not evaluated.
	EvalError string `json:"eval_error,omitempty"`
}

// Tags are AWS resource tags.
type Tags map[string]string

// Cloud is the AWS side.
type Cloud struct {
	Region           string            `json:"region,omitempty"`
	AccountID        string            `json:"account_id,omitempty"`
	VPCs             []VPC             `json:"vpcs,omitempty"`
	Subnets          []Subnet          `json:"subnets,omitempty"`
	InternetGateways []InternetGateway `json:"internet_gateways,omitempty"`
	RouteTables      []RouteTable      `json:"route_tables,omitempty"`
	SecurityGroups   []SecurityGroup   `json:"security_groups,omitempty"`
	Instances        []Instance        `json:"instances,omitempty"`
	Images           []Image           `json:"images,omitempty"`
}

// VPCOf returns the VPC that the observed resource of this kind and id is
// in (an internet gateway: the VPC it is attached to), or "" when it is not
// observed, is a VPC, or is in none.
func (c *Cloud) VPCOf(kind, id string) string {
	switch kind {
	case KindSubnet:
		return vpcByID(c.Subnets, id, func(s Subnet) (string, string) { return s.ID, s.VPCID })
	case KindInternetGateway:
		return vpcByID(c.InternetGateways, id, func(g InternetGateway) (string, string) { return g.ID, g.VPCID })
	case KindRouteTable:
		return vpcByID(c.RouteTables, id, func(r RouteTable) (string, string) { return r.ID, r.VPCID })
	case KindSecurityGroup:
		return vpcByID(c.SecurityGroups, id, func(g SecurityGroup) (string, string) { return g.ID, g.VPCID })
	case KindInstance:
		return vpcByID(c.Instances, id, func(in Instance) (string, string) { return in.ID, c.instanceVPC(in) })
	}
	return ""
}

// instanceVPC is the VPC of an instance; a snapshot written before
// instances carried their VPC has it from the subnet.
func (c *Cloud) instanceVPC(in Instance) string {
	return cmp.Or(in.VPCID, c.VPCOf(KindSubnet, in.SubnetID))
}

// vpcByID returns the VPC of the item whose id is id, "" when none is.
func vpcByID[T any](items []T, id string, idVPC func(T) (id, vpc string)) string {
	for _, x := range items {
		if xid, vpc := idVPC(x); xid == id {
			return vpc
		}
	}
	return ""
}

// VPC as observed.
type VPC struct {
	ID   string `json:"id"`
	CIDR string `json:"cidr"`
	Tags Tags   `json:"tags,omitempty"`
}

// Subnet as observed.
type Subnet struct {
	ID          string `json:"id"`
	VPCID       string `json:"vpc_id"`
	CIDR        string `json:"cidr"`
	Zone        string `json:"zone"`
	MapPublicIP bool   `json:"map_public_ip,omitempty"`
	Tags        Tags   `json:"tags,omitempty"`
}

// InternetGateway as observed.
type InternetGateway struct {
	ID    string `json:"id"`
	VPCID string `json:"vpc_id,omitempty"` // attached VPC, "" when detached
	Tags  Tags   `json:"tags,omitempty"`
}

// RouteTable as observed.
type RouteTable struct {
	ID           string   `json:"id"`
	VPCID        string   `json:"vpc_id"`
	Routes       []Route  `json:"routes,omitempty"`
	Associations []string `json:"associations,omitempty"` // subnet ids
	// Main is the VPC's main route table (the one subnets use unless
	// associated with another).
	Main bool `json:"main,omitempty"`
	Tags Tags `json:"tags,omitempty"`
}

// Route is one route of a route table.
type Route struct {
	Destination string `json:"destination"`
	Target      string `json:"target"` // igw-…, local, …
}

// SecurityGroup as observed.
type SecurityGroup struct {
	ID      string         `json:"id"`
	VPCID   string         `json:"vpc_id"`
	Name    string         `json:"name"`
	Ingress []SecurityRule `json:"ingress,omitempty"`
	Egress  []SecurityRule `json:"egress,omitempty"`
	Tags    Tags           `json:"tags,omitempty"`
}

// SecurityRule is one permission: protocol ("-1" or "all" for all), ports, CIDRs.
type SecurityRule struct {
	Protocol string   `json:"protocol"`
	FromPort int      `json:"from_port,omitempty"`
	ToPort   int      `json:"to_port,omitempty"`
	CIDRs    []string `json:"cidrs"`
}

// Instance as observed.
type Instance struct {
	ID              string `json:"id"`
	State           string `json:"state"` // pending, running, stopping, stopped, shutting-down, terminated
	Type            string `json:"type"`
	ImageID         string `json:"image_id"`
	SubnetID        string `json:"subnet_id"`
	VPCID           string `json:"vpc_id,omitempty"` // the VPC of its subnet
	PrivateIP       string `json:"private_ip,omitempty"`
	PublicIP        string `json:"public_ip,omitempty"`
	InstanceProfile string `json:"instance_profile,omitempty"` // name
	KeyName         string `json:"key_name,omitempty"`
	RootVolume      Volume `json:"root_volume"`
	Tags            Tags   `json:"tags,omitempty"`
}

// Volume is an EBS volume as observed.
type Volume struct {
	ID        string `json:"id,omitempty"`
	SizeGB    int    `json:"size_gb"`
	Type      string `json:"type"`
	Encrypted bool   `json:"encrypted"`
}

// Image is a machine image visible to the account.
type Image struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	OwnerID      string    `json:"owner_id"`
	CreationDate time.Time `json:"creation_date"`
	State        string    `json:"state"`
	RootDevice   string    `json:"root_device,omitempty"` // e.g. /dev/xvda
}

// Tailnet is the tailnet as the bot's node sees it.
type Tailnet struct {
	Self  string `json:"self,omitempty"` // the bot's own node name
	Nodes []Node `json:"nodes,omitempty"`
}

// Node is one tailnet device.
type Node struct {
	// ID is the node's stable id (the Tailscale API's device nodeId): what
	// binds it to a host, whatever name it gives itself.
	ID       string    `json:"id,omitempty"`
	Name     string    `json:"name"`
	DNSName  string    `json:"dns_name,omitempty"`
	IPs      []string  `json:"ips,omitempty"`
	Tags     []string  `json:"tags,omitempty"`
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// PKI is what the repository's certificate tree holds.
type PKI struct {
	// Certs maps a certificate id (as pki.Spec.ID) to what its files hold.
	Certs map[string]Cert `json:"certs,omitempty"`
}

// Cert is one certificate (or key pair) as read from the repository.
type Cert struct {
	CommonName   string    `json:"common_name,omitempty"`
	Organization []string  `json:"organization,omitempty"`
	DNSNames     []string  `json:"dns_names,omitempty"`
	IPs          []string  `json:"ips,omitempty"`
	Usages       []string  `json:"usages,omitempty"` // server, client
	IsCA         bool      `json:"is_ca,omitempty"`
	Issuer       string    `json:"issuer,omitempty"` // the signer's common name
	NotBefore    time.Time `json:"not_before,omitzero"`
	NotAfter     time.Time `json:"not_after,omitzero"`
	Recipients   []string  `json:"recipients,omitempty"` // of the .key.age file, as secrets.nix lists them
	// Path is the certificate's file (a key pair's .pub), relative to pki.dir.
	Path         string `json:"path,omitempty"`
	KeyOnly      bool   `json:"key_only,omitempty"`
	KeyAlgorithm string `json:"key_algorithm,omitempty"` // ecdsa-p256, rsa-2048, …
	Signer       string `json:"signer,omitempty"`        // the CA (its id) that signs it
	// Adopted is set for a certificate nestbot did not issue: it is desired
	// as it is, and never deleted unless pki.remove lists it.
	Adopted bool `json:"adopted,omitempty"`
	// KeyStanzas are its key's age header stanzas, when secrets.nix does
	// not list the key (pki.KeyStanzas).
	KeyStanzas []string `json:"key_stanzas,omitempty"`
	// NotRolled lists host:port endpoints still serving an older certificate.
	NotRolled []string `json:"not_rolled,omitempty"`
}

// HostRun is what a host runs, as probed over SSH.
type HostRun struct {
	// Revision is the commit the host runs: what nestbot recorded there
	// when it confirmed the running system, else nixos-version's
	// configurationRevision.
	Revision   string `json:"revision,omitempty"`
	System     string `json:"system,omitempty"`  // /run/current-system
	Profile    string `json:"profile,omitempty"` // the system profile's toplevel: the boot default
	Generation int    `json:"generation,omitempty"`
	Reachable  bool   `json:"reachable"`
}

// Observed reports whether plane was observed.
func (l *Live) Observed(plane Plane) bool {
	return l.Planes == nil || slices.Contains(l.Planes, plane)
}

// DecodeLive decodes a live snapshot strictly: an unknown or repeated key,
// a key in other case than nestbot writes it, or anything after the
// snapshot is an error. name is used in errors.
//
// It reads with the JSON decoder of encoding/json/v2 as it is published
// outside the standard library (github.com/go-json-experiment/json, which
// tailscale already links): it streams, where encoding/json's Decoder
// holds the whole snapshot and scans it twice, so a 10,000-host snapshot
// decodes in about a third of the time and memory.
func DecodeLive(name string, r io.Reader) (*Live, error) {
	var l Live
	if err := jsonv2.UnmarshalRead(r, &l, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("%s: not a live snapshot: %w", name, err)
	}
	if l.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%s: live snapshot format_version %q; this nestbot reads %q", name, l.FormatVersion, FormatVersion)
	}
	for _, p := range l.Planes {
		if !slices.Contains(Planes(), p) {
			return nil, fmt.Errorf("%s: unknown plane %q in planes; use %v", name, p, Planes())
		}
	}
	if l.ObservedAt.IsZero() {
		return nil, fmt.Errorf("%s: live snapshot has no observed_at; plans judge certificate expiry at that time", name)
	}
	return &l, nil
}

// Encode writes the snapshot as indented JSON.
func (l *Live) Encode(w io.Writer) error {
	l.FormatVersion = FormatVersion
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(l)
}
