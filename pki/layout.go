package pki

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

// The directories of the tree, as the K8Nix certToolkit lays it out.
const (
	CADirName      = "ca"
	DerivedDirName = "derived"
)

// PublicKeyPath is where a key-only Spec's public key lives: beside its
// .key.age, as .pub (ca/service-account.pub).
func PublicKeyPath(s Spec) string {
	if !s.KeyOnly {
		return ""
	}
	return strings.TrimSuffix(s.KeyPath, ".key.age") + ".pub"
}

// KeyPathFor is the .key.age beside a certificate or public key file.
func KeyPathFor(certPath string) string {
	return strings.TrimSuffix(strings.TrimSuffix(certPath, ".crt"), ".pub") + ".key.age"
}

// IDForPath names the certificate a file in the tree holds, as Spec.ID
// does: ca/kubernetes.crt is "ca", derived/h/kubernetes-apiserver.crt is
// "h/apiserver". A file Set never writes gets its file stem
// ("h/my-extra"), so a tree nestbot did not write still reads. ok is false
// for a path that is not a certificate or public key of the layout.
func IDForPath(p string) (id string, ok bool) {
	dir, file := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	stem, isCert := strings.CutSuffix(file, ".crt")
	if !isCert {
		var isPub bool
		if stem, isPub = strings.CutSuffix(file, ".pub"); !isPub || dir != CADirName {
			return "", false
		}
	}
	if stem == "" {
		return "", false
	}
	if dir == CADirName {
		for _, ca := range []string{CA, EtcdCA, FrontProxyCA} {
			if CADir(ca) == stem {
				return ca, true
			}
		}
		return stem, true
	}
	host, ok := strings.CutPrefix(dir, DerivedDirName+"/")
	if !ok || host == "" || strings.Contains(host, "/") {
		return "", false
	}
	for name, signer := range LeafSigners() {
		if FileStem(signer, name) == stem {
			return host + "/" + name, true
		}
	}
	return host + "/" + stem, true
}

// SignerForStem is the CA of the two layouts a leaf's file name says signs
// it ("" if none).
func SignerForStem(stem string) string {
	for _, ca := range []string{EtcdCA, FrontProxyCA, CA, K8sCA} {
		if strings.HasPrefix(stem, CADir(ca)+"-") {
			return ca
		}
	}
	return ""
}

// layoutAdmin stands in for pki.admins in the nest.yaml LayoutSpecs writes:
// recipients are not judged without nest.yaml.
const layoutAdmin = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"

// LayoutSpecs is the certificate set a tree implies without nest.yaml, in
// its layout (DetectLayout): a host for every derived/<host>/, a control
// plane when it holds a control-plane certificate (apiserver, etcd-*, …),
// a worker otherwise. It is Set of a nest.yaml written for those hosts,
// with the defaults nest.yaml gets (and for K8Nix, the CA's O=); the
// recipients, IPs, cluster domain and tailnet names in it are
// placeholders, not facts. Nil when the tree's host names do not make a
// valid fleet.
func LayoutSpecs(obs map[string]ObservedCert) []Spec {
	layout := DetectLayout(obs)
	var nodeCerts []string // every host's; any other leaf of the layout makes a control plane
	known := map[string]bool{}
	if layout == nest.LayoutK8Nix {
		for _, l := range k8nixLeaves("", "") {
			known[CADir(K8sCA)+"-"+l.name] = true
			if l.everyHost {
				nodeCerts = append(nodeCerts, CADir(K8sCA)+"-"+l.name)
			}
		}
	} else {
		for name := range LeafSigners() {
			known[name] = true
		}
		nodeCerts = []string{"kubelet", "kubelet-serving", "kube-proxy"}
	}
	controlPlane := map[string]bool{}
	for id := range obs {
		host, name, ok := strings.Cut(id, "/")
		if !ok {
			continue
		}
		controlPlane[host] = controlPlane[host] || known[name] && !slices.Contains(nodeCerts, name)
	}
	// The set needs a control plane; a tree of workers alone borrows one
	// under a name none of its hosts has, whose certificates are never looked up.
	if !slices.Contains(slices.Collect(maps.Values(controlPlane)), true) {
		cp := "layout-control-plane"
		for i := 2; ; i++ {
			if _, taken := controlPlane[cp]; !taken {
				break
			}
			cp = fmt.Sprintf("layout-control-plane-%d", i)
		}
		controlPlane[cp] = true
	}
	var y strings.Builder
	fmt.Fprintf(&y, "version: 1\nname: tree\npki:\n  dir: .\n  layout: %s\n  admins: [%s]\n", layout, layoutAdmin)
	if ca := obs[K8sCA]; layout == nest.LayoutK8Nix && len(ca.Organization) > 0 {
		fmt.Fprintf(&y, "  organization: %s\n", strconv.Quote(ca.Organization[0]))
	}
	y.WriteString("hosts:\n")
	for _, host := range slices.Sorted(maps.Keys(controlPlane)) {
		role := "worker"
		if controlPlane[host] {
			role = "control-plane"
		}
		fmt.Fprintf(&y, "  %s: {roles: [%s]}\n", strconv.Quote(host), role)
	}
	f, err := nest.Parse("the tree's layout", []byte(y.String()))
	if err != nil {
		return nil
	}
	return Set(f, nil, nil)
}
