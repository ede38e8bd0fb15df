package tailnet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
	tsapi "tailscale.com/client/tailscale/v2"
)

// DefaultAPIURL is Tailscale's API, APIConfig.BaseURL when empty.
const DefaultAPIURL = "https://api.tailscale.com"

// OAuthScopes are the OAuth scopes nestbot asks for, space-separated:
// minting auth keys, and listing and deleting devices. An OAuth client for
// nestbot needs both, and must own the fleet's tags.
const OAuthScopes = "auth_keys devices:core"

// DefaultKeyExpiry is how long a minted auth key is good for when
// KeyOptions.Expiry is zero: long enough for an instance to boot and join,
// short enough that a key left in user-data is soon worthless.
const DefaultKeyExpiry = time.Hour

// APIConfig says how to reach the Tailscale API v2 and as whom: an OAuth
// client (OAuthClientID and OAuthClientSecret), or an API access token
// (APIKey). With both, the OAuth client is used.
type APIConfig struct {
	// BaseURL is the API's URL; empty means DefaultAPIURL.
	BaseURL string
	// Tailnet names the tailnet in API paths; empty means "-", the
	// tailnet of the credentials.
	Tailnet string
	// OAuthClientID and OAuthClientSecret are an OAuth client's
	// credentials (scopes OAuthScopes).
	OAuthClientID     string
	OAuthClientSecret string
	// APIKey is an API access token (tskey-api-…).
	APIKey string
	// HTTPClient, if set, carries the requests (its Transport and
	// Timeout are used). Nil means a client with a one-minute timeout.
	HTTPClient *http.Client
}

// API is nestbot's use of the Tailscale API v2: auth keys for new hosts,
// the devices list, and deleting devices. Its errors never contain the
// OAuth client secret, the API key, an access token or an auth key.
type API struct {
	c       *tsapi.Client
	oauth   bool
	secrets []string // redacted from every error
}

// NewAPI checks cfg and returns an API client. It makes no request.
func NewAPI(cfg APIConfig) (*API, error) {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultAPIURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("tailscale api: base URL %q is not an http(s) URL; give e.g. %s", base, DefaultAPIURL)
	}
	a := &API{c: &tsapi.Client{BaseURL: u, Tailnet: cfg.Tailnet, UserAgent: "nestbot"}}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		a.c.HTTP = &hc
	} else {
		a.c.HTTP = &http.Client{Timeout: time.Minute}
	}
	switch {
	case cfg.OAuthClientID != "" || cfg.OAuthClientSecret != "":
		if cfg.OAuthClientID == "" || cfg.OAuthClientSecret == "" {
			return nil, errors.New("tailscale api: an OAuth client needs both its id and its secret")
		}
		a.oauth = true
		a.c.Auth = &tsapi.OAuth{ClientID: cfg.OAuthClientID, ClientSecret: cfg.OAuthClientSecret, Scopes: strings.Fields(OAuthScopes)}
		a.secrets = append(a.secrets, cfg.OAuthClientSecret)
	case cfg.APIKey != "":
		a.c.APIKey = cfg.APIKey
		a.secrets = append(a.secrets, cfg.APIKey)
	default:
		return nil, errNoCredentials
	}
	return a, nil
}

// KeyOptions shape a minted auth key. The zero value is right for a
// server: a one-off, pre-authorized, non-ephemeral key good for
// DefaultKeyExpiry.
type KeyOptions struct {
	// Fleet names the fleet in the key's description ("nestbot <fleet> <host>").
	Fleet string
	// Expiry is how long the key is good for; zero means DefaultKeyExpiry.
	Expiry time.Duration
	// Reusable lets the key register more than one device.
	Reusable bool
	// Ephemeral makes the devices it registers ephemeral.
	Ephemeral bool
}

// MintAuthKey mints an auth key for host: pre-authorized, tagged tags, and
// one-off unless opts say otherwise. An OAuth client can mint only tagged
// keys, for tags it owns.
func (a *API) MintAuthKey(ctx context.Context, host string, tags []string, opts KeyOptions) (string, error) {
	if host == "" {
		return "", errors.New("tailscale api: mint auth key: no host name")
	}
	for _, t := range tags {
		if !strings.HasPrefix(t, "tag:") || len(t) == len("tag:") {
			return "", fmt.Errorf("tailscale api: mint auth key for %s: tag %q is not tag:<name>", host, t)
		}
	}
	if a.oauth && len(tags) == 0 {
		return "", fmt.Errorf("tailscale api: mint auth key for %s: an OAuth client mints only tagged keys; set tailnet.tags in nest.yaml", host)
	}
	expiry := opts.Expiry
	if expiry == 0 {
		expiry = DefaultKeyExpiry
	}
	if expiry < time.Second {
		return "", fmt.Errorf("tailscale api: mint auth key for %s: expiry %s is under a second", host, expiry)
	}
	var req tsapi.CreateKeyRequest
	req.Capabilities.Devices.Create.Reusable = opts.Reusable
	req.Capabilities.Devices.Create.Ephemeral = opts.Ephemeral
	req.Capabilities.Devices.Create.Preauthorized = true
	req.Capabilities.Devices.Create.Tags = slices.Clone(tags)
	req.ExpirySeconds = int64(expiry / time.Second)
	req.Description = KeyDescription(opts.Fleet, host)
	k, err := a.c.Keys().CreateAuthKey(ctx, req)
	if err != nil {
		return "", fmt.Errorf("tailscale api: mint auth key for %s: %w", host, a.redact(err))
	}
	if k.Key == "" {
		return "", fmt.Errorf("tailscale api: mint auth key for %s: the API returned no key", host)
	}
	return k.Key, nil
}

