package tailnet

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// An authKey is one auth key minted through the lab's API: the key's
// capabilities as the Tailscale API v2 describes them, and its use.
type authKey struct {
	ID            string
	Secret        string // the whole key, tskey-auth-<id>-<random>
	Description   string
	Reusable      bool
	Ephemeral     bool
	Preauthorized bool
	Tags          []string
	Created       time.Time
	Expires       time.Time
	Revoked       time.Time
	uses          int // registrations that succeeded
	pending       int // registrations under way
}

// keyStore holds the minted auth keys and decides, as Tailscale's control
// does, whether a registration may use one.
type keyStore struct {
	mu   sync.Mutex
	keys map[string]*authKey // by secret
	now  func() time.Time
}

func newKeyStore(now func() time.Time) *keyStore {
	return &keyStore{keys: map[string]*authKey{}, now: now}
}

// mint makes a new key.
func (s *keyStore) mint(k authKey) authKey {
	k.ID = randomID()
	k.Secret = "tskey-auth-" + k.ID + "-" + randomText(32)
	k.Tags = slices.Clone(k.Tags)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[k.Secret] = &k
	return k
}

// minted reports whether secret is a key this store minted, used or not.
func (s *keyStore) minted(secret string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[secret] != nil
}

// errKey* are the reasons a minted key is refused, worded as a person
// reading `tailscale up` output needs them.
var (
	errKeyUsed    = errors.New("invalid key: this one-off auth key was already used to register a device; mint a new one")
	errKeyExpired = errors.New("invalid key: auth key expired; mint a new one")
	errKeyRevoked = errors.New("invalid key: auth key was revoked")
)

// claim reserves secret for one registration. The caller reports the
// outcome with release (the registration failed) or commit.
func (s *keyStore) claim(secret string) (authKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[secret]
	switch {
	case k == nil:
		return authKey{}, errors.New("invalid key: not a key of this tailnet")
	case !k.Revoked.IsZero():
		return authKey{}, errKeyRevoked
	case !k.Expires.IsZero() && !s.now().Before(k.Expires):
		return authKey{}, errKeyExpired
	case !k.Reusable && k.uses+k.pending > 0:
		return authKey{}, errKeyUsed
	}
	k.pending++
	c := *k
	c.Tags = slices.Clone(k.Tags)
	return c, nil
}

// settle ends a claim: ok says whether the registration succeeded.
func (s *keyStore) settle(secret string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[secret]; k != nil {
		k.pending--
		if ok {
			k.uses++
		}
	}
}

// randomID is an id in the shape of Tailscale's stable ids: k, ten
// letters and digits, CNTRL.
func randomID() string {
	return "k" + randomText(10) + "CNTRL"
}

const idAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

func randomText(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("tailnet: crypto/rand: %v", err)) // never fails on Linux
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// checkDescription applies the API's rule for a key's description: at
// most 50 characters, letters, digits, hyphens and spaces.
func checkDescription(d string) error {
	if len(d) > 50 {
		return fmt.Errorf("description is %d characters long; the maximum is 50", len(d))
	}
	if i := strings.IndexFunc(d, func(r rune) bool {
		return !(r == ' ' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}); i >= 0 {
		return fmt.Errorf("description may contain only letters, digits, hyphens and spaces; %q is not allowed", d[i:i+1])
	}
	return nil
}
