// Package nest is the desired-state model of a nestbot fleet: the types of
// nest.yaml, a strict loader that reports every mistake at file:line:column,
// the defaults, and the JSON Schema generated from the types. ExampleParse
// loads one from bytes; ExampleErrors shows its mistakes at file:line:col.
package nest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fleet is the whole desired state read from one nest.yaml.
//
// Field tags: `yaml` names the key; `doc` is the one-line description used by
// the JSON Schema and the README; `enum` lists allowed values; `required`
// marks keys that must be present.
type Fleet struct {
	Version int              `yaml:"version" doc:"Schema version of this file. Always 1." required:"true"`
	Name    string           `yaml:"name" doc:"Fleet name: a DNS label. Tags every resource (nest:name) and names the GitHub environment." required:"true"`
	Flake   string           `yaml:"flake" doc:"Path of the flake, relative to the repository root; hosts are nixosConfigurations.<host>. Default \".\"."`
	AWS     *AWS             `yaml:"aws" doc:"The cloud plane. Omit for a fleet with no AWS resources."`
	Tailnet Tailnet          `yaml:"tailnet" doc:"The tailnet every host joins and nestbot reaches hosts through."`
	Hosts   map[string]*Host `yaml:"hosts" doc:"Hosts by name: a DNS label. By default also the host's flake attribute, networking.hostName and tailnet node name (see flake_attribute, host_name, tailnet_name)." required:"true"`
	PKI     *PKI             `yaml:"pki" doc:"The Kubernetes certificate set. Omit to manage no certificates."`
	Rollout Rollout          `yaml:"rollout" doc:"How commits roll across the hosts (see Hosts and rollouts)."`
	GitHub  GitHub           `yaml:"github" doc:"How the GitHub bot applies."`
}

// AWS is the cloud plane: one VPC in one region.
type AWS struct {
	Region          string             `yaml:"region" doc:"AWS region, e.g. ap-northeast-2." required:"true"`
	VPC             VPC                `yaml:"vpc" doc:"The fleet's VPC." required:"true"`
	Subnets         map[string]*Subnet `yaml:"subnets" doc:"Subnets by name." required:"true"`
	InternetGateway Adoptable          `yaml:"internet_gateway" doc:"The internet gateway, created when any subnet is public."`
	RouteTable      Adoptable          `yaml:"route_table" doc:"The public route table (0.0.0.0/0 to the internet gateway), associated with every public subnet."`
	SecurityGroup   SecurityGroup      `yaml:"security_group" doc:"The security group every instance is in. Egress-only unless ingress rules are given."`
	UserDataChanges string             `yaml:"user_data_changes" doc:"What a change of an instance's user-data does: ignore (default) or replace." enum:"ignore,replace"`
}

// Adopt names an existing resource that nestbot should take over by tagging
// it instead of creating a new one: by id, by one tag (Key=Value), or (a
// security group) by its group name. Written as the word none, it says to
// create the resource even beside an untagged one that looks the same.
type Adopt struct {
	ID        string `yaml:"id" doc:"The resource id: vpc-…, subnet-…, igw-…, rtb-…, sg-… or i-…"`
	Tag       string `yaml:"tag" doc:"A tag that finds exactly one resource, as Key=Value, e.g. Name=ducksnest-vpc."`
	GroupName string `yaml:"group_name" doc:"Security groups only: the group name (GroupName), e.g. ducksnest, as Terraform's aws_security_group name."`
	// None is adopt: none — create the resource, although an untagged one
	// that looks the same exists.
	None bool `yaml:"-"`
}

// AdoptNone is how nest.yaml says adopt: none.
const AdoptNone = "none"

// Takes reports whether the block names a resource to take over (not none).
func (a *Adopt) Takes() bool { return a != nil && !a.None }

// parseScalarOrMapping reads the scalar form, adopt: none.
func (a *Adopt) parseScalarOrMapping(s string) error {
	if s != AdoptNone {
		return fmt.Errorf("%q is not an adoption: write adopt: {id: …}, adopt: {tag: Key=Value} or adopt: none", s)
	}
	a.None = true
	return nil
}

