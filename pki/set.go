// Package pki is the Kubernetes certificate set of a fleet: which
// certificates follow from the hosts' roles (as kubeadm lays them out), where
// each lives in the repository, and to whom each private key is encrypted.
package pki

import (
	"net/netip"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ducksnest/nestbot/nest"
)

// Extended key usages, as spelled in specs and plans.
const (
	UsageServer = "server"
	UsageClient = "client"
)

// The three CAs and the service-account key pair.
const (
	CA             = "ca"
	EtcdCA         = "etcd-ca"
	FrontProxyCA   = "front-proxy-ca"
	ServiceAccount = "service-account"
)

// Spec is one certificate (or, for the service account, one key pair) that
// the fleet needs.
type Spec struct {
	ID           string   // "ca", "ec2-controlplane/apiserver"
	Name         string   // kubeadm's name: apiserver, etcd-server, kubelet, …
	Host         string   // the host it is for; "" for the cluster-wide CAs and keys
	Signer       string   // the CA id that signs it; "" when self-signed
	IsCA         bool     // a CA certificate
	KeyOnly      bool     // a key pair with no certificate (service-account)
	CommonName   string   //
	Organization []string //
	DNSNames     []string // sorted
	IPs          []string // sorted, canonical
	Usages       []string // extended key usages: server, client (sorted)
	Validity     time.Duration
	KeyAlgorithm string   // ecdsa-p256, rsa-2048 or rsa-4096 (the service account is always RSA)
	Recipients   []string // age recipients of the private key, sorted
	CertPath     string   // relative to pki.dir; "" for KeyOnly
	KeyPath      string   // relative to pki.dir: the .key.age file
	// SANsIncomplete is set when a host's addresses or tailnet name are not
	// all known (it has not joined the tailnet, or the tailnet or the cloud
	// was not observed). Its SANs are then judged by what is known: a
	// certificate drifts when it lacks one of them, not when it has more.
	SANsIncomplete bool
}

// HostFacts are what the live world says about a host, for its SANs.
type HostFacts struct {
	IPs        []netip.Addr // private and tailnet addresses
	DNSName    string       // MagicDNS name, e.g. laptop-ultra.ducksnest.ts.net
	OnTailnet  bool
	PrivateIPs bool // whether the cloud addresses are known (or the host has none)
}

// caDir names the CA in file names, as the K8Nix certToolkit lays them out.
func caDir(ca string) string {
	switch ca {
	case EtcdCA:
		return "etcd"
	case FrontProxyCA:
		return "front-proxy"
	}
	return "kubernetes"
}

