package pki

import (
	"path"
	"strings"
)

// The directories of the tree, as the K8Nix certToolkit lays it out.
const (
	caDirName      = "ca"
	derivedDirName = "derived"
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
		if stem, isPub = strings.CutSuffix(file, ".pub"); !isPub || dir != caDirName {
			return "", false
		}
	}
	if stem == "" {
		return "", false
	}
	if dir == caDirName {
		for _, ca := range []string{CA, EtcdCA, FrontProxyCA} {
			if caDir(ca) == stem {
				return ca, true
			}
		}
		return stem, true
	}
	host, ok := strings.CutPrefix(dir, derivedDirName+"/")
	if !ok || host == "" || strings.Contains(host, "/") {
		return "", false
	}
	for name, signer := range leafSigners() {
		if fileStem(signer, name) == stem {
			return host + "/" + name, true
		}
	}
	return host + "/" + stem, true
}

// signerForStem is the CA of the two layouts a leaf's file name says signs
// it ("" if none).
func signerForStem(stem string) string {
	for _, ca := range []string{EtcdCA, FrontProxyCA, CA, K8sCA} {
		if strings.HasPrefix(stem, caDir(ca)+"-") {
			return ca
		}
	}
	return ""
}
