// Package tailnet is the lab's tailnet: tailscale's own test control server
// (tailscale.com/tstest/integration/testcontrol) with a DERP relay and a STUN
// server, all in this process and on 127.0.0.1, and tsnet nodes joined to it.
//
//	lab := &tailnet.Lab{Logf: t.Logf}
//	if err := lab.Start(); err != nil { ... }
//	defer lab.Close()
//	node, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "bot", Dir: dir, Ephemeral: true})
//
// The wiring follows tailscale's own tsnet tests (tsnet/tsnet_test.go:
// startControl and integration.RunDERPAndSTUN), without their testing.TB, so
// that `nestlab up` and `nestlab demo` can run it outside `go test`.
//
// # Auth keys and tags
//
// testcontrol knows one tailnet-wide auth key (testcontrol.Server.RequireAuthKey):
// a node registering with any other key is refused with "invalid authkey".
// Start generates that key (AuthKey returns it); with OpenRegistration set,
// no key is required and any key is accepted. It is reusable and never
// expires.
//
// Keys minted through the lab's API (below) are per device, as Tailscale's
// are: one-off or reusable, with an expiry, and with tags and ephemerality
// that the device gets. A node joining with a tagged key gets the key's tags
// (asking for no tags is fine; asking for others is refused).
//
// Otherwise tags come from the node: a node's advertised tags
// (tsnet.Server.AdvertiseTags, NodeConfig.Tags) are trusted at registration,
// because the lab sets testcontrol.Server.TagOwners. Later retagging is
// allowed only between tags listed in Lab.Tags.
//
// # The API and the control front
//
// APIURL serves a stand-in for the Tailscale API v2 (api.tailscale.com):
// the OAuth token endpoint (client credentials), minting auth keys, listing
// devices and deleting them, in the shapes Tailscale's API uses, for the
// v2 client (tailscale.com/client/tailscale/v2). It accepts the lab's API
// access token (APIKey, full access) and the access tokens its OAuth
// clients get (OAuthClient: scopes auth_keys and devices:core, owning
// every tag in Tags; NewOAuthClient makes others), and checks scopes.
//
// testcontrol can do neither per-device keys nor deletion, so nodes do not
// talk to it directly: ControlURL is a front that ends each node's Noise
// session, checks registrations against the minted keys (rewriting them to
// the key testcontrol requires), cuts deleted devices out of every netmap
// and refuses their polls, and passes everything on to testcontrol over a
// Noise session of its own per node machine (see front.go). A deleted
// device is gone from the devices list and from its peers' netmaps at
// once, and is logged out; testcontrol still holds it (Control().AllNodes).
// The front also notes which devices hold a map poll open: the devices
// list's connectedToControl and lastSeen are real (though the peers'
// Online bit is not, below), and an ephemeral device that holds none for
// EphemeralTimeout is deleted, as Tailscale deletes ephemeral devices that
// went offline.
//
// # Online
//
// testcontrol does not track presence, so the lab sets its AllOnline: every
// peer reads as online, even one whose node is down. Reachability is
// decided by dialing, not by the Online bit.
//
// # Loopback only
//
// Start sets three process-wide tailscale knobs (via envknob, once, only
// when not already set) so that no tsnet node in this process reaches
// anything but loopback: TS_NO_LOGS_NO_SUPPORT (no log upload to
// log.tailscale.com), TS_DISABLE_PORTMAPPER (no UPnP/NAT-PMP/PCP probes of
// the LAN gateway) and TS_DEBUG_OMIT_LOCAL_ADDRS (nodes advertise only the
// 127.0.0.1 endpoint STUN reports, not their LAN addresses).
package tailnet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/envknob"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// DefaultMagicDNSDomain is the tailnet's MagicDNS suffix when Lab.MagicDNSDomain is empty.
const DefaultMagicDNSDomain = "nest-lab.ts.net"

// DefaultEphemeralTimeout is Lab.EphemeralTimeout when zero.
const DefaultEphemeralTimeout = time.Minute