// Adoptable is a resource with nothing to configure but its adoption.
type Adoptable struct {
	Adopt *Adopt `yaml:"adopt" doc:"Take over an existing resource (built by Terraform or by hand) instead of creating one."`
}

// VPC is the fleet's VPC.
type VPC struct {
	CIDR  string `yaml:"cidr" doc:"IPv4 CIDR block, e.g. 10.20.0.0/16." required:"true"`
	Adopt *Adopt `yaml:"adopt" doc:"Take over an existing VPC instead of creating one."`
}

// Subnet is one subnet of the VPC.
type Subnet struct {
	CIDR   string `yaml:"cidr" doc:"IPv4 CIDR block inside the VPC's." required:"true"`
	Zone   string `yaml:"zone" doc:"Availability zone, e.g. ap-northeast-2a." required:"true"`
	Public bool   `yaml:"public" doc:"Routes to the internet gateway and maps public IPs on launch."`
	Adopt  *Adopt `yaml:"adopt" doc:"Take over an existing subnet instead of creating one."`
}

// SecurityGroup holds the instances' firewall rules.
type SecurityGroup struct {
	Ingress []Rule `yaml:"ingress" doc:"Inbound rules. Empty (the default): nothing reaches the hosts except over the tailnet."`
	Egress  []Rule `yaml:"egress" doc:"Outbound rules. Default: all traffic to 0.0.0.0/0."`
	Adopt   *Adopt `yaml:"adopt" doc:"Take over an existing security group instead of creating one."`
}

// Rule is one security group rule.
type Rule struct {
	Protocol string    `yaml:"protocol" doc:"tcp, udp, icmp or all." enum:"tcp,udp,icmp,all" required:"true"`
	Ports    PortRange `yaml:"ports" doc:"A port or a range, e.g. 443 or 30000-32767. Not allowed with protocol all."`
	CIDRs    []string  `yaml:"cidrs" doc:"Source (ingress) or destination (egress) IPv4 CIDR blocks." required:"true"`
}

// Tailnet describes the tailnet and where nestbot's credentials come from.
// Credentials are references (an environment variable or a file), never values.
type Tailnet struct {
	Domain       string     `yaml:"domain" doc:"The tailnet's MagicDNS domain, e.g. ducksnest.ts.net."`
	Tags         []string   `yaml:"tags" doc:"ACL tags every fleet node carries, each tag:<name>. Tagged nodes not in hosts are reported as strays."`
	AuthKey      *SecretRef `yaml:"auth_key" doc:"Where the auth key for new hosts and for nestbot's own node comes from."`
	OAuth        *OAuth     `yaml:"oauth" doc:"A Tailscale OAuth client, to mint one auth key per new host through the Tailscale API."`
	ControlURL   string     `yaml:"control_url" doc:"Coordination server URL. Default: Tailscale's. Set for Headscale or the lab."`
	JoinTimeout  Duration   `yaml:"join_timeout" doc:"How long to wait for a new instance to join the tailnet. Default 10m."`
	RemoveStrays bool       `yaml:"remove_strays" doc:"Remove tagged nodes that are not in hosts (otherwise only reported)."`
}

// OAuth names a Tailscale OAuth client.
type OAuth struct {
	ClientID     string    `yaml:"client_id" doc:"The OAuth client id (not a secret)." required:"true"`
	ClientSecret SecretRef `yaml:"client_secret" doc:"Where the OAuth client secret comes from." required:"true"`
}

// SecretRef says where a secret is read from at run time: an environment
// variable or a file. The value itself never appears in nest.yaml.
type SecretRef struct {
	Env  string `yaml:"env" doc:"Name of an environment variable holding the secret."`
	File string `yaml:"file" doc:"Path of a file holding the secret, inside the directory nestbot is given for secrets (--secrets-dir)."`
}

