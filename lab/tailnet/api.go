package tailnet

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"tailscale.com/tailcfg"
)

// Scopes the lab's API knows, as Tailscale names them.
const (
	ScopeAuthKeys     = "auth_keys"
	ScopeAuthKeysRead = "auth_keys:read"
	ScopeDevices      = "devices:core"
	ScopeDevicesRead  = "devices:core:read"
	ScopeAll          = "all"
	ScopeAllRead      = "all:read"
)

// Access tokens minted by the OAuth token endpoint last an hour, as
// Tailscale's do; auth keys default to 90 days, and may not last longer.
const (
	accessTokenLifetime = time.Hour
	maxKeyExpiry        = 90 * 24 * time.Hour
)

// api is the lab's stand-in for the Tailscale API v2 (api.tailscale.com):
// the endpoints nestbot uses, in the shapes Tailscale's API returns, behind
// the same authentication — an API access token (Bearer or Basic), or an
// OAuth client trading its secret for an hour-long access token with
// scopes.
//
//	POST   /api/v2/oauth/token                  client_credentials
//	POST   /api/v2/tailnet/{tailnet}/keys       mint an auth key (scope auth_keys)
//	GET    /api/v2/tailnet/{tailnet}/devices    list devices (devices:core:read)
//	GET    /api/v2/device/{id}                  one device (devices:core:read)
//	DELETE /api/v2/device/{id}                  delete a device (devices:core)
//
// {tailnet} is "-" or the lab's tailnet name (its MagicDNS domain). Any
// other path is a 404 that names what the lab does not implement.
type api struct {
	front   *front
	keys    *keyStore
	tailnet string
	tags    []string // tags defined in the tailnet's policy (Lab.Tags)
	apiKey  string
	now     func() time.Time
	mux     *http.ServeMux

	mu      sync.Mutex
	clients map[string]*oauthClient // by id
	tokens  map[string]*accessToken // by token
}

type oauthClient struct {
	secret string
	scopes []string
	tags   []string
}

type accessToken struct {
	scopes  []string // nil: an API access token, full access
	tags    []string // an OAuth token's tags
	oauth   bool
	expires time.Time
}

func newAPI(f *front, keys *keyStore, tailnet string, tags []string, now func() time.Time) *api {
	a := &api{front: f, keys: keys, tailnet: tailnet, tags: slices.Clone(tags), now: now,
		apiKey:  "tskey-api-" + randomID() + "-" + randomText(32),
		clients: map[string]*oauthClient{}, tokens: map[string]*accessToken{}}
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("POST /api/v2/oauth/token", a.serveToken)
	a.mux.HandleFunc("POST /api/v2/tailnet/{tailnet}/keys", a.authed(ScopeAuthKeys, a.serveCreateKey))
	a.mux.HandleFunc("GET /api/v2/tailnet/{tailnet}/devices", a.authed(ScopeDevicesRead, a.serveDevices))
	a.mux.HandleFunc("GET /api/v2/device/{id}", a.authed(ScopeDevicesRead, a.serveDevice))
	a.mux.HandleFunc("DELETE /api/v2/device/{id}", a.authed(ScopeDevices, a.serveDeleteDevice))
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, fmt.Sprintf("the lab's Tailscale API does not implement %s %s", r.Method, r.URL.Path))
	})
	return a
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// newOAuthClient adds an OAuth client with scopes and tags.
func (a *api) newOAuthClient(scopes, tags []string) (id, secret string) {
	id = randomID()
	secret = "tskey-client-" + id + "-" + randomText(32)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clients[id] = &oauthClient{secret: secret, scopes: slices.Clone(scopes), tags: slices.Clone(tags)}
	return id, secret
}

// apiError writes the API's error shape: {"message": "..."}.
func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

// oauthError writes RFC 6749's error shape, as the token endpoint does.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// serveToken is the OAuth token endpoint (client credentials grant). The
// client authenticates with HTTP Basic or with client_id/client_secret in
// the form, as RFC 6749 allows both.
func (a *api) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q: only client_credentials is supported", gt))
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.clients[id]
	if c == nil || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	scopes := c.scopes
	if s := strings.Fields(r.PostForm.Get("scope")); len(s) > 0 {
		for _, want := range s {
			if !scopeGrants(c.scopes, want) {
				oauthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not granted to this client", want))
				return
			}
		}
		scopes = s
	}
	tok := "tskey-api-" + randomID() + "-" + randomText(32)
	a.tokens[tok] = &accessToken{scopes: slices.Clone(scopes), tags: slices.Clone(c.tags), oauth: true, expires: a.now().Add(accessTokenLifetime)}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(accessTokenLifetime.Seconds()),
		"scope":        strings.Join(scopes, " "),
	})
}