// Lab is a tailnet in one process: control, DERP and STUN on 127.0.0.1.
// Set its fields before Start; the zero value is ready to use.
type Lab struct {
	// Logf, if set, receives the control server's and DERP's logs. Nil
	// discards them.
	Logf logger.Logf

	// MagicDNSDomain is the tailnet's DNS suffix; node "web" is
	// "web.<MagicDNSDomain>". Empty means DefaultMagicDNSDomain.
	MagicDNSDomain string

	// OpenRegistration, if true, lets any node join without an auth key
	// (any key, or none, is accepted). By default a node needs AuthKey().
	OpenRegistration bool

	// Tags are the tags nodes may move between after registration (the
	// testcontrol TagOwners model: each tag here is owned by all of them).
	// Tags requested at registration are always granted. They are also the
	// tags the tailnet policy defines for the API: auth keys may carry
	// only these, and the lab's OAuth client owns them all.
	Tags []string

	// EphemeralTimeout is how long an ephemeral device may be off control
	// (holding no map poll) before it is deleted, as Tailscale deletes
	// ephemeral devices that went offline. Zero means
	// DefaultEphemeralTimeout.
	EphemeralTimeout time.Duration

	// SSH are the tailnet policy's ssh rules (the "ssh" section of a
	// tailnet policy file): who may open Tailscale SSH sessions to whom,
	// as which users. Without any, nodes get no SSH policy and Tailscale
	// SSH lets nobody in.
	SSH []SSHRule

	mu       sync.Mutex
	started  bool
	closed   bool
	authKey  string
	control  *testcontrol.Server
	httpSrv  *httptest.Server
	front    *front
	frontSrv *httptest.Server
	api      *api
	apiSrv   *httptest.Server
	oauthID  string
	oauthKey string
	derp     *derpserver.Server
	derpSrv  *httptest.Server
	stunStop context.CancelFunc
	stunDone chan struct{}
	derpMap  *tailcfg.DERPMap
}

// Start starts the DERP relay, the STUN server and the control server, each
// on 127.0.0.1 with a port chosen by the kernel.
func (l *Lab) Start() (err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return errors.New("tailnet: lab already started")
	}
	l.started = true
	defer func() {
		if err != nil {
			l.closeLocked()
		}
	}()

	setLoopbackKnobs()

	logf := l.Logf
	if logf == nil {
		logf = logger.Discard
	}

	if !l.OpenRegistration {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("tailnet: auth key: %w", err)
		}
		l.authKey = "tskey-auth-lab-" + hex.EncodeToString(b[:])
	}

	if err := l.startDERPAndSTUN(logf); err != nil {
		return fmt.Errorf("tailnet: %w", err)
	}

	domain := l.MagicDNSDomain
	if domain == "" {
		domain = DefaultMagicDNSDomain
	}
	owners := make(map[string][]string, len(l.Tags))
	for _, tag := range l.Tags {
		owners[tag] = append([]string(nil), l.Tags...)
	}
	l.control = &testcontrol.Server{
		Logf:           logf,
		DERPMap:        l.derpMap,
		DNSConfig:      &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: domain,
		RequireAuthKey: l.authKey,
		TagOwners:      owners,
		AllOnline:      true,
	}
	if len(l.SSH) > 0 {
		// testcontrol sends a policy (and the SSH capability) only when it
		// has one; the front gives each node its own (front.sshPolicyFor).
		l.control.SSHPolicy = &tailcfg.SSHPolicy{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("tailnet: control listen: %w", err)
	}
	l.httpSrv = &httptest.Server{
		Listener: ln,
		Config:   &http.Server{Handler: l.control, ErrorLog: logger.StdLogger(logf)},
	}
	l.control.HTTPTestServer = l.httpSrv
	l.httpSrv.Start()
	return l.startFrontAndAPI(logf, domain)
}