// String describes the reference, never the value.
func (r SecretRef) String() string {
	switch {
	case r.Env != "":
		return "env:" + r.Env
	case r.File != "":
		return "file:" + r.File
	}
	return "(none)"
}

// Host is one NixOS machine.
type Host struct {
	Name      string   `yaml:"-"`
	Roles     []string `yaml:"roles" doc:"Kubernetes roles: control-plane, worker. Decide the certificates and the rollout order." required:"true"`
	AWS       *HostAWS `yaml:"aws" doc:"Makes this an EC2 instance. Omit for an on-prem host."`
	Paths     []string `yaml:"paths" doc:"Repository paths (globs relative to nest.yaml's directory, ** for any depth) whose change makes this host due when nix cannot evaluate its toplevel where nestbot runs. Default: everything under the flake's directory."`
	Addresses []string `yaml:"addresses" doc:"Extra IP addresses of the host (LAN), added to its serving certificates."`
	// HostName is the host's networking.hostName.
	HostName string `yaml:"host_name" doc:"The host's networking.hostName, when it differs from its name here: it names the host's certificate directory (derived/<host_name>/), is the host name in its certificates, and is the name tailscaled gives the host's node. Default: the host's name."`
	// FlakeAttribute is the host's nixosConfigurations attribute.
	FlakeAttribute string `yaml:"flake_attribute" doc:"The host's attribute in the flake's nixosConfigurations. Default: the host's name."`
	// TailnetName is the host's node name on the tailnet.
	TailnetName string `yaml:"tailnet_name" doc:"The host's node name on the tailnet (its MagicDNS name's first label), when it is not the host_name (tailscale up --hostname). Default: host_name."`
	// HostKey is the repository path of the host's pinned SSH host key.
	HostKey string `yaml:"host_key" doc:"Repository path of the host's pinned SSH host key (an ssh-ed25519 public key, authorized_keys format). Default: <pki.dir>/hosts/<host>.pub, which is also the host's age recipient."`
	// SSH overrides rollout.ssh for this host.
	SSH *HostSSH `yaml:"ssh" doc:"How nestbot logs in to this host, overriding rollout.ssh."`
}

// NetworkingHostName is the host's networking.hostName: host_name, or else
// its name in nest.yaml. Its certificates live in derived/<it>/.
func (h *Host) NetworkingHostName() string {
	if h.HostName != "" {
		return h.HostName
	}
	return h.Name
}

// HostSSH is a host's login, overriding the fleet's.
type HostSSH struct {
	Via  string `yaml:"via" doc:"tailscale (Tailscale SSH, the tailnet policy's ssh rule decides) or openssh (the host's sshd, with rollout.ssh.key)." enum:"tailscale,openssh"`
	User string `yaml:"user" doc:"The user nestbot logs in as. Default: root for tailscale, nestbot for openssh; a user other than root runs nestbot's root commands through sudo (see the README's sudo rules)."`
}

// SSH is how nestbot logs in to hosts.
type SSH struct {
	Via  string     `yaml:"via" doc:"tailscale (default: Tailscale SSH, the tailnet policy's ssh rule decides) or openssh (the host's sshd, as the deploy user with key)." enum:"tailscale,openssh"`
	User string     `yaml:"user" doc:"The user nestbot logs in as. Default: root for tailscale, nestbot for openssh; a user other than root runs nestbot's root commands through sudo (see the README's sudo rules)."`
	Key  *SecretRef `yaml:"key" doc:"Where nestbot's own SSH private key (OpenSSH format) comes from, for openssh logins. Its public half goes in the deploy user's authorized_keys."`
}

