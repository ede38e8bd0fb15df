// Package pki is the Kubernetes certificate set of a fleet: which
// certificates follow from the hosts' roles (as kubeadm or the K8Nix
// certToolkit lays them out), where each lives in the repository, and to
// whom each private key is encrypted. A tree that exists is adopted as it
// is (Desire): its certificates are renewed in place, never replaced.
package pki

import (
	"cmp"
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

// The three CAs and the service-account key pair of the kubeadm layout,
// and the one CA of the k8nix layout (ca/k8s.crt).
const (
	CA             = "ca"
	EtcdCA         = "etcd-ca"
	FrontProxyCA   = "front-proxy-ca"
	ServiceAccount = "service-account"
	K8sCA          = "k8s"
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
	// FactSANs is set when the SANs hold the host's live addresses (its
	// instance's, its tailnet's): a new instance for the host changes them.
	FactSANs bool
	// RequiredSANs are the SANs nest.yaml itself names for it
	// (hosts.<host>.addresses, pki.extra_sans): an adopted certificate that
	// lacks one is reissued with it, keeping its own.
	RequiredSANs []string
	// Adopted is set for a certificate the tree holds that nestbot did not
	// issue (it lacks IssuedByNestbot): it is desired as it is — its CA,
	// subject, SANs, usages, key type, lifetime and file name — and its
	// renewal keeps all of that, as kubeadm certs renew does.
	Adopted bool
	// RawSubject is an adopted certificate's subject, DER, byte for byte;
	// nil means CommonName and Organization.
	RawSubject []byte
}

// HostFacts are what the live world says about a host, for its SANs.
type HostFacts struct {
	IPs        []netip.Addr // private and tailnet addresses
	DNSName    string       // MagicDNS name, e.g. laptop-ultra.ducksnest.ts.net
	OnTailnet  bool
	PrivateIPs bool // whether the cloud addresses are known (or the host has none)
}

// CADir names the CA in file names, as the K8Nix certToolkit lays them out
// (ca/<name>.crt, derived/<host>/<name>-<leaf>.crt): the kubeadm layout's
// CAs are kubernetes, etcd and front-proxy; any other CA is its own name.
func CADir(ca string) string {
	switch ca {
	case CA:
		return "kubernetes"
	case EtcdCA:
		return "etcd"
	case FrontProxyCA:
		return "front-proxy"
	}
	return ca
}

// Layout is the layout f's set follows: pki.layout, kubeadm when unset.
// Desire reads an unset one from the tree.
func Layout(f *nest.Fleet) string {
	if f.PKI == nil || f.PKI.Layout == "" {
		return nest.LayoutKubeadm
	}
	return f.PKI.Layout
}

// keyAlgorithm and caValidity are pki.key_algorithm and pki.ca_validity,
// or else the layout's defaults.
func keyAlgorithm(k *nest.PKI, layout string) string {
	switch {
	case k.KeyAlgorithm != "":
		return k.KeyAlgorithm
	case layout == nest.LayoutK8Nix:
		return AlgRSA2048
	}
	return nest.DefaultKeyAlgorithm
}

func caValidity(k *nest.PKI, layout string) time.Duration {
	switch {
	case k.CAValidity.Duration != 0:
		return k.CAValidity.Duration
	case layout == nest.LayoutK8Nix:
		return nest.DefaultK8NixCAValidity
	}
	return nest.DefaultCAValidity
}

// hostDir is the directory of host h's certificates: derived/<its networking.hostName>.
func hostDir(h *nest.Host) string { return path.Join(DerivedDirName, h.NetworkingHostName()) }

// Set derives the full certificate set of fleet f, as its layout (Layout)
// lays it out. hostKeys maps a host to its pinned SSH ed25519 public key
// ("" or missing when not pinned yet); facts holds what is known of each
// host's addresses. The result is sorted by ID. It knows nothing of the
// tree: Desire adopts what the tree holds.
func Set(f *nest.Fleet, hostKeys map[string]string, facts map[string]HostFacts) []Spec {
	if f.PKI == nil {
		return nil
	}
	if Layout(f) == nest.LayoutK8Nix {
		return k8nixSet(f, hostKeys)
	}
	return kubeadmSet(f, hostKeys, facts)
}

func kubeadmSet(f *nest.Fleet, hostKeys map[string]string, facts map[string]HostFacts) []Spec {
	k := f.PKI
	admins := NormalizeRecipients(k.Admins)
	alg := keyAlgorithm(k, nest.LayoutKubeadm)
	n := 4 // the CAs and the service-account key, then 3 a node and 10 more a control plane
	for _, h := range f.Hosts {
		n += 3
		if h.HasRole(nest.RoleControlPlane) {
			n += 10
		}
	}
	out := make([]Spec, 0, n)
	ca := func(id, cn string) {
		out = append(out, Spec{
			ID: id, Name: id, IsCA: true, CommonName: cn, Validity: caValidity(k, nest.LayoutKubeadm),
			KeyAlgorithm: alg, Recipients: admins,
			CertPath: path.Join("ca", CADir(id)+".crt"),
			KeyPath:  path.Join("ca", CADir(id)+".key.age"),
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
		Recipients:   SortedUnique(saRecipients),
		KeyPath:      path.Join("ca", "service-account.key.age"),
	})

	serviceIP := firstServiceIP(k.ServiceCIDR)
	for _, name := range hostNames(f) {
		h := f.Hosts[name]
		fact := facts[name]
		recipients := SortedUnique(appendKey(slices.Clone(admins), hostKeys[name]))
		ips := hostIPs(h, fact)
		incomplete := !fact.OnTailnet || !fact.PrivateIPs
		dir := hostDir(h)
		// leaf adds a leaf; required are the SANs nest.yaml names for it, and
		// withFacts says whether its SANs hold the host's live addresses.
		leaf := func(name, signer, cn string, org []string, usages []string, dns, ipList, required []string, withFacts bool) {
			s := Spec{
				ID: path.Base(dir) + "/" + name, Name: name, Host: h.Name, Signer: signer,
				CommonName: cn, Organization: org, Usages: SortedUnique(usages),
				DNSNames: SortedUnique(dns), IPs: SortedUnique(ipList),
				Validity: k.LeafValidity.Duration, KeyAlgorithm: alg, Recipients: recipients,
				SANsIncomplete: incomplete && len(dns)+len(ipList) > 0,
				FactSANs:       withFacts, RequiredSANs: SortedUnique(required),
			}
			stem := FileStem(signer, name)
			s.CertPath = path.Join(dir, stem+".crt")
			s.KeyPath = path.Join(dir, stem+".key.age")
			out = append(out, s)
		}
		addresses := canonicalIPs(h.Addresses)
		if h.HasRole(nest.RoleControlPlane) {
			hn := h.NetworkingHostName()
			dns := []string{hn, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + k.ClusterDomain}
			if fact.DNSName != "" {
				dns = append(dns, fact.DNSName)
			}
			apiIPs := slices.Clone(ips)
			if serviceIP != "" {
				apiIPs = append(apiIPs, serviceIP)
			}
			extra := extraSANs(k)
			dns = append(dns, dnsOnly(extra)...)
			apiIPs = append(apiIPs, ipsOnly(extra)...)
			leaf("apiserver", CA, "kube-apiserver", nil, []string{UsageServer}, dns, apiIPs, append(slices.Clone(addresses), extra...), true)
			leaf("apiserver-kubelet-client", CA, "kube-apiserver-kubelet-client", []string{"kubeadm:cluster-admins"}, []string{UsageClient}, nil, nil, nil, false)
			leaf("front-proxy-client", FrontProxyCA, "front-proxy-client", nil, []string{UsageClient}, nil, nil, nil, false)
			etcdIPs := append(slices.Clone(ips), "127.0.0.1", "::1")
			leaf("etcd-server", EtcdCA, hn, nil, []string{UsageServer, UsageClient}, []string{hn, "localhost"}, etcdIPs, addresses, true)
			leaf("etcd-peer", EtcdCA, hn, nil, []string{UsageServer, UsageClient}, []string{hn, "localhost"}, etcdIPs, addresses, true)
			leaf("etcd-healthcheck-client", EtcdCA, "kube-etcd-healthcheck-client", nil, []string{UsageClient}, nil, nil, nil, false)
			leaf("apiserver-etcd-client", EtcdCA, "kube-apiserver-etcd-client", nil, []string{UsageClient}, nil, nil, nil, false)
			leaf("admin", CA, "kubernetes-admin", []string{"kubeadm:cluster-admins"}, []string{UsageClient}, nil, nil, nil, false)
			leaf("controller-manager", CA, "system:kube-controller-manager", nil, []string{UsageClient}, nil, nil, nil, false)
			leaf("scheduler", CA, "system:kube-scheduler", nil, []string{UsageClient}, nil, nil, nil, false)
		}
		// Every host is a node: the control plane runs a kubelet too, as kubeadm sets it up.
		hn := h.NetworkingHostName()
		leaf("kubelet", CA, "system:node:"+hn, []string{"system:nodes"}, []string{UsageClient}, nil, nil, nil, false)
		leaf("kubelet-serving", CA, "system:node:"+hn, []string{"system:nodes"}, []string{UsageServer}, []string{hn}, ips, addresses, true)
		leaf("kube-proxy", CA, "system:kube-proxy", nil, []string{UsageClient}, nil, nil, nil, false)
	}
	sortSpecs(out)
	return out
}

// sortSpecs sorts specs by ID. A Spec is some 300 bytes: it sorts their
// positions, then moves each spec once, in place (sorting the specs
// themselves moved a 10,000-host set's 40,000 specs some 15 times each).
func sortSpecs(specs []Spec) {
	sorted := func(i int) bool { return specs[i-1].ID <= specs[i].ID }
	i := 1
	for i < len(specs) && sorted(i) {
		i++
	}
	if i >= len(specs) {
		return
	}
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Or(strings.Compare(specs[a].ID, specs[b].ID), a-b) })
	// Each cycle of the permutation moves its specs along, one aside.
	for i := range order {
		if order[i] < 0 || order[i] == i {
			continue
		}
		aside := specs[i]
		j := i
		for {
			k := order[j]
			order[j] = -1
			if k == i {
				specs[j] = aside
				break
			}
			specs[j] = specs[k]
			j = k
		}
	}
}