// startFrontAndAPI starts the control front nodes talk to and the API
// stand-in, with its one OAuth client (scopes auth_keys and devices:core,
// owning every tag in Tags).
func (l *Lab) startFrontAndAPI(logf logger.Logf, domain string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys := newKeyStore(time.Now)
	f, err := newFront(ctx, logf, l.control, l.httpSrv.URL, l.authKey, keys)
	if err != nil {
		return fmt.Errorf("tailnet: control front: %w", err)
	}
	f.sshRules = l.SSH
	f.ephemeralTimeout = l.EphemeralTimeout
	if f.ephemeralTimeout <= 0 {
		f.ephemeralTimeout = DefaultEphemeralTimeout
	}
	l.front = f
	if l.frontSrv, err = listenAndServe(f, logf); err != nil {
		return fmt.Errorf("tailnet: control front: %w", err)
	}
	l.api = newAPI(f, keys, domain, l.Tags, time.Now)
	if l.apiSrv, err = listenAndServe(l.api, logf); err != nil {
		return fmt.Errorf("tailnet: API: %w", err)
	}
	l.oauthID, l.oauthKey = l.api.newOAuthClient([]string{ScopeAuthKeys, ScopeDevices}, l.Tags)
	return nil
}

// listenAndServe serves h over HTTP on 127.0.0.1.
func listenAndServe(h http.Handler, logf logger.Logf) (*httptest.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h, ErrorLog: logger.StdLogger(logf)}}
	srv.Start()
	return srv, nil
}

// startDERPAndSTUN mirrors integration.RunDERPAndSTUN: a DERP server over
// TLS (self-signed; the DERP map marks it InsecureForTests) and a STUN
// server, described as region 1 of the DERP map.
func (l *Lab) startDERPAndSTUN(logf logger.Logf) error {
	l.derp = derpserver.New(key.NewNode(), logf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("derp listen: %w", err)
	}
	l.derpSrv = &httptest.Server{
		Listener: ln,
		Config: &http.Server{
			Handler:      derpserver.Handler(l.derp),
			ErrorLog:     logger.StdLogger(logf),
			TLSNextProto: make(map[string]func(*http.Server, *tls.Conn, http.Handler)),
		},
	}
	l.derpSrv.StartTLS()

	ctx, cancel := context.WithCancel(context.Background())
	stun := stunserver.New(ctx)
	if err := stun.Listen("127.0.0.1:0"); err != nil {
		cancel()
		return fmt.Errorf("stun listen: %w", err)
	}
	l.stunStop = cancel
	l.stunDone = make(chan struct{})
	go func() {
		defer close(l.stunDone)
		stun.Serve()
	}()

	l.derpMap = &tailcfg.DERPMap{
		Regions: map[int]*tailcfg.DERPRegion{
			1: {
				RegionID:   1,
				RegionCode: "lab",
				RegionName: "nestbot lab",
				Nodes: []*tailcfg.DERPNode{{
					Name:             "1a",
					RegionID:         1,
					HostName:         "127.0.0.1",
					IPv4:             "127.0.0.1",
					IPv6:             "none",
					STUNPort:         stun.LocalAddr().(*net.UDPAddr).Port,
					DERPPort:         ln.Addr().(*net.TCPAddr).Port,
					InsecureForTests: true,
					STUNTestIP:       "127.0.0.1",
				}},
			},
		},
	}
	return nil
}

// SSHRule is one rule of a tailnet policy's ssh section, action accept:
// nodes tagged with any of Src may log in to nodes tagged with any of Dst
// as any of Users, as
//
//	{"action": "accept", "src": ["tag:nestbot"], "dst": ["tag:nest"], "users": ["root"]}
//
// says in a policy file.
//
// In Src, AutogroupMember stands for the tailnet's members' devices: the
// untagged nodes.
type SSHRule struct {
	Src, Dst, Users []string
}

// AutogroupMember, in an SSHRule's Src, is every untagged node.
const AutogroupMember = "autogroup:member"

