package tailnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// serveRegister admits or refuses a registration (see front).
func (f *front) serveRegister(w http.ResponseWriter, r *http.Request, peer key.MachinePublic, m *machine) {
	body, err := io.ReadAll(io.LimitReader(r.Body, msgLimit))
	if err != nil {
		http.Error(w, "reading register request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var req tailcfg.RegisterRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Hostinfo == nil {
		http.Error(w, "bad register request", http.StatusBadRequest)
		return
	}
	c, err := f.admit(&req, peer)
	if err != nil {
		writeRegisterError(w, err.Error())
		return
	}
	if body, err = json.Marshal(&req); err != nil {
		c.settle(f.keys, false)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	res, err := f.roundTrip(r, m, bytes.NewReader(body))
	if err != nil {
		c.settle(f.keys, false)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	out, err := io.ReadAll(io.LimitReader(res.Body, msgLimit))
	var rr tailcfg.RegisterResponse
	ok := err == nil && res.StatusCode == http.StatusOK && json.Unmarshal(out, &rr) == nil && rr.Error == "" && rr.AuthURL == ""
	c.settle(f.keys, ok)
	if ok {
		f.registered(&req, peer, c)
	}
	copyHeader(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	w.Write(out)
}

// A claim is a minted key a registration uses, until it is settled.
type claim struct {
	secret string
	tags   []string // the tags the key grants
}

// settle reports the registration's outcome; a nil claim is no key.
func (c *claim) settle(keys *keyStore, ok bool) {
	if c != nil {
		keys.settle(c.secret, ok)
	}
}

// admit decides on a registration and rewrites req for testcontrol. It
// returns the minted key it claimed (nil if none), or an error to refuse
// the registration with.
func (f *front) admit(req *tailcfg.RegisterRequest, peer key.MachinePublic) (*claim, error) {
	f.mu.Lock()
	known := f.nodes[req.NodeKey]
	if known != nil && known.deleted {
		f.mu.Unlock()
		return nil, errors.New("this device was deleted from the tailnet; log in again with a new auth key")
	}
	if old := f.nodes[req.OldNodeKey]; old != nil && old.deleted {
		// A deleted device logging in again is a new device, as it is
		// with Tailscale; testcontrol would revive the old one.
		req.OldNodeKey = key.NodePublic{}
	}
	f.mu.Unlock()

	// A device control knows, registering its node key again from its own
	// machine (as tailscaled does at each start), needs no auth key, as
	// with Tailscale's control; testcontrol would want its key again.
	if known != nil && known.machine == peer && (req.Auth == nil || req.Auth.AuthKey == "") && f.labKey != "" {
		req.Auth = &tailcfg.RegisterResponseAuth{AuthKey: f.labKey}
		return nil, nil
	}
	if req.Auth == nil || !f.keys.minted(req.Auth.AuthKey) {
		return nil, nil // not ours: testcontrol decides
	}
	secret := req.Auth.AuthKey
	req.Auth.AuthKey = f.labKey
	if known != nil {
		return nil, nil // a registered device does not use its key again
	}
	k, err := f.keys.claim(secret)
	if err != nil {
		return nil, err
	}
	if len(k.Tags) > 0 {
		if extra := notIn(req.Hostinfo.RequestTags, k.Tags); len(extra) > 0 {
			f.keys.settle(secret, false)
			return nil, fmt.Errorf("requested tags %v are invalid or not permitted: the auth key grants %v", extra, k.Tags)
		}
		req.Hostinfo.RequestTags = slices.Clone(k.Tags)
	}
	req.Ephemeral = req.Ephemeral || k.Ephemeral
	return &claim{secret: secret, tags: k.Tags}, nil
}

// registered notes a device testcontrol accepted, registered with c.
func (f *front) registered(req *tailcfg.RegisterRequest, peer key.MachinePublic, c *claim) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes[req.NodeKey] != nil {
		return
	}
	ns := &nodeState{machine: peer, created: f.now(), ephemeral: req.Ephemeral}
	if old := f.nodes[req.OldNodeKey]; old != nil {
		ns.created, ns.ephemeral, ns.keyTags = old.created, old.ephemeral, old.keyTags
	}
	if c != nil {
		ns.keyTags = c.tags
	}
	f.nodes[req.NodeKey] = ns
}

func notIn(have, allowed []string) []string {
	var out []string
	for _, t := range have {
		if !slices.Contains(allowed, t) {
			out = append(out, t)
		}
	}
	return out
}

func writeRegisterError(w http.ResponseWriter, msg string) {
	b, _ := json.Marshal(tailcfg.RegisterResponse{Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}
