package pki

import (
	"path"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

// The k8nix layout is the certificate set of the K8Nix certToolkit as the
// DucksNest fleet defines it (infra/nix/modules/certs/ca.nix) and as its
// cfssl scripts write it: one CA, certToolkit.cas.k8s, in ca/k8s.crt (RSA
// 2048, O=<org>, CN=<org> Kubernetes Cluster CA, the 5 years cfssl's
// -initca gives), and each host's leaves in
// derived/<networking.hostName>/k8s-<name>.crt, every one RSA 2048, one
// year, server and client auth (the usages of cfssl's default signing
// profile, whatever the CSR asks), O=<org> unless Kubernetes reads another.
//
// k8nixLeaf is one leaf of the layout: its name (the certToolkit attribute,
// k8s-<name>.crt), subject and SANs, and whether every host has it or only
// a control plane.
type k8nixLeaf struct {
	name, cn, org string   // org "" is pki.organization
	sans          []string // besides the host's addresses: hostName is the host's name
	everyHost     bool     // a worker has it too
	serving       bool     // the host's addresses (hosts.<host>.addresses) are SANs
}

// k8nixHostName stands for the host's networking.hostName in k8nixLeaves.
const k8nixHostName = "\x00host"

func k8nixLeaves(serviceIP, clusterDomain string) []k8nixLeaf {
	apiserver := []string{k8nixHostName, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + clusterDomain, "127.0.0.1"}
	if serviceIP != "" {
		apiserver = append(apiserver, serviceIP)
	}
	etcd := []string{k8nixHostName, "localhost", "127.0.0.1"}
	return []k8nixLeaf{
		{name: "calico-cni", cn: "calico-cni", everyHost: true},
		{name: "etcd-client", cn: "etcd-client"},
		{name: "etcd-peer", cn: "etcd-peer", sans: etcd, serving: true},
		{name: "etcd-server", cn: "etcd", sans: etcd, serving: true},
		{name: "kube-admin", cn: "kubernetes-admin", org: "system:masters"},
		{name: "kube-apiserver-etcd-client", cn: "kube-apiserver-etcd-client"},
		{name: "kube-apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client"},
		{name: "kube-apiserver", cn: "kube-apiserver", sans: apiserver, serving: true},
		{name: "kube-controller-manager", cn: "system:kube-controller-manager"},
		{name: "kube-proxy", cn: "system:kube-proxy", org: "system:node-proxier", everyHost: true},
		{name: "kube-scheduler", cn: "system:kube-scheduler"},
		{name: "kubelet", cn: "system:node:" + k8nixHostName, org: "system:nodes", sans: []string{k8nixHostName, "127.0.0.1"}, everyHost: true, serving: true},
		{name: "service-account", cn: "service-accounts"},
	}
}

// k8nixOrganization is the layout's O=: pki.organization, else the fleet's name.
func k8nixOrganization(f *nest.Fleet) string {
	if f.PKI.Organization != "" {
		return f.PKI.Organization
	}
	return f.Name
}

func k8nixSet(f *nest.Fleet, hostKeys map[string]string) []Spec {
	k := f.PKI
	admins := NormalizeRecipients(k.Admins)
	alg := keyAlgorithm(k, nest.LayoutK8Nix)
	org := k8nixOrganization(f)
	out := []Spec{{
		ID: K8sCA, Name: K8sCA, IsCA: true, CommonName: org + " Kubernetes Cluster CA", Organization: []string{org},
		Validity: caValidity(k, nest.LayoutK8Nix), KeyAlgorithm: alg, Recipients: admins,
		CertPath: CACertPath(K8sCA), KeyPath: path.Join(CADirName, CADir(K8sCA)+".key.age"),
	}}
	extra := extraSANs(k)
	for _, name := range hostNames(f) {
		h := f.Hosts[name]
		hn := h.NetworkingHostName()
		dir := hostDir(h)
		recipients := SortedUnique(appendKey(slices.Clone(admins), hostKeys[name]))
		addresses := canonicalIPs(h.Addresses)
		for _, l := range k8nixLeaves(firstServiceIP(k.ServiceCIDR), k.ClusterDomain) {
			if !l.everyHost && !h.HasRole(nest.RoleControlPlane) {
				continue
			}
			o := l.org
			if o == "" {
				o = org
			}
			var sans, required []string
			for _, san := range l.sans {
				if san == k8nixHostName {
					san = hn
				}
				sans = append(sans, san)
			}
			if l.serving {
				required = append(required, addresses...)
			}
			if l.name == "kube-apiserver" {
				required = append(required, extra...)
			}
			sans = append(sans, required...)
			stem := CADir(K8sCA) + "-" + l.name
			out = append(out, Spec{
				ID: hn + "/" + stem, Name: l.name, Host: h.Name, Signer: K8sCA,
				CommonName: replaceHost(l.cn, hn), Organization: []string{o},
				DNSNames: SortedUnique(dnsOnly(sans)), IPs: SortedUnique(ipsOnly(sans)), RequiredSANs: SortedUnique(required),
				Usages:   []string{UsageClient, UsageServer},
				Validity: k.LeafValidity.Duration, KeyAlgorithm: alg, Recipients: recipients,
				CertPath: path.Join(dir, stem+".crt"), KeyPath: path.Join(dir, stem+".key.age"),
			})
		}
	}
	sortSpecs(out)
	return out
}

func replaceHost(cn, host string) string {
	if p, ok := strings.CutSuffix(cn, k8nixHostName); ok {
		return p + host
	}
	return cn
}