// ControlURL is the control server's URL (tsnet.Server.ControlURL,
// `tailscale up --login-server`): the front, which passes what it admits
// on to testcontrol (see "The API and the control front").
func (l *Lab) ControlURL() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frontSrv == nil {
		return ""
	}
	return l.frontSrv.URL
}

// APIURL is the base URL of the lab's Tailscale API v2 stand-in, as
// https://api.tailscale.com is Tailscale's (tailscale.Client.BaseURL,
// TAILSCALE_BASE_URL).
func (l *Lab) APIURL() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.apiSrv == nil {
		return ""
	}
	return l.apiSrv.URL
}

// OAuthClient is the lab's OAuth client: scopes auth_keys and devices:core,
// owning every tag in Tags.
func (l *Lab) OAuthClient() (id, secret string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.oauthID, l.oauthKey
}

// NewOAuthClient adds an OAuth client with the given scopes, owning tags.
func (l *Lab) NewOAuthClient(scopes, tags []string) (id, secret string) {
	l.mu.Lock()
	a := l.api
	l.mu.Unlock()
	return a.newOAuthClient(scopes, tags)
}

// APIKey is the lab's API access token: full access, as a tailnet admin's.
func (l *Lab) APIKey() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.api == nil {
		return ""
	}
	return l.api.apiKey
}

// TailnetName is the tailnet's name in API paths (its MagicDNS domain);
// "-" names it too.
func (l *Lab) TailnetName() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.api == nil {
		return ""
	}
	return l.api.tailnet
}

// AuthKey is the tailnet's auth key; "" with OpenRegistration.
func (l *Lab) AuthKey() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.authKey
}

// DERPMap is the map the control server hands to nodes: one region, on
// loopback.
func (l *Lab) DERPMap() *tailcfg.DERPMap {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.derpMap.Clone()
}

// Control is the underlying test control server, for tests that need to
// look at or change what control knows (AllNodes, SetExpireAllNodes, …).
func (l *Lab) Control() *testcontrol.Server {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.control
}

// Close stops control, DERP and STUN. Nodes joined to the lab are the
// caller's to close (before or after).
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closeLocked()
	return nil
}

func (l *Lab) closeLocked() {
	l.closed = true
	if l.apiSrv != nil {
		l.apiSrv.CloseClientConnections()
		l.apiSrv.Close()
	}
	if l.front != nil {
		l.front.close()
	}
	if l.frontSrv != nil {
		l.frontSrv.CloseClientConnections()
		l.frontSrv.Close()
	}
	if l.httpSrv != nil {
		l.httpSrv.CloseClientConnections()
		l.httpSrv.Close()
	}
	if l.derpSrv != nil {
		l.derpSrv.CloseClientConnections()
		l.derpSrv.Close()
	}
	if l.derp != nil {
		l.derp.Close()
	}
	if l.stunStop != nil {
		l.stunStop()
		<-l.stunDone
	}
}

// loopbackKnobs keep every tsnet node in the process on loopback; see the
// package documentation.
var loopbackKnobs = [...][2]string{
	{"TS_NO_LOGS_NO_SUPPORT", "true"},
	{"TS_DISABLE_PORTMAPPER", "true"},
	{"TS_DEBUG_OMIT_LOCAL_ADDRS", "true"},
	// In a network namespace that has only lo, tailscale would otherwise
	// wait for a network that never comes (it exempts only test binaries).
	{"TS_ASSUME_NETWORK_UP_FOR_TEST", "true"},
}

// setLoopbackKnobs sets loopbackKnobs that are not already set. envknob
// writes the value tailscale's packages read without locking, so a knob is
// written only when it changes (never while a node is reading it, in
// practice: the first Start happens before the first node).
func setLoopbackKnobs() {
	for _, kv := range loopbackKnobs {
		if os.Getenv(kv[0]) != kv[1] {
			envknob.Setenv(kv[0], kv[1])
		}
	}
}
