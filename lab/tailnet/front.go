package tailnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"tailscale.com/control/controlhttp/controlhttpserver"
	"tailscale.com/control/ts2021"
	"tailscale.com/net/tsdial"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/util/zstdframe"
)

// msgLimit bounds a request body from a node, as testcontrol does.
const msgLimit = 1 << 20

// front is the control server nodes talk to. It stands in front of
// testcontrol and adds what testcontrol does not model and Tailscale's
// control does: per-device auth keys (one-off or reusable, with an expiry,
// tags and ephemerality of their own), device deletion, and presence.
//
// A node speaks the Tailscale protocol to the front: the front answers
// /key with a Noise key of its own, ends the node's Noise session (ts2021),
// looks at each request inside it, and passes it on to testcontrol over a
// Noise session of its own — one per node machine, with a machine key made
// for it (testcontrol sees that key; the devices list shows the node's own).
//
//   - /machine/register: a key minted through the lab's API is checked here
//     (known, not expired or revoked, a one-off key not used yet) and, if
//     good, replaced by the key testcontrol requires; the device gets the
//     key's tags and ephemerality. Other keys pass as they came, and
//     testcontrol checks them as before.
//   - /machine/map: a deleted device's polls are refused, deleted devices
//     are cut out of everyone's netmap, and streaming polls are counted for
//     the devices list's connectedToControl and lastSeen.
//   - anything else passes through unchanged.
type front struct {
	logf     logger.Logf
	control  *testcontrol.Server
	upURL    string // testcontrol's
	upHost   string
	upNoise  key.MachinePublic
	upLegacy key.MachinePublic  // testcontrol's legacy key, passed on
	noise    key.MachinePrivate // the front's own Noise key
	labKey   string             // the key testcontrol requires ("" for any)
	keys     *keyStore
	now      func() time.Time
	passOn   *httputil.ReverseProxy // for plain HTTP paths (/generate_204, /c2n/…)
	// sshRules are the tailnet policy's ssh rules (Lab.SSH).
	sshRules []SSHRule
	// ephemeralTimeout is how long an ephemeral device may hold no map
	// poll before the front deletes it.
	ephemeralTimeout time.Duration

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{}
	machines map[key.MachinePublic]*machine     // by the node's own machine key
	nodes    map[key.NodePublic]*nodeState      // by node key
	deleted  map[tailcfg.StableNodeID]time.Time // deleted devices, when
	delIDs   map[tailcfg.NodeID]bool
}

// machine is one node machine's session with testcontrol.
type machine struct {
	key    key.MachinePrivate // what testcontrol knows the machine by
	client *ts2021.Client
}

// nodeState is what the front knows of a device (a node key).
type nodeState struct {
	machine   key.MachinePublic // the node's own machine key
	created   time.Time
	ephemeral bool
	keyTags   []string // tags its auth key granted; nil if its tags are its own
	streams   int      // streaming map polls open now
	lastSeen  time.Time
	deleted   bool
}

// newFront makes a front for the testcontrol server at upURL.
func newFront(ctx context.Context, logf logger.Logf, control *testcontrol.Server, upURL, labKey string, keys *keyStore) (*front, error) {
	u, err := url.Parse(upURL)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", upURL+"/key?v="+strconv.Itoa(int(tailcfg.CurrentCapabilityVersion)), nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control keys: %w", err)
	}
	defer res.Body.Close()
	var ks tailcfg.OverTLSPublicKeyResponse
	if err := json.NewDecoder(res.Body).Decode(&ks); err != nil || ks.PublicKey.IsZero() {
		return nil, fmt.Errorf("control keys: %s, %v", res.Status, err)
	}
	return &front{
		logf: logf, control: control, upURL: upURL, upHost: u.Hostname(),
		upNoise: ks.PublicKey, upLegacy: ks.LegacyPublicKey,
		noise: key.NewMachine(), labKey: labKey, keys: keys, now: time.Now,
		passOn:   &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) }, ErrorLog: logger.StdLogger(logf)},
		conns:    map[net.Conn]struct{}{},
		machines: map[key.MachinePublic]*machine{},
		nodes:    map[key.NodePublic]*nodeState{},
		deleted:  map[tailcfg.StableNodeID]time.Time{},
		delIDs:   map[tailcfg.NodeID]bool{},
	}, nil
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/key":
		f.serveKey(w, r)
	case "/ts2021":
		f.serveNoise(w, r)
	default:
		f.passOn.ServeHTTP(w, r)
	}
}

