package tailnet

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/util/zstdframe"
)

// serveMap passes a map poll on, refusing a deleted device's and cutting
// deleted devices out of the netmaps that come back.
func (f *front) serveMap(w http.ResponseWriter, r *http.Request, m *machine) {
	body, err := io.ReadAll(io.LimitReader(r.Body, msgLimit))
	if err != nil {
		http.Error(w, "reading map request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var req tailcfg.MapRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad map request", http.StatusBadRequest)
		return
	}
	streaming := req.Stream // ReadOnly is always false since capability version 68
	f.mu.Lock()
	ns := f.nodes[req.NodeKey]
	if ns != nil && ns.deleted {
		f.mu.Unlock()
		http.Error(w, "this device was deleted from the tailnet", http.StatusUnauthorized)
		return
	}
	var keyTags []string
	if ns != nil {
		keyTags = ns.keyTags
		if streaming {
			ns.streams++
		}
	}
	f.mu.Unlock()
	if streaming && ns != nil {
		defer func() {
			f.mu.Lock()
			ns.streams--
			ns.lastSeen = f.now()
			gone := ns.ephemeral && ns.streams == 0 && !ns.deleted
			f.mu.Unlock()
			if gone {
				nk := req.NodeKey
				time.AfterFunc(f.ephemeralTimeout, func() { f.expireEphemeral(nk) })
			}
		}()
	}
	// A device tagged by its key keeps the key's tags when it asks for
	// none (testcontrol would read an empty ask as a move to no tags).
	if req.Hostinfo != nil && len(req.Hostinfo.RequestTags) == 0 && len(keyTags) > 0 {
		req.Hostinfo.RequestTags = slices.Clone(keyTags)
		if body, err = json.Marshal(&req); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}

	res := f.relay(w, r, m, bytes.NewReader(body))
	if res == nil {
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		io.Copy(w, res.Body)
		return
	}
	compress := req.Compress != ""
	var size [4]byte
	for {
		if _, err := io.ReadFull(res.Body, size[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(size[:])
		if n > 256<<20 {
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(res.Body, msg); err != nil {
			return
		}
		msg = f.cutDeleted(msg, compress)
		msg = f.withSSHPolicy(msg, compress)
		binary.LittleEndian.PutUint32(size[:], uint32(len(msg)))
		if _, err := w.Write(size[:]); err != nil {
			return
		}
		if _, err := w.Write(msg); err != nil {
			return
		}
		http.NewResponseController(w).Flush()
	}
}

// cutDeleted removes deleted devices from one framed map response. It
// returns msg itself when there is nothing to remove.
func (f *front) cutDeleted(msg []byte, compress bool) []byte {
	f.mu.Lock()
	if len(f.deleted) == 0 {
		f.mu.Unlock()
		return msg
	}
	gone := func(id tailcfg.StableNodeID) bool { _, ok := f.deleted[id]; return ok }
	goneID := func(id tailcfg.NodeID) bool { return f.delIDs[id] }
	defer f.mu.Unlock()

	res, err := decodeMap(msg, compress)
	if err != nil {
		return msg
	}
	cut := false
	drop := func(peers []*tailcfg.Node) []*tailcfg.Node {
		return slices.DeleteFunc(peers, func(n *tailcfg.Node) bool {
			if n != nil && gone(n.StableID) {
				cut = true
				return true
			}
			return false
		})
	}
	res.Peers = drop(res.Peers)
	res.PeersChanged = drop(res.PeersChanged)
	res.PeersChangedPatch = slices.DeleteFunc(res.PeersChangedPatch, func(p *tailcfg.PeerChange) bool {
		if p != nil && goneID(p.NodeID) {
			cut = true
			return true
		}
		return false
	})
	for id := range res.OnlineChange {
		if goneID(id) {
			delete(res.OnlineChange, id)
			cut = true
		}
	}
	for id := range res.PeerSeenChange {
		if goneID(id) {
			delete(res.PeerSeenChange, id)
			cut = true
		}
	}
	if !cut {
		return msg
	}
	return encodeMap(res, compress, msg)
}

// withSSHPolicy replaces a map response's SSH policy (testcontrol sends
// one, the same to every node) by the policy's ssh rules that apply to the
// node receiving it, their sources resolved to the addresses of the nodes
// that carry the source tags, as Tailscale's control does.
func (f *front) withSSHPolicy(msg []byte, compress bool) []byte {
	if len(f.sshRules) == 0 {
		return msg
	}
	res, err := decodeMap(msg, compress)
	if err != nil || res.SSHPolicy == nil || res.Node == nil {
		return msg
	}
	res.SSHPolicy = f.sshPolicyFor(res.Node)
	return encodeMap(res, compress, msg)
}

// decodeMap decodes one framed map response, zstd-compressed when
// compress is set (the MapRequest's Compress).
func decodeMap(msg []byte, compress bool) (*tailcfg.MapResponse, error) {
	raw := msg
	if compress {
		var err error
		if raw, err = zstdframe.AppendDecode(nil, msg); err != nil {
			return nil, err
		}
	}
	var res tailcfg.MapResponse
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// encodeMap frames res as decodeMap reads it; it returns orig, the frame
// res came from, when res does not encode.
func encodeMap(res *tailcfg.MapResponse, compress bool, orig []byte) []byte {
	out, err := json.Marshal(res)
	if err != nil {
		return orig
	}
	if compress {
		out = zstdframe.AppendEncode(nil, out, zstdframe.FastestCompression)
	}
	return out
}

// sshPolicyFor is the SSH policy for node: a rule for each of the
// policy's rules whose destination tags the node has.
func (f *front) sshPolicyFor(node *tailcfg.Node) *tailcfg.SSHPolicy {
	pol := &tailcfg.SSHPolicy{}
	all := f.control.AllNodes()
	for _, r := range f.sshRules {
		if !slices.ContainsFunc(r.Dst, func(t string) bool { return slices.Contains(node.Tags, t) }) {
			continue
		}
		var principals []*tailcfg.SSHPrincipal
		for _, n := range all {
			member := len(n.Tags) == 0 && slices.Contains(r.Src, AutogroupMember)
			if !member && !slices.ContainsFunc(r.Src, func(t string) bool { return slices.Contains(n.Tags, t) }) {
				continue
			}
			for _, a := range n.Addresses {
				principals = append(principals, &tailcfg.SSHPrincipal{NodeIP: a.Addr().String()})
			}
		}
		if len(principals) == 0 {
			continue
		}
		users := map[string]string{}
		for _, u := range r.Users {
			users[u] = u
		}
		pol.Rules = append(pol.Rules, &tailcfg.SSHRule{
			Principals: principals,
			SSHUsers:   users,
			Action:     &tailcfg.SSHAction{Accept: true, AllowAgentForwarding: true, AllowLocalPortForwarding: true},
		})
	}
	return pol
}