// Set derives the full certificate set of fleet f. hostKeys maps a host to
// its pinned SSH ed25519 public key ("" or missing when not pinned yet);
// facts holds what is known of each host's addresses. The result is sorted by ID.
func Set(f *nest.Fleet, hostKeys map[string]string, facts map[string]HostFacts) []Spec {
	k := f.PKI
	if k == nil {
		return nil
	}
	admins := normalizeAll(k.Admins)
	alg := k.KeyAlgorithm
	if alg == "" {
		alg = nest.DefaultKeyAlgorithm
	}
	var out []Spec
	ca := func(id, cn string) {
		out = append(out, Spec{
			ID: id, Name: id, IsCA: true, CommonName: cn, Validity: k.CAValidity.Duration,
			KeyAlgorithm: alg, Recipients: admins,
			CertPath: path.Join("ca", caDir(id)+".crt"),
			KeyPath:  path.Join("ca", caDir(id)+".key.age"),
		})
	}
	ca(CA, "kubernetes")
	ca(EtcdCA, "etcd-ca")
	ca(FrontProxyCA, "front-proxy-ca")

	// The service-account key signs tokens on every control plane.
	saRecipients := slices.Clone(admins)
	for _, name := range hostNames(f) {
		if f.Hosts[name].HasRole(nest.RoleControlPlane) {
			saRecipients = appendKey(saRecipients, hostKeys[name])
		}
	}
	out = append(out, Spec{
		ID: ServiceAccount, Name: ServiceAccount, KeyOnly: true,
		KeyAlgorithm: serviceAccountAlgorithm(alg),
		Recipients:   sortedUnique(saRecipients),
		KeyPath:      path.Join("ca", "service-account.key.age"),
	})

	serviceIP := firstServiceIP(k.ServiceCIDR)
	for _, name := range hostNames(f) {
		h := f.Hosts[name]
		fact := facts[name]
		recipients := sortedUnique(appendKey(slices.Clone(admins), hostKeys[name]))
		ips := hostIPs(h, fact)
		incomplete := !fact.OnTailnet || !fact.PrivateIPs
		leaf := func(name, signer, cn string, org []string, usages []string, dns, ipList []string) {
			s := Spec{
				ID: h.Name + "/" + name, Name: name, Host: h.Name, Signer: signer,
				CommonName: cn, Organization: org, Usages: sortedUnique(usages),
				DNSNames: sortedUnique(dns), IPs: sortedUnique(ipList),
				Validity: k.LeafValidity.Duration, KeyAlgorithm: alg, Recipients: recipients,
				SANsIncomplete: incomplete && len(dns)+len(ipList) > 0,
			}
			stem := fileStem(signer, name)
			s.CertPath = path.Join("derived", h.Name, stem+".crt")
			s.KeyPath = path.Join("derived", h.Name, stem+".key.age")
			out = append(out, s)
		}
		if h.HasRole(nest.RoleControlPlane) {
			dns := []string{h.Name, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + k.ClusterDomain}
			if fact.DNSName != "" {
				dns = append(dns, fact.DNSName)
			}
			apiIPs := slices.Clone(ips)
			if serviceIP != "" {
				apiIPs = append(apiIPs, serviceIP)
			}
			for _, san := range k.ExtraSANs {
				if a, err := netip.ParseAddr(san); err == nil {
					apiIPs = append(apiIPs, a.String())
				} else {
					dns = append(dns, san)
				}
			}
			leaf("apiserver", CA, "kube-apiserver", nil, []string{UsageServer}, dns, apiIPs)
			leaf("apiserver-kubelet-client", CA, "kube-apiserver-kubelet-client", []string{"kubeadm:cluster-admins"}, []string{UsageClient}, nil, nil)
			leaf("front-proxy-client", FrontProxyCA, "front-proxy-client", nil, []string{UsageClient}, nil, nil)
			etcdIPs := append(slices.Clone(ips), "127.0.0.1", "::1")
			leaf("etcd-server", EtcdCA, h.Name, nil, []string{UsageServer, UsageClient}, []string{h.Name, "localhost"}, etcdIPs)
			leaf("etcd-peer", EtcdCA, h.Name, nil, []string{UsageServer, UsageClient}, []string{h.Name, "localhost"}, etcdIPs)
			leaf("etcd-healthcheck-client", EtcdCA, "kube-etcd-healthcheck-client", nil, []string{UsageClient}, nil, nil)
			leaf("apiserver-etcd-client", EtcdCA, "kube-apiserver-etcd-client", nil, []string{UsageClient}, nil, nil)
			leaf("admin", CA, "kubernetes-admin", []string{"kubeadm:cluster-admins"}, []string{UsageClient}, nil, nil)
			leaf("controller-manager", CA, "system:kube-controller-manager", nil, []string{UsageClient}, nil, nil)
			leaf("scheduler", CA, "system:kube-scheduler", nil, []string{UsageClient}, nil, nil)
		}
		// Every host is a node: the control plane runs a kubelet too, as kubeadm sets it up.
		leaf("kubelet", CA, "system:node:"+h.Name, []string{"system:nodes"}, []string{UsageClient}, nil, nil)
		leaf("kubelet-serving", CA, "system:node:"+h.Name, []string{"system:nodes"}, []string{UsageServer}, []string{h.Name}, ips)
		leaf("kube-proxy", CA, "system:kube-proxy", nil, []string{UsageClient}, nil, nil)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// fileStem is a leaf's file name without extension, as the K8Nix certToolkit
// names it: the CA's directory name, a dash, and the certificate's name
// (etcd-server, not etcd-etcd-server).
func fileStem(signer, name string) string {
	return caDir(signer) + "-" + strings.TrimPrefix(name, caDir(signer)+"-")
}

// leafSigners maps every leaf name that Set derives to the CA that signs it.
// IDForPath reads it backwards; a test keeps the two in step.
func leafSigners() map[string]string {
	return map[string]string{
		"apiserver": CA, "apiserver-kubelet-client": CA, "admin": CA,
		"controller-manager": CA, "scheduler": CA,
		"kubelet": CA, "kubelet-serving": CA, "kube-proxy": CA,
		"front-proxy-client": FrontProxyCA,
		"etcd-server":        EtcdCA, "etcd-peer": EtcdCA,
		"etcd-healthcheck-client": EtcdCA, "apiserver-etcd-client": EtcdCA,
	}
}

// serviceAccountAlgorithm is the service-account key's type: RSA, as every
// Kubernetes release accepts, and 4096 bits when the fleet asks for that size.
func serviceAccountAlgorithm(alg string) string {
	if alg == AlgRSA4096 {
		return AlgRSA4096
	}
	return AlgRSA2048
}

func hostIPs(h *nest.Host, fact HostFacts) []string {
	var ips []string
	for _, a := range h.Addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			ips = append(ips, ip.String())
		}
	}
	for _, ip := range fact.IPs {
		ips = append(ips, ip.String())
	}
	return ips
}

func firstServiceIP(cidr string) string {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return ""
	}
	return p.Masked().Addr().Next().String()
}

func hostNames(f *nest.Fleet) []string {
	names := make([]string, 0, len(f.Hosts))
	for n := range f.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func appendKey(list []string, key string) []string {
	if key = NormalizeRecipient(key); key != "" {
		list = append(list, key)
	}
	return list
}

// NormalizeRecipient strips an SSH public key's comment, so that the same key
// compares equal however it was written. Other recipients are trimmed.
func NormalizeRecipient(r string) string {
	r = strings.TrimSpace(r)
	if strings.HasPrefix(r, "ssh-") {
		if f := strings.Fields(r); len(f) >= 2 {
			return f[0] + " " + f[1]
		}
	}
	return r
}

func normalizeAll(rs []string) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = appendKey(out, r)
	}
	return sortedUnique(out)
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	sort.Strings(s)
	return slices.Compact(s)
}

// ByID indexes specs by ID.
func ByID(specs []Spec) map[string]*Spec {
	m := make(map[string]*Spec, len(specs))
	for i := range specs {
		m[specs[i].ID] = &specs[i]
	}
	return m
}