// scopeGrants reports whether holding have allows what want needs.
func scopeGrants(have []string, want string) bool {
	for _, h := range have {
		switch {
		case h == want, h == ScopeAll,
			h == ScopeAllRead && strings.HasSuffix(want, ":read"),
			strings.TrimSuffix(want, ":read") == h:
			return true
		}
	}
	return false
}

// authed checks the caller's token, its scope, and the tailnet in the path.
func (a *api) authed(scope string, h func(http.ResponseWriter, *http.Request, *accessToken)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := ""
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = v
		} else if u, _, ok := r.BasicAuth(); ok {
			tok = u
		}
		t := a.token(tok)
		if t == nil {
			apiError(w, http.StatusUnauthorized, "API token invalid")
			return
		}
		if t.scopes != nil && !scopeGrants(t.scopes, scope) {
			apiError(w, http.StatusForbidden, fmt.Sprintf("calling actor does not have enough permissions to perform this function: needs scope %s", scope))
			return
		}
		if tn := r.PathValue("tailnet"); tn != "" && tn != "-" && tn != a.tailnet {
			apiError(w, http.StatusNotFound, fmt.Sprintf("tailnet %q not found (this lab's is %q, or use \"-\")", tn, a.tailnet))
			return
		}
		h(w, r, t)
	}
}

func (a *api) token(tok string) *accessToken {
	if tok == "" {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(a.apiKey)) == 1 {
		return &accessToken{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.tokens[tok]
	if t == nil || !a.now().Before(t.expires) {
		return nil
	}
	return t
}

// createKeyRequest is the body of POST /api/v2/tailnet/{tailnet}/keys.
type createKeyRequest struct {
	KeyType      string `json:"keyType"`
	Capabilities struct {
		Devices struct {
			Create struct {
				Reusable      bool     `json:"reusable"`
				Ephemeral     bool     `json:"ephemeral"`
				Preauthorized bool     `json:"preauthorized"`
				Tags          []string `json:"tags"`
			} `json:"create"`
		} `json:"devices"`
	} `json:"capabilities"`
	ExpirySeconds int64  `json:"expirySeconds"`
	Description   string `json:"description"`
}

func (a *api) serveCreateKey(w http.ResponseWriter, r *http.Request, t *accessToken) {
	var req createKeyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return
	}
	if req.KeyType != "" && req.KeyType != "auth" {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("keyType %q: the lab mints only auth keys", req.KeyType))
		return
	}
	if err := checkDescription(req.Description); err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	expiry := time.Duration(req.ExpirySeconds) * time.Second
	switch {
	case req.ExpirySeconds < 0:
		apiError(w, http.StatusBadRequest, "expirySeconds must not be negative")
		return
	case expiry > maxKeyExpiry:
		apiError(w, http.StatusBadRequest, fmt.Sprintf("expirySeconds %d is more than the maximum of %d (90 days)", req.ExpirySeconds, int(maxKeyExpiry.Seconds())))
		return
	case expiry == 0:
		expiry = maxKeyExpiry
	}
	c := req.Capabilities.Devices.Create
	if t.oauth && len(c.Tags) == 0 {
		apiError(w, http.StatusBadRequest, "an auth key created with an OAuth access token must have tags")
		return
	}
	for _, tag := range c.Tags {
		switch {
		case !strings.HasPrefix(tag, "tag:"):
			apiError(w, http.StatusBadRequest, fmt.Sprintf("tag %q is invalid: tags start with tag:", tag))
			return
		case !slices.Contains(a.tags, tag):
			apiError(w, http.StatusBadRequest, fmt.Sprintf("requested tags [%s] are invalid or not permitted: %s is not defined in the tailnet policy's tagOwners", tag, tag))
			return
		case t.oauth && !slices.Contains(t.tags, tag):
			apiError(w, http.StatusBadRequest, fmt.Sprintf("requested tags [%s] are invalid or not permitted: the OAuth client does not own %s", tag, tag))
			return
		}
	}
	now := a.now().UTC().Truncate(time.Second)
	k := a.keys.mint(authKey{Description: req.Description, Reusable: c.Reusable, Ephemeral: c.Ephemeral,
		Preauthorized: c.Preauthorized, Tags: c.Tags, Created: now, Expires: now.Add(expiry)})
	writeJSON(w, http.StatusOK, keyJSON(k, expiry))
}