// FileStem is a leaf's file name without extension, as the K8Nix certToolkit
// names it: the CA's directory name, a dash, and the certificate's name
// (etcd-server, not etcd-etcd-server).
func FileStem(signer, name string) string {
	return CADir(signer) + "-" + strings.TrimPrefix(name, CADir(signer)+"-")
}

// LeafSigners maps every leaf name that Set derives to the CA that signs it.
// IDForPath reads it backwards; a test keeps the two in step.
func LeafSigners() map[string]string {
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

// canonicalIPs are the addresses that parse, canonical.
func canonicalIPs(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, ip.String())
		}
	}
	return out
}

// extraSANs are pki.extra_sans, IPs canonical.
func extraSANs(k *nest.PKI) []string {
	var out []string
	for _, san := range k.ExtraSANs {
		if a, err := netip.ParseAddr(san); err == nil {
			out = append(out, a.String())
		} else {
			out = append(out, san)
		}
	}
	return out
}

// dnsOnly and ipsOnly split SANs into names and addresses.
func dnsOnly(sans []string) []string {
	var out []string
	for _, s := range sans {
		if _, err := netip.ParseAddr(s); err != nil {
			out = append(out, s)
		}
	}
	return out
}

func ipsOnly(sans []string) []string {
	var out []string
	for _, s := range sans {
		if _, err := netip.ParseAddr(s); err == nil {
			out = append(out, s)
		}
	}
	return out
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

func NormalizeRecipients(rs []string) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = appendKey(out, r)
	}
	return SortedUnique(out)
}

func SortedUnique(s []string) []string {
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