// HostAWS is the EC2 side of a host.
type HostAWS struct {
	InstanceType    string  `yaml:"instance_type" doc:"EC2 instance type, e.g. t3.medium. A change is stop, modify, start." required:"true"`
	AMI             AMI     `yaml:"ami" doc:"The machine image, by name (most recent available) or by id. A change replaces the instance." required:"true"`
	Subnet          string  `yaml:"subnet" doc:"Name of a subnet under aws.subnets. A change replaces the instance." required:"true"`
	RootVolume      Volume  `yaml:"root_volume" doc:"The root EBS volume."`
	InstanceProfile string  `yaml:"instance_profile" doc:"IAM instance profile name."`
	KeyName         string  `yaml:"key_name" doc:"EC2 key pair name. A change replaces the instance."`
	Adopt           *Adopt  `yaml:"adopt" doc:"Take over an existing instance instead of creating one."`
	UserData        *string `yaml:"user_data" doc:"Extra NixOS options (lines like services.foo.enable = true;) added to the configuration nestbot's user-data boots with."`
}

// AMI selects a machine image.
type AMI struct {
	ID     string   `yaml:"id" doc:"An exact image id, e.g. ami-0abc…"`
	Name   string   `yaml:"name" doc:"An image name; * matches any run of characters. The most recent available image wins."`
	Owners []string `yaml:"owners" doc:"Account ids (or amazon, self) allowed to own the image. Default: self and the NixOS account 427812963091."`
}

// Volume is an EBS volume.
type Volume struct {
	SizeGB    int    `yaml:"size_gb" doc:"Size in GiB. Default 20. Growing is in place; shrinking replaces the instance."`
	Type      string `yaml:"type" doc:"gp3 (default), gp2, io1, io2, st1, sc1 or standard." enum:"gp3,gp2,io1,io2,st1,sc1,standard"`
	Encrypted *bool  `yaml:"encrypted" doc:"Encrypt at rest. Default true. A change replaces the instance."`
}

// PKI describes the Kubernetes certificate set.
type PKI struct {
	Dir           string   `yaml:"dir" doc:"Directory in the repository holding ca/, derived/<host>/, hosts/ and secrets.nix." required:"true"`
	Layout        string   `yaml:"layout" doc:"Which certificates the roles call for, and their names: kubeadm (three CAs, kubeadm's leaves) or k8nix (the K8Nix certToolkit's: one CA ca/k8s.crt, leaves derived/<host>/k8s-<name>.crt). Default: k8nix when the tree holds ca/k8s.crt, else kubeadm." enum:"kubeadm,k8nix"`
	Organization  string   `yaml:"organization" doc:"The O= of the k8nix layout's CA and leaves (\"<organization> Kubernetes Cluster CA\"). Default: the O= of the tree's ca/k8s.crt, else the fleet's name."`
	KeyAlgorithm  string   `yaml:"key_algorithm" doc:"Private key type of new keys: ecdsa-p256, rsa-2048 or rsa-4096. Default ecdsa-p256 (kubeadm layout), rsa-2048 (k8nix). A certificate found in the tree keeps its own." enum:"ecdsa-p256,rsa-2048,rsa-4096"`
	CAValidity    Duration `yaml:"ca_validity" doc:"Lifetime of a new CA certificate. Default 87600h (10 years) for kubeadm, 43800h (5 years, as cfssl) for k8nix."`
	LeafValidity  Duration `yaml:"leaf_validity" doc:"Lifetime of a new leaf certificate. Default 8760h (1 year)."`
	RenewBefore   Duration `yaml:"renew_before" doc:"Renew a certificate this long before it expires (also renewed past 2/3 of its lifetime). Default 720h."`
	ExtraSANs     []string `yaml:"extra_sans" doc:"Extra DNS names or IPs for the apiserver certificate."`
	ServiceCIDR   string   `yaml:"service_cidr" doc:"The cluster's service CIDR; its first address is an apiserver SAN. Default 10.96.0.0/12."`
	ClusterDomain string   `yaml:"cluster_domain" doc:"The cluster DNS domain. Default cluster.local."`
	Admins        []string `yaml:"admins" doc:"Age recipients (age1… or ssh-ed25519 …) that can decrypt every private key." required:"true"`
	ServingPorts  []int    `yaml:"serving_ports" doc:"Ports probed over the tailnet to read the served certificates. Default 6443, 2379, 10250."`
	Remove        []string `yaml:"remove" doc:"Certificates to delete though nestbot did not issue them (it never deletes those otherwise): paths relative to dir, a file (derived/old-host/k8s-kubelet.crt, its key goes with it) or a directory ending in / (derived/old-host/)."`
}