// keyJSON is a key in the API's shape.
func keyJSON(k authKey, expiry time.Duration) map[string]any {
	create := map[string]any{"reusable": k.Reusable, "ephemeral": k.Ephemeral, "preauthorized": k.Preauthorized, "tags": nonNil(k.Tags)}
	return map[string]any{
		"id":            k.ID,
		"key":           k.Secret,
		"keyType":       "auth",
		"description":   k.Description,
		"created":       k.Created,
		"expires":       k.Expires,
		"expirySeconds": int64(expiry.Seconds()),
		"invalid":       false,
		"capabilities":  map[string]any{"devices": map[string]any{"create": create}},
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *api) serveDevices(w http.ResponseWriter, r *http.Request, _ *accessToken) {
	all := r.URL.Query().Get("fields") == "all"
	out := []map[string]any{}
	for _, d := range a.front.devices() {
		out = append(out, deviceJSON(d, all))
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (a *api) serveDevice(w http.ResponseWriter, r *http.Request, _ *accessToken) {
	id := r.PathValue("id")
	for _, d := range a.front.devices() {
		if string(d.node.StableID) == id || strconv.FormatInt(int64(d.node.ID), 10) == id {
			writeJSON(w, http.StatusOK, deviceJSON(d, r.URL.Query().Get("fields") == "all"))
			return
		}
	}
	apiError(w, http.StatusNotFound, "device not found")
}

func (a *api) serveDeleteDevice(w http.ResponseWriter, r *http.Request, _ *accessToken) {
	if err := a.front.deleteDevice(r.PathValue("id")); err != nil {
		apiError(w, http.StatusNotFound, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

// deviceJSON is a device in the API's shape (GET .../devices). lastSeen is
// absent while the device is connected to control, as Tailscale's is.
func deviceJSON(d device, all bool) map[string]any {
	n, hi := d.node, d.node.Hostinfo
	if !hi.Valid() {
		hi = (&tailcfg.Hostinfo{}).View()
	}
	var addrs []string
	for _, p := range n.Addresses {
		addrs = append(addrs, p.Addr().String())
	}
	user := ""
	if len(n.Tags) == 0 {
		user = fmt.Sprintf("user-%d@fake-control.example.net", n.User) // testcontrol's login names
	}
	machineKey := ""
	if !d.state.machine.IsZero() {
		machineKey = d.state.machine.String()
	}
	connected := d.state.streams > 0
	m := map[string]any{
		"id":                        strconv.FormatInt(int64(n.ID), 10),
		"nodeId":                    string(n.StableID),
		"name":                      strings.TrimSuffix(n.Name, "."),
		"hostname":                  hi.Hostname(),
		"addresses":                 nonNil(addrs),
		"user":                      user,
		"tags":                      nonNil(n.Tags),
		"authorized":                n.MachineAuthorized,
		"isEphemeral":               d.state.ephemeral,
		"isExternal":                false,
		"keyExpiryDisabled":         n.KeyExpiry.IsZero(),
		"expires":                   n.KeyExpiry.UTC(),
		"created":                   d.state.created.UTC(),
		"connectedToControl":        connected,
		"clientVersion":             hi.IPNVersion(),
		"os":                        hi.OS(),
		"machineKey":                machineKey,
		"nodeKey":                   n.Key.String(),
		"blocksIncomingConnections": hi.ShieldsUp(),
		"updateAvailable":           false,
		"tailnetLockKey":            "",
		"tailnetLockError":          "",
	}
	if d.state.created.IsZero() {
		m["created"] = ""
	}
	if !connected {
		seen := d.state.lastSeen
		if seen.IsZero() {
			seen = d.state.created
		}
		if !seen.IsZero() {
			m["lastSeen"] = seen.UTC()
		}
	}
	if all {
		var routes []string
		for _, p := range n.PrimaryRoutes {
			routes = append(routes, p.String())
		}
		m["advertisedRoutes"] = nonNil(routesOf(hi.RoutableIPs().AsSlice()))
		m["enabledRoutes"] = nonNil(routes)
		m["sshEnabled"] = hi.TailscaleSSHEnabled()
		m["clientConnectivity"] = map[string]any{"endpoints": nonNil(endpointsOf(n)), "derp": derpOf(n)}
	}
	return m
}

func routesOf(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func endpointsOf(n *tailcfg.Node) []string {
	var out []string
	for _, ap := range n.Endpoints {
		out = append(out, ap.String())
	}
	return out
}

func derpOf(n *tailcfg.Node) string {
	if n.HomeDERP == 0 {
		return ""
	}
	return fmt.Sprintf("%d", n.HomeDERP)
}
