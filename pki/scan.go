package pki

import (
	"bytes"
	"regexp"
)

// privateKeyMarkers find private keys in the forms they are written down:
// a PEM header of any private key (PKCS #1, #8 and encrypted #8, SEC 1,
// OpenSSH, DSA, …), an OpenSSH key's base64 magic without its armor, an age
// or age-plugin secret key, and a PuTTY key file.
var privateKeyMarkers = regexp.MustCompile(`-----BEGIN[A-Z0-9 ]* PRIVATE KEY-----|` +
	`b3BlbnNzaC1rZXktdjE|` + // base64 of "openssh-key-v1"
	`(?i:AGE-(?:PLUGIN-[A-Z0-9]+-)?SECRET-KEY-(?:PQ-)?1)|` +
	`PuTTY-User-Key-File-`)

// ContainsPlaintextKey reports whether data holds an unencrypted private key
// anywhere in it: a PEM "… PRIVATE KEY" block, an OpenSSH private key, or an
// age secret key. It errs on the side of refusing: an encrypted PKCS #8
// block counts too, since nothing but .age files should hold keys at all.
// It is the check run before any file is written to the tree or committed.
func ContainsPlaintextKey(data []byte) bool {
	// Every marker holds one of these literals; most data holds none, and
	// the regular expression need not run at all.
	if !bytes.Contains(data, []byte(" PRIVATE KEY-----")) &&
		!bytes.Contains(data, []byte("b3BlbnNzaC1rZXktdjE")) &&
		!bytes.Contains(data, []byte("PuTTY-User-Key-File-")) &&
		!containsFold(data, "-SECRET-KEY-") {
		return false
	}
	return privateKeyMarkers.Match(data)
}

// containsFold reports whether data contains sub, ASCII case folded; sub
// begins with a byte that has no case.
func containsFold(data []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(data); i++ {
		j := bytes.IndexByte(data[i:], sub[0])
		if j < 0 {
			return false
		}
		i += j
		if i+len(sub) <= len(data) && bytes.EqualFold(data[i:i+len(sub)], []byte(sub)) {
			return true
		}
	}
	return false
}