// serveKey answers as testcontrol would, with the front's Noise key. The
// legacy form (no ?v=) is testcontrol's own.
func (f *front) serveKey(w http.ResponseWriter, r *http.Request) {
	if r.FormValue("v") == "" {
		f.passOn.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&tailcfg.OverTLSPublicKeyResponse{LegacyPublicKey: f.upLegacy, PublicKey: f.noise.Public()})
}

// serveNoise ends a node's Noise session and serves the HTTP/2 inside it.
func (f *front) serveNoise(w http.ResponseWriter, r *http.Request) {
	cc, err := controlhttpserver.AcceptHTTP(r.Context(), w, r, f.noise, nil)
	if err != nil {
		f.logf("tailnet front: noise: %v", err)
		return
	}
	defer cc.Close()
	if !f.track(cc) {
		return
	}
	defer f.untrack(cc)
	peer := cc.Peer()
	m, err := f.machine(peer)
	if err != nil {
		f.logf("tailnet front: %v", err)
		return
	}
	ln := newConnListener(cc)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // inside Noise, as testcontrol speaks it
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/machine/register":
				f.serveRegister(w, r, peer, m)
			case "/machine/map":
				f.serveMap(w, r, m)
			default:
				f.forward(w, r, m, r.Body)
			}
		}),
		Protocols:   &protocols,
		BaseContext: func(net.Listener) context.Context { return r.Context() },
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				ln.Close()
			}
		},
		ErrorLog: logger.StdLogger(f.logf),
	}
	srv.Serve(ln)
}

// connListener is a listener that accepts one connection, c, and is done
// when closed (when c is).
type connListener struct {
	c       net.Conn
	pending chan net.Conn
	done    chan struct{}
	once    sync.Once
}

func newConnListener(c net.Conn) *connListener {
	l := &connListener{c: c, pending: make(chan net.Conn, 1), done: make(chan struct{})}
	l.pending <- c
	return l
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.pending:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.c.LocalAddr() }

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// machine returns the session with testcontrol for the node machine peer.
func (f *front) machine(peer key.MachinePublic) (*machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.machines[peer]; m != nil {
		return m, nil
	}
	mk := key.NewMachine()
	c, err := ts2021.NewClient(ts2021.ClientOpts{
		ServerURL:    f.upURL,
		PrivKey:      mk,
		ServerPubKey: f.upNoise,
		Dialer:       tsdial.NewFromFuncForDebug(f.logf, (&net.Dialer{}).DialContext),
		Logf:         f.logf,
	})
	if err != nil {
		return nil, fmt.Errorf("session with control for %v: %w", peer.ShortString(), err)
	}
	m := &machine{key: mk, client: c}
	f.machines[peer] = m
	return m, nil
}

// forward passes r on to testcontrol over m's session, body as its body,
// and streams the answer back.
func (f *front) forward(w http.ResponseWriter, r *http.Request, m *machine, body io.Reader) {
	res, err := f.roundTrip(r, m, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	copyHeader(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			http.NewResponseController(w).Flush()
		}
		if err != nil {
			return
		}
	}
}