// KeySource returns a function that mints a key per host (tagged tags,
// shaped by opts): what a cloud applier calls for each new instance's
// user-data.
func (a *API) KeySource(tags []string, opts KeyOptions) func(ctx context.Context, host string) (string, error) {
	return func(ctx context.Context, host string) (string, error) {
		return a.MintAuthKey(ctx, host, tags, opts)
	}
}

// KeyDescription is a minted key's description, "nestbot <fleet> <host>",
// in what the API allows: at most 50 letters, digits, hyphens and spaces.
func KeyDescription(fleet, host string) string {
	d := strings.Join(slices.DeleteFunc([]string{"nestbot", fleet, host}, func(s string) bool { return s == "" }), " ")
	d = strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, d)
	if len(d) > 50 {
		d = d[:50]
	}
	return d
}

// Device is one device of the tailnet as the API lists it.
type Device struct {
	ID        string    // the device id the API takes (nodeId)
	Name      string    // MagicDNS name, e.g. web.example.ts.net
	Hostname  string    // the machine's host name
	Tags      []string  // ACL tags
	Addresses []string  // tailnet addresses
	Online    bool      // connected to control
	LastSeen  time.Time // zero while connected
	Ephemeral bool
	Created   time.Time
}

// Label is the device's node name as the plan uses it: its host name, or
// else the first label of its MagicDNS name.
func (d Device) Label() string {
	if d.Hostname != "" {
		return d.Hostname
	}
	label, _, _ := strings.Cut(d.Name, ".")
	return label
}

// Devices lists the tailnet's devices, by name.
func (a *API) Devices(ctx context.Context) ([]Device, error) {
	devs, err := a.devices(ctx)
	if err != nil {
		return nil, fmt.Errorf("tailscale api: list devices: %w", err)
	}
	return devs, nil
}

func (a *API) devices(ctx context.Context) ([]Device, error) {
	ds, err := a.c.Devices().List(ctx)
	if err != nil {
		return nil, a.redact(err)
	}
	out := make([]Device, 0, len(ds))
	for _, d := range ds {
		id := d.NodeID
		if id == "" {
			id = d.ID
		}
		dev := Device{ID: id, Name: d.Name, Hostname: d.Hostname, Tags: d.Tags, Addresses: d.Addresses,
			Online: d.ConnectedToControl, Ephemeral: d.IsEphemeral, Created: d.Created.Time}
		if d.LastSeen != nil {
			dev.LastSeen = d.LastSeen.Time
		}
		out = append(out, dev)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteDevice deletes the device id from the tailnet: it is logged out
// and leaves every peer's netmap.
func (a *API) DeleteDevice(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("tailscale api: delete device: no device id")
	}
	if err := a.c.Devices().Delete(ctx, id); err != nil {
		return fmt.Errorf("tailscale api: delete device %s: %w", id, a.redact(err))
	}
	return nil
}

// RemoveStray deletes the devices named name (Device.Label) that carry at
// least one of the fleet's tags — what the plan calls a stray, and only
// that: an untagged device, or one tagged otherwise, is never touched. It
// returns the devices it deleted; none means the stray is gone already,
// which is not an error (apply is idempotent).
func (a *API) RemoveStray(ctx context.Context, name string, fleetTags []string) ([]Device, error) {
	if name == "" {
		return nil, errors.New("tailscale api: remove stray: no node name")
	}
	if len(fleetTags) == 0 {
		return nil, fmt.Errorf("tailscale api: remove stray %s: no fleet tags, so no device is nestbot's to remove; set tailnet.tags in nest.yaml", name)
	}
	devs, err := a.devices(ctx)
	if err != nil {
		return nil, fmt.Errorf("tailscale api: remove stray %s: list devices: %w", name, err)
	}
	var removed []Device
	for _, d := range devs {
		if d.Label() != name || !slices.ContainsFunc(d.Tags, func(t string) bool { return slices.Contains(fleetTags, t) }) {
			continue
		}
		if err := a.c.Devices().Delete(ctx, d.ID); err != nil && !tsapi.IsNotFound(err) {
			return removed, fmt.Errorf("tailscale api: remove stray %s: delete device %s: %w", name, d.ID, a.redact(err))
		}
		removed = append(removed, d)
	}
	return removed, nil
}

// tokenPattern matches Tailscale's secrets (auth keys, API access tokens,
// OAuth client secrets), in case an error quotes one nestbot never saw.
var tokenPattern = regexp.MustCompile(`tskey-[A-Za-z0-9_-]+`)

// redact turns an error from the API client into an *APIError whose text
// has every secret redacted: the configured secret, and anything shaped
// like a Tailscale key. The original error is not kept (its text could
// hold a secret); its HTTP status is.
func (a *API) redact(err error) error {
	e := &APIError{}
	var apiErr tsapi.APIError
	var tokenErr *oauth2.RetrieveError
	switch {
	case errors.As(err, &apiErr):
		e.StatusCode = apiErr.Status
	case errors.As(err, &tokenErr) && tokenErr.Response != nil:
		e.StatusCode = tokenErr.Response.StatusCode
		e.OAuth = true
	}
	msg := err.Error()
	for _, s := range a.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	e.msg = tokenPattern.ReplaceAllString(msg, "tskey-[redacted]")
	return e
}

// APIError is an error from the Tailscale API (or from reaching it), with
// secrets redacted. StatusCode is the HTTP status the API answered with (0
// if it did not answer); OAuth says it was the OAuth token endpoint that
// refused (wrong client id or secret, or a scope the client lacks).
type APIError struct {
	msg        string
	StatusCode int
	OAuth      bool
}

func (e *APIError) Error() string {
	if e.OAuth {
		return e.msg + " (the OAuth client was refused: check its id and secret, and that it has the scopes " + OAuthScopes + ")"
	}
	return e.msg
}
