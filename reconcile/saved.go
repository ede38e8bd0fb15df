package reconcile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// SavedPlan is a plan written by `nestbot plan --save-plan` for a later
// `nestbot apply --plan`. It records digests of what it was made from, so
// an apply refuses a plan whose desired or live state has changed since.
// It holds no secret: sensitive values are never in a plan.
type SavedPlan struct {
	FormatVersion string `json:"format_version"`
	Plan          *Plan  `json:"plan"`
	DesiredDigest string `json:"desired_digest"`
	LiveDigest    string `json:"live_digest"`
}

// DigestLive fingerprints an observation, ignoring when it was made.
func DigestLive(l *Live) string {
	c := *l
	c.ObservedAt = time.Time{}
	c.FormatVersion = FormatVersion
	// When a node was last seen moves on by itself; whether it is online does not.
	c.Tailnet.Nodes = slices.Clone(l.Tailnet.Nodes)
	for i := range c.Tailnet.Nodes {
		c.Tailnet.Nodes[i].LastSeen = time.Time{}
	}
	data, err := json.Marshal(&c)
	if err != nil {
		panic("reconcile: digest live: " + err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// DigestBytes fingerprints the desired state's source (nest.yaml and what it reads).
func DigestBytes(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Encode writes the saved plan as JSON.
func (s *SavedPlan) Encode(w io.Writer) error {
	s.FormatVersion = FormatVersion
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// DecodeSavedPlan reads a saved plan strictly.
func DecodeSavedPlan(name string, data []byte) (*SavedPlan, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s SavedPlan
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: not a saved plan: %w", name, err)
	}
	if s.FormatVersion != FormatVersion || s.Plan == nil {
		return nil, fmt.Errorf("%s: not a saved plan of format %s", name, FormatVersion)
	}
	return &s, nil
}

// ErrLiveChanged is Check's refusal of a saved plan made from another live
// state than the one at hand.
var ErrLiveChanged = errors.New("the live state changed since the plan was saved")

// Check refuses the saved plan when the desired or live state differs from
// what it was made from.
func (s *SavedPlan) Check(desiredDigest string, live *Live) error {
	if s.DesiredDigest != desiredDigest {
		return fmt.Errorf("nest.yaml (or a file it reads) changed since the plan was saved")
	}
	if s.LiveDigest != DigestLive(live) {
		return ErrLiveChanged
	}
	return nil
}

// Delta says how a plan made now differs from the saved one, by step
// address and action, for a refusal to say why: at most five differences,
// and how many more.
func (s *SavedPlan) Delta(now *Plan) string {
	key := func(st Step) string { return st.Address.String() + " (" + string(st.Action) + ")" }
	was, is := map[string]bool{}, map[string]bool{}
	for _, st := range s.Plan.Steps {
		was[key(st)] = true
	}
	for _, st := range now.Steps {
		is[key(st)] = true
	}
	var diffs []string
	for _, st := range s.Plan.Steps {
		if k := key(st); !is[k] {
			diffs = append(diffs, k+" is no longer planned")
		}
	}
	for _, st := range now.Steps {
		if k := key(st); !was[k] {
			diffs = append(diffs, k+" is new")
		}
	}
	if len(diffs) == 0 {
		return "the steps are the same, but what they act on changed"
	}
	const most = 5
	if len(diffs) > most {
		diffs = append(diffs[:most], fmt.Sprintf("and %d more", len(diffs)-most))
	}
	return "the plan now differs: " + strings.Join(diffs, "; ")
}
