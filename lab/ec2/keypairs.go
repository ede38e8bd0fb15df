package ec2

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// keyPair is an EC2 key pair: a public key the account registered.
type keyPair struct {
	id, name, keyType, fingerprint, publicKey string
	created                                   time.Time
	tags                                      map[string]string
}

type xKeyPair struct {
	KeyPairID   string `xml:"keyPairId"`
	Fingerprint string `xml:"keyFingerprint"`
	KeyName     string `xml:"keyName"`
	KeyType     string `xml:"keyType"`
	Tags        []xTag `xml:"tagSet>item,omitempty"`
	PublicKey   string `xml:"publicKey,omitempty"`
	CreateTime  string `xml:"createTime"`
}

// fingerprintOf is EC2's fingerprint of an imported public key: for
// ED25519, the base64 SHA-256 of the key; for RSA, the colon-separated MD5
// of its DER (PKIX) encoding, as the EC2 user guide describes them.
func fingerprintOf(pub ssh.PublicKey) (keyType, fp string, err error) {
	switch pub.Type() {
	case ssh.KeyAlgoED25519:
		sum := sha256.Sum256(pub.Marshal())
		return "ed25519", base64.StdEncoding.EncodeToString(sum[:]), nil
	case ssh.KeyAlgoRSA:
		der, err := x509.MarshalPKIXPublicKey(pub.(ssh.CryptoPublicKey).CryptoPublicKey())
		if err != nil {
			return "", "", err
		}
		sum := md5.Sum(der)
		var parts []string
		for _, b := range sum {
			parts = append(parts, fmt.Sprintf("%02x", b))
		}
		return "rsa", strings.Join(parts, ":"), nil
	}
	return "", "", fmt.Errorf("unsupported key type %s", pub.Type())
}

// addKeyPair registers a public key (an authorized_keys line) under name.
func (s *Server) addKeyPair(name string, authorizedKey []byte, tags map[string]string, now time.Time) (*keyPair, error) {
	if name == "" || len(name) > 255 {
		return nil, errf(400, "InvalidParameterValue", "Value for parameter KeyName is invalid: a key name is 1 to 255 characters")
	}
	if s.st.keyPairs[name] != nil {
		return nil, errf(400, "InvalidKeyPair.Duplicate", "The keypair already exists")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(authorizedKey)
	if err != nil {
		return nil, errf(400, "InvalidKey.Format", "Key is not in valid OpenSSH public key format")
	}
	typ, fp, err := fingerprintOf(pub)
	if err != nil {
		return nil, errf(400, "InvalidKey.Format", "Key is not in valid OpenSSH public key format")
	}
	k := &keyPair{id: s.newID("key"), name: name, keyType: typ, fingerprint: fp,
		publicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), created: now, tags: tags}
	s.st.keyPairs[name] = k
	return k, nil
}

// SeedKeyPair registers a key pair by name, as an account that has it
// would (with a lab key: nothing logs in with it).
func (s *Server) SeedKeyPair(name string) error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.keyPairs[name] != nil {
		return nil
	}
	_, err := s.addKeyPair(name, []byte(labPublicKey), map[string]string{}, s.now())
	return err
}

// labPublicKey stands for a key pair's public half where none is given.
const labPublicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSekDWn5UcgpQgnVuWgrwdRH3ldAcLZVMO5CPKuSULM nestlab"

func (s *Server) importKeyPair(c *call) (any, error) {
	name, err := c.p.require("KeyName")
	if err != nil {
		return nil, err
	}
	material, err := c.p.require("PublicKeyMaterial")
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(material)
	if err != nil {
		return nil, errf(400, "InvalidParameterValue", "Value for parameter PublicKeyMaterial is invalid: not base64")
	}
	specs, err := c.p.tagSpecs("key-pair")
	if err != nil {
		return nil, err
	}
	k, err := s.addKeyPair(name, raw, tagsFrom(specs["key-pair"]), c.now)
	if err != nil {
		return nil, err
	}
	return struct {
		Fingerprint string `xml:"keyFingerprint"`
		KeyName     string `xml:"keyName"`
		KeyPairID   string `xml:"keyPairId"`
		Tags        []xTag `xml:"tagSet>item,omitempty"`
	}{k.fingerprint, k.name, k.id, tagsXML(k.tags)}, nil
}

func (s *Server) keyPairFilter(k *keyPair) filterFunc {
	return func(name string) ([]string, bool) {
		switch name {
		case "key-name":
			return []string{k.name}, true
		case "key-pair-id":
			return []string{k.id}, true
		case "fingerprint":
			return []string{k.fingerprint}, true
		case "key-type":
			return []string{k.keyType}, true
		}
		return tagFilter(k.tags, name)
	}
}

// keyPairsByID is every key pair, by its id (s.st.keyPairs is by name).
func (s *Server) keyPairsByID() map[string]*keyPair {
	byID := map[string]*keyPair{}
	for _, k := range s.st.keyPairs {
		byID[k.id] = k
	}
	return byID
}

// describeKeyPairs answers in one page (DescribeKeyPairs takes no
// MaxResults): the key pairs KeyName.N or KeyPairId.N names, in order, or
// all of them, by name.
func (s *Server) describeKeyPairs(c *call) (any, error) {
	withKey, _ := c.p.boolean("IncludePublicKey")
	xml := func(k *keyPair) xKeyPair {
		x := xKeyPair{KeyPairID: k.id, Fingerprint: k.fingerprint, KeyName: k.name, KeyType: k.keyType,
			Tags: tagsXML(k.tags), CreateTime: fmtTime(k.created)}
		if withKey {
			x.PublicKey = k.publicKey
		}
		return x
	}
	return describe(c, "keySet", xml, listing[keyPair]{
		pick: func() ([]*keyPair, error) {
			if names := c.p.list("KeyName"); len(names) > 0 {
				return pick(s.st.keyPairs, keyPairKind, names)
			}
			if ids := c.p.list("KeyPairId"); len(ids) > 0 {
				return pick(s.keyPairsByID(), keyPairKind, ids)
			}
			return sortedValues(s.st.keyPairs), nil
		},
		filter: s.keyPairFilter, id: func(k *keyPair) string { return k.id }})
}

func (s *Server) deleteKeyPair(c *call) (any, error) {
	name, id := c.p.get("KeyName"), c.p.get("KeyPairId")
	if name == "" && id == "" {
		return nil, errf(400, "MissingParameter", "The request must contain the parameter KeyName or KeyPairId")
	}
	for n, k := range s.st.keyPairs {
		if n == name || k.id == id {
			delete(s.st.keyPairs, n)
		}
	}
	// EC2 answers true whether or not the key pair existed.
	return returnResponse{true}, nil
}
