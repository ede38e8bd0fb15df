package tailnet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
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
	res := f.relay(w, r, m, body)
	if res == nil {
		return
	}
	defer res.Body.Close()
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

// relay passes r on to testcontrol over m's session, body as its body, and
// answers w with the status and header that come back. The caller copies
// the response's body and closes it; nil when the request failed, w
// answered with a 502.
func (f *front) relay(w http.ResponseWriter, r *http.Request, m *machine, body io.Reader) *http.Response {
	res, err := f.roundTrip(r, m, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return nil
	}
	copyHeader(w.Header(), res.Header)
	w.WriteHeader(res.StatusCode)
	return res
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
