package nest

import "time"

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
	DefaultHealthCommand   = "systemctl is-system-running --wait"
	// NixOSAMIOwner is the AWS account that publishes the official NixOS AMIs.
	NixOSAMIOwner = "427812963091"
)

// DefaultServingPorts are probed for served certificates: apiserver, etcd, kubelet.
func DefaultServingPorts() []int { return []int{6443, 2379, 10250} }

// DefaultHostPaths are the repository paths, relative to the flake, that
// affect host h when nix cannot tell.
func DefaultHostPaths(h string) []string {
	return []string{"flake.nix", "flake.lock", "hosts/" + h + "/**", "modules/**"}
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
	for name, h := range f.Hosts {
		if len(h.Paths) == 0 {
			h.Paths = DefaultHostPaths(name)
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
	if len(r.Health) == 0 {
		r.Health = []string{DefaultHealthCommand}
	}
	if r.ConfirmWithin.Duration == 0 {
		r.ConfirmWithin.Duration = DefaultConfirmWithin
	}
	if r.BuildOn == "" {
		r.BuildOn = DefaultBuildOn
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