func (f *front) roundTrip(r *http.Request, m *machine, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "https://"+f.upHost+r.URL.RequestURI(), body)
	if err != nil {
		return nil, err
	}
	copyHeader(req.Header, r.Header)
	return m.client.Do(req)
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

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

	res, err := f.roundTrip(r, m, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	copyHeader(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
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

	raw := msg
	if compress {
		var err error
		if raw, err = zstdframe.AppendDecode(nil, msg); err != nil {
			return msg
		}
	}
	var res tailcfg.MapResponse
	if err := json.Unmarshal(raw, &res); err != nil {
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
	out, err := json.Marshal(&res)
	if err != nil {
		return msg
	}
	if compress {
		out = zstdframe.AppendEncode(nil, out, zstdframe.FastestCompression)
	}
	return out
}

// withSSHPolicy replaces a map response's SSH policy (testcontrol sends
// one, the same to every node) by the policy's ssh rules that apply to the
// node receiving it, their sources resolved to the addresses of the nodes
// that carry the source tags, as Tailscale's control does.
func (f *front) withSSHPolicy(msg []byte, compress bool) []byte {
	if len(f.sshRules) == 0 {
		return msg
	}
	raw := msg
	if compress {
		var err error
		if raw, err = zstdframe.AppendDecode(nil, msg); err != nil {
			return msg
		}
	}
	var res tailcfg.MapResponse
	if err := json.Unmarshal(raw, &res); err != nil || res.SSHPolicy == nil || res.Node == nil {
		return msg
	}
	res.SSHPolicy = f.sshPolicyFor(res.Node)
	out, err := json.Marshal(&res)
	if err != nil {
		return msg
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

// errNoDevice is deleteDevice's answer for an id no device has.
var errNoDevice = errors.New("device not found")

// deleteDevice deletes the device whose id (numeric or stable) is id:
// it leaves the devices list and every netmap, and is logged out.
func (f *front) deleteDevice(id string) error {
	var target *tailcfg.Node
	var keys []key.NodePublic
	f.mu.Lock()
	for _, n := range f.control.AllNodes() {
		if string(n.StableID) != id && strconv.FormatInt(int64(n.ID), 10) != id {
			continue
		}
		if _, gone := f.deleted[n.StableID]; gone {
			continue
		}
		keys = append(keys, n.Key)
		if ns := f.nodes[n.Key]; target == nil || ns != nil && !ns.deleted {
			target = n
		}
	}
	if target == nil {
		f.mu.Unlock()
		return errNoDevice
	}
	f.deleted[target.StableID] = f.now()
	f.delIDs[target.ID] = true
	for _, k := range keys {
		ns := f.nodes[k]
		if ns == nil {
			ns = &nodeState{}
			f.nodes[k] = ns
		}
		ns.deleted = true
	}
	f.mu.Unlock()
	// Expiring its key logs the device out, and the update testcontrol
	// sends every node carries netmaps without it.
	target.KeyExpiry = f.now().Add(-time.Minute)
	f.control.UpdateNode(target)
	return nil
}

// expireEphemeral deletes the ephemeral device nk if it has held no map
// poll for ephemeralTimeout, as Tailscale removes ephemeral devices that
// went offline.
func (f *front) expireEphemeral(nk key.NodePublic) {
	f.mu.Lock()
	ns := f.nodes[nk]
	stale := !f.closed && ns != nil && !ns.deleted && ns.streams == 0 && f.now().Sub(ns.lastSeen) >= f.ephemeralTimeout
	f.mu.Unlock()
	if !stale {
		return // back online, deleted already, or a later timer's to decide
	}
	if n := f.control.Node(nk); n != nil {
		if err := f.deleteDevice(string(n.StableID)); err == nil {
			f.logf("tailnet front: ephemeral device %s (%s) removed after %s offline", n.StableID, n.Hostinfo.Hostname(), f.ephemeralTimeout)
		}
	}
}

// device is one device as the front knows it: testcontrol's node and the
// front's notes.
type device struct {
	node  *tailcfg.Node
	state nodeState
}

// devices lists the devices not deleted, one per stable id (the latest
// node key of a device whose key rotated).
func (f *front) devices() []device {
	f.mu.Lock()
	defer f.mu.Unlock()
	byID := map[tailcfg.StableNodeID]int{}
	var out []device
	for _, n := range f.control.AllNodes() {
		if _, gone := f.deleted[n.StableID]; gone {
			continue
		}
		d := device{node: n}
		if ns := f.nodes[n.Key]; ns != nil {
			if ns.deleted {
				continue
			}
			d.state = *ns
		}
		if i, ok := byID[n.StableID]; ok {
			if d.state.created.After(out[i].state.created) {
				out[i] = d
			}
			continue
		}
		byID[n.StableID] = len(out)
		out = append(out, d)
	}
	return out
}

// close ends every node's session and the front's sessions with control.
func (f *front) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	for _, m := range f.machines {
		m.client.Close()
	}
}