// Rollout describes how hosts are switched.
type Rollout struct {
	Order         []string `yaml:"order" doc:"Roles in the order they roll; a host rolls with its earliest role. Default [control-plane, worker]."`
	MaxParallel   int      `yaml:"max_parallel" doc:"At most this many hosts switch at once. Default 1."`
	Health        []string `yaml:"health" doc:"Commands run on the host (as the login user) after the trial activation, besides the built-in check that no unit failed that had not failed before; all must exit 0. Default none."`
	ConfirmWithin Duration `yaml:"confirm_within" doc:"After the build, the host activates the new system and rolls itself back to the one it ran unless nestbot confirms within this time. Default 120s."`
	BuildOn       string   `yaml:"build_on" doc:"Where the system is built: target (default: the host builds it from the shipped commit) or local (where nestbot runs, then nix copy to the host over the same SSH login)." enum:"target,local"`
	BuildTimeout  Duration `yaml:"build_timeout" doc:"How long one host's build may take before it is stopped and the host fails (nothing changed on it). Default 1h."`
	SSH           SSH      `yaml:"ssh" doc:"How nestbot logs in to hosts (per host: hosts.<name>.ssh)."`
}

// GitHub describes how the GitHub bot applies.
type GitHub struct {
	Apply         string   `yaml:"apply" doc:"merge (default): apply after merge to the default branch; comment: also allow /nest apply on an approved PR; off: never apply." enum:"merge,comment,off"`
	Require       []string `yaml:"require" doc:"What /nest apply requires of the PR: approved, mergeable. Default both." enum:"approved,mergeable"`
	DefaultBranch string   `yaml:"default_branch" doc:"The repository's default branch, whose pushes apply: only that branch ever applies, and when this names another nothing does. Default main."`
	PlanDrafts    bool     `yaml:"plan_drafts" doc:"Also plan draft pull requests."`
}

// Duration is a time.Duration written as Go writes durations (90s, 720h).
type Duration struct{ time.Duration }

// String is the Go spelling without zero units: 720h, 2m, 90s.
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (d *Duration) parseScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration", s)
	}
	if v <= 0 {
		return fmt.Errorf("%q must be positive", s)
	}
	d.Duration = v
	return nil
}

// KnownRoles are the roles nestbot knows, in their default rollout order.
func KnownRoles() []string { return []string{RoleControlPlane, RoleWorker} }

// Role names.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Certificate layouts (pki.layout).
const (
	LayoutKubeadm = "kubeadm"
	LayoutK8Nix   = "k8nix"
)

// PortRange is one port (443) or an inclusive range (30000-32767).
type PortRange struct{ From, To int }

// String is the spelling used in nest.yaml.
func (p PortRange) String() string {
	if p.From == p.To {
		return strconv.Itoa(p.From)
	}
	return fmt.Sprintf("%d-%d", p.From, p.To)
}

// IsZero reports whether no port was given.
func (p PortRange) IsZero() bool { return p.From == 0 && p.To == 0 }

func (p *PortRange) parseScalar(s string) error {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	from, err1 := strconv.Atoi(strings.TrimSpace(lo))
	to, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%q is not a port or a port range (like 443 or 30000-32767)", s)
	}
	if from < 0 || to > 65535 || from > to {
		return fmt.Errorf("%q is not a valid port range: ports are 0-65535, low to high", s)
	}
	p.From, p.To = from, to
	return nil
}

// HasRole reports whether h has role r.
func (h *Host) HasRole(r string) bool {
	for _, x := range h.Roles {
		if x == r {
			return true
		}
	}
	return false
}
