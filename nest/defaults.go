package nest

import (
	"path"
	"time"
)

// Default values, in the one place they are applied.
const (
	DefaultFlake           = "."
	DefaultJoinTimeout     = 10 * time.Minute
	DefaultInstanceVolume  = 20
	DefaultVolumeType      = "gp3"
	DefaultKeyAlgorithm    = "ecdsa-p256"              // of the kubeadm layout; K8Nix's is rsa-2048
	DefaultCAValidity      = 10 * 365 * 24 * time.Hour // of the kubeadm layout; K8Nix's is 5 years
	DefaultK8NixCAValidity = 5 * 365 * 24 * time.Hour  // what cfssl gencert -initca gives
	DefaultLeafValidity    = 365 * 24 * time.Hour
	DefaultRenewBefore     = 30 * 24 * time.Hour
	DefaultServiceCIDR     = "10.96.0.0/12"
	DefaultClusterDomain   = "cluster.local"
	DefaultMaxParallel     = 1
	DefaultConfirmWithin   = 120 * time.Second
	DefaultBuildOn         = "target"
	DefaultApply           = "merge"
	DefaultBranch          = "main"
	DefaultUserDataChanges = "ignore"
	DefaultBuildTimeout    = time.Hour
	DefaultSSHVia          = SSHViaTailscale
	// DefaultDeployUser is the user nestbot logs in as over OpenSSH.
	DefaultDeployUser = "nestbot"
	// NixOSAMIOwner is the AWS account that publishes the official NixOS AMIs.
	NixOSAMIOwner = "427812963091"
)

// DefaultServingPorts are probed for served certificates: apiserver, etcd, kubelet.
func DefaultServingPorts() []int { return []int{6443, 2379, 10250} }

// Ways in to a host (rollout.ssh.via).
const (
	SSHViaTailscale = "tailscale"
	SSHViaOpenSSH   = "openssh"
)

// DefaultHostPaths are the repository paths (relative to nest.yaml's
// directory) that make a host due when nix cannot evaluate its toplevel:
// everything under the flake's directory, which holds whatever a host's
// modules import.
func DefaultHostPaths(flake string) []string {
	if flake == "." || flake == "" {
		return []string{"**"}
	}
	return []string{flake + "/**"}
}

// FlakeAttr is the host's attribute in nixosConfigurations.
func (h *Host) FlakeAttr() string {
	if h.FlakeAttribute != "" {
		return h.FlakeAttribute
	}
	return h.Name
}

// TailnetNode is the host's node name on the tailnet: tailnet_name, or
// else the name tailscaled takes from the system, networking.hostName.
func (h *Host) TailnetNode() string {
	if h.TailnetName != "" {
		return h.TailnetName
	}
	return h.NetworkingHostName()
}

// HostKeyPath is the repository path of the host's pinned SSH host key,
// or "" when the fleet keeps none (no host_key and no pki.dir).
func (f *Fleet) HostKeyPath(h *Host) string {
	if h.HostKey != "" {
		return h.HostKey
	}
	if f.PKI != nil && f.PKI.Dir != "" {
		return path.Join(f.PKI.Dir, "hosts", h.Name+".pub")
	}
	return ""
}

// Login is how nestbot logs in to host h: rollout.ssh with the host's
// overrides, defaults applied.
func (f *Fleet) Login(h *Host) SSH {
	l := f.Rollout.SSH
	if h.SSH != nil {
		if h.SSH.Via != "" {
			l.Via = h.SSH.Via
			l.User = "" // the other way in's default user, unless the host names one
		}
		if h.SSH.User != "" {
			l.User = h.SSH.User
		}
	}
	if l.Via == "" {
		l.Via = DefaultSSHVia
	}
	if l.User == "" {
		l.User = "root"
		if l.Via == SSHViaOpenSSH {
			l.User = DefaultDeployUser
		}
	}
	return l
}

func applyDefaults(f *Fleet) {
	if f.Flake == "" {
		f.Flake = DefaultFlake
	}
	if a := f.AWS; a != nil {
		if a.UserDataChanges == "" {
			a.UserDataChanges = DefaultUserDataChanges
		}
		if len(a.SecurityGroup.Egress) == 0 {
			a.SecurityGroup.Egress = []Rule{{Protocol: "all", CIDRs: []string{"0.0.0.0/0"}}}
		}
	}
	if f.Tailnet.JoinTimeout.Duration == 0 {
		f.Tailnet.JoinTimeout.Duration = DefaultJoinTimeout
	}
	for _, h := range f.Hosts {
		if len(h.Paths) == 0 {
			h.Paths = DefaultHostPaths(f.Flake)
		}
		if h.AWS == nil {
			continue
		}
		v := &h.AWS.RootVolume
		if v.SizeGB == 0 {
			v.SizeGB = DefaultInstanceVolume
		}
		if v.Type == "" {
			v.Type = DefaultVolumeType
		}
		if v.Encrypted == nil {
			t := true
			v.Encrypted = &t
		}
		if h.AWS.AMI.ID == "" && len(h.AWS.AMI.Owners) == 0 {
			h.AWS.AMI.Owners = []string{"self", NixOSAMIOwner}
		}
	}
	if p := f.PKI; p != nil {
		// key_algorithm and ca_validity default by layout, which may be
		// read from the tree: pki.Set applies them.
		if p.LeafValidity.Duration == 0 {
			p.LeafValidity.Duration = DefaultLeafValidity
		}
		if p.RenewBefore.Duration == 0 {
			p.RenewBefore.Duration = DefaultRenewBefore
		}
		if p.ServiceCIDR == "" {
			p.ServiceCIDR = DefaultServiceCIDR
		}
		if p.ClusterDomain == "" {
			p.ClusterDomain = DefaultClusterDomain
		}
		if len(p.ServingPorts) == 0 {
			p.ServingPorts = DefaultServingPorts()
		}
	}
	r := &f.Rollout
	if len(r.Order) == 0 {
		r.Order = KnownRoles()
	}
	if r.MaxParallel == 0 {
		r.MaxParallel = DefaultMaxParallel
	}
	if r.ConfirmWithin.Duration == 0 {
		r.ConfirmWithin.Duration = DefaultConfirmWithin
	}
	if r.BuildOn == "" {
		r.BuildOn = DefaultBuildOn
	}
	if r.BuildTimeout.Duration == 0 {
		r.BuildTimeout.Duration = DefaultBuildTimeout
	}
	g := &f.GitHub
	if g.Apply == "" {
		g.Apply = DefaultApply
	}
	if len(g.Require) == 0 {
		g.Require = []string{"approved", "mergeable"}
	}
	if g.DefaultBranch == "" {
		g.DefaultBranch = DefaultBranch
	}
}
