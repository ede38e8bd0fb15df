// Package github is nestbot's client for GitHub's REST API: the sticky plan
// comment on a pull request, the nest/plan check run, reactions and replies
// to /nest commands, deployments for applies, and the drift issue.
//
// It wraps go-github. A Client authenticates either with a token (Actions'
// GITHUB_TOKEN, a personal access token) or as a GitHub App through
// ghinstallation, one Client per installation (Installation), whose
// installation tokens are minted, cached and refreshed by ghinstallation.
//
// Every call honours GitHub's rate limits: a request refused with
// Retry-After, or with x-ratelimit-remaining 0 and x-ratelimit-reset, is
// retried after the wait when that wait is short (Options.MaxRateLimitWait);
// otherwise the call fails at once with a *RateLimitedError that says when
// the limit resets. Writes (POST, PATCH, PUT, DELETE) of one installation
// are serialized with Options.WriteSpacing between them, as GitHub asks of
// requests that create content; reads run concurrently.
//
// Secrets never leave the package: no error or log line holds a token, an
// App's JSON Web Token or its private key, even when a server echoes one.
//
// Callers import it as nestgh.
package github

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	ghv88 "github.com/google/go-github/v88/github" // ghinstallation's
	gogithub "github.com/google/go-github/v93/github"
)

// DefaultBaseURL is GitHub's API, used when Options.BaseURL is empty.
const DefaultBaseURL = "https://api.github.com"

// Defaults of Options.
const (
	DefaultWriteSpacing     = time.Second
	DefaultMaxRateLimitWait = time.Minute
	DefaultRequestTimeout   = time.Minute
)

// Options configure New. Exactly one of Token and AppID (with PrivateKey)
// is set.
type Options struct {
	// BaseURL is the API's root: "" for api.github.com, else GitHub
	// Enterprise's (https://host/api/v3) or the lab's, as GITHUB_API_URL
	// gives it.
	BaseURL string

	// Token is a token: Actions' GITHUB_TOKEN or a personal access token.
	Token string

	// AppID and PrivateKey (PEM, as GitHub hands it out) authenticate as a
	// GitHub App; Installation gives a Client for one installation.
	AppID      int64
	PrivateKey []byte

	// Login is the bot's own login ("nestbot[bot]", "github-actions[bot]"):
	// sticky comments and the drift issue are looked for only among its
	// own. Empty: derived (see Client.Login), never any author's.
	Login string

	// WriteSpacing is the least time between two writes of one
	// installation; 0 means DefaultWriteSpacing, below 0 no spacing.
	WriteSpacing time.Duration

	// MaxRateLimitWait is the longest a call waits for a rate limit to
	// lift before it fails with a *RateLimitedError; 0 means
	// DefaultMaxRateLimitWait.
	MaxRateLimitWait time.Duration

	// RequestTimeout bounds each HTTP request; 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration

	// Logger receives a record per request (debug) and per rate-limit
	// wait (warn), every credential the Client has sent redacted; nil
	// discards.
	Logger *slog.Logger

	// Observe, when set, is called after every HTTP request with its
	// method, its route (the path as a template: /repos/{owner}/{repo}/...),
	// the status (0 when no response came) and the rate limit left (-1
	// when the response did not say).
	Observe func(method, route string, status, remaining int)

	// Transport is the HTTP transport under authentication; nil means a
	// clone of http.DefaultTransport.
	Transport http.RoundTripper
}

// Client talks to one GitHub API as one identity: a token, a GitHub App
// (only to find installations), or one installation of the App. It is safe
// for concurrent use.
type Client struct {
	opts     Options
	baseURL  string // without a trailing slash
	basePath string // the path of baseURL, without a trailing slash
	gh       *gogithub.Client
	secrets  *secrets
	tr       http.RoundTripper // metering transport, under authentication

	// App mode.
	apps      *ghinstallation.AppsTransport
	app       *Client                   // the App's own Client; nil on it
	install   *ghinstallation.Transport // nil on the App's own Client
	installID int64
	mu        sync.Mutex
	installs  map[int64]*Client // on the App's own Client
	loginMu   sync.Mutex
	login     string // the derived Login, on the root Client
	err       error  // why this Client cannot work, if it cannot

	gate   *writeGate
	sticky keyedMutex
}

// New returns a Client for a token or for a GitHub App.
func New(opts Options) (*Client, error) {
	app := opts.AppID != 0 || len(opts.PrivateKey) > 0
	switch {
	case app && opts.Token != "":
		return nil, errors.New("github: both a token and a GitHub App are configured: give either a token or the App's id and private key")
	case app && opts.AppID <= 0:
		return nil, errors.New("github: the GitHub App's private key is set but its id is not: set the App id (a positive number, on the App's settings page)")
	case app && len(opts.PrivateKey) == 0:
		return nil, fmt.Errorf("github: GitHub App %d has no private key: give the PEM file generated on the App's settings page", opts.AppID)
	case !app && opts.Token == "":
		return nil, errors.New("github: no credentials: give a token (GITHUB_TOKEN) or a GitHub App id and private key")
	}
	if opts.WriteSpacing == 0 {
		opts.WriteSpacing = DefaultWriteSpacing
	}
	if opts.MaxRateLimitWait <= 0 {
		opts.MaxRateLimitWait = DefaultMaxRateLimitWait
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("github: API URL %q is not an http(s) URL: give GitHub's API root, e.g. %s or https://host/api/v3", opts.BaseURL, DefaultBaseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("github: API URL %s must not carry credentials, a query or a fragment", redactURL(u))
	}
	under := opts.Transport
	if under == nil {
		under = http.DefaultTransport.(*http.Transport).Clone()
	}
	c := &Client{
		opts:     opts,
		baseURL:  base,
		basePath: strings.TrimRight(u.Path, "/"),
		secrets:  newSecrets(opts.Token),
	}
	c.tr = &meter{next: under, c: c}
	if !app {
		gh, err := c.newGoGitHub(nil, opts.Token)
		if err != nil {
			return nil, err
		}
		c.gh = gh
		c.gate = newWriteGate(opts.WriteSpacing)
		return c, nil
	}
	atr, err := ghinstallation.NewAppsTransport(c.tr, opts.AppID, opts.PrivateKey)
	if err != nil {
		// The key's bytes are never part of this error.
		return nil, fmt.Errorf("github: GitHub App %d: the private key is not an RSA key in PEM: %v; give the .pem file from the App's settings page", opts.AppID, errors.Unwrap(err))
	}
	atr.BaseURL = base
	c.apps = atr
	c.installs = map[int64]*Client{}
	gh, err := c.newGoGitHub(atr, "")
	if err != nil {
		return nil, err
	}
	c.gh = gh
	c.gate = newWriteGate(opts.WriteSpacing)
	return c, nil
}

func (c *Client) newGoGitHub(auth http.RoundTripper, token string) (*gogithub.Client, error) {
	tr := c.tr
	if auth != nil {
		tr = auth
	}
	api := c.baseURL + "/"
	opts := []gogithub.ClientOptionsFunc{
		gogithub.WithHTTPClient(&http.Client{Transport: tr, Timeout: c.opts.RequestTimeout}),
		gogithub.WithURLs(&api, &api),
		gogithub.WithUserAgent("nestbot"),
	}
	if token != "" {
		opts = append(opts, gogithub.WithAuthToken(token))
	}
	gh, err := gogithub.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("github: client for %s: %w", c.baseURL, err)
	}
	return gh, nil
}

// Installation returns a Client that acts as installation id of the GitHub
// App (the id comes with every webhook event), made once per id and kept;
// its installation tokens are minted and refreshed as needed. With a token,
// it returns c itself.
func (c *Client) Installation(id int64) *Client {
	if c.apps == nil || (c.install != nil && c.installID == id) {
		return c
	}
	root := c
	if c.app != nil {
		root = c.app
	}
	root.mu.Lock()
	defer root.mu.Unlock()
	if ic, ok := root.installs[id]; ok {
		return ic
	}
	itr := ghinstallation.NewFromAppsTransport(root.apps, id)
	itr.BaseURL = root.baseURL
	// Without options ghinstallation sends the body "null", which GitHub
	// takes but its OpenAPI description does not allow: send "{}".
	itr.InstallationTokenOptions = &ghv88.InstallationTokenOptions{}
	ic := &Client{
		opts:      root.opts,
		baseURL:   root.baseURL,
		basePath:  root.basePath,
		secrets:   root.secrets,
		tr:        root.tr,
		apps:      root.apps,
		app:       root,
		install:   itr,
		installID: id,
		gate:      newWriteGate(root.opts.WriteSpacing),
	}
	if id <= 0 {
		ic.err = fmt.Errorf("installation id %d is not valid: take it from the event's installation.id", id)
	}
	gh, err := ic.newGoGitHub(itr, "")
	ic.gh = gh
	if ic.err == nil {
		ic.err = err
	}
	root.installs[id] = ic
	return ic
}

// GitToken returns a token for git over HTTPS (user x-access-token): the
// token itself, or the installation's current token.
func (c *Client) GitToken(ctx context.Context) (string, error) {
	switch {
	case c.apps == nil:
		return c.opts.Token, nil
	case c.install == nil:
		return "", errors.New("github: a git token needs an installation of the GitHub App: call Installation(id) with the installation id from the event")
	}
	tok, err := c.install.Token(ctx)
	if err != nil {
		return "", c.wrap(fmt.Sprintf("github: installation token for installation %d", c.installID), err)
	}
	c.secrets.add(tok)
	return tok, nil
}

// InstallationID is the installation this Client acts as; 0 with a token
// or for the App itself.
func (c *Client) InstallationID() int64 { return c.installID }

// RepoInstallation returns the id of the App's installation on r, for work
// that starts without an event (the scheduled drift check). Only the App's
// own Client (from New, with AppID) can ask.
func (c *Client) RepoInstallation(ctx context.Context, r Repo) (int64, error) {
	op := "github: find the App's installation on " + r.FullName()
	if c.apps == nil {
		return 0, fmt.Errorf("%s: only a GitHub App has installations; with a token, use the Client as it is", op)
	}
	app := c
	if c.app != nil {
		app = c.app
	}
	var inst *gogithub.Installation
	err := app.call(ctx, op, false, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		inst, resp, err = app.gh.Apps.GetRepositoryInstallation(ctx, r.Owner, r.Name)
		return resp, err
	})
	if err != nil {
		if isStatus(err, http.StatusNotFound) {
			return 0, fmt.Errorf("%s: the App is not installed there: install it on the repository", op)
		}
		return 0, err
	}
	return inst.GetID(), nil
}

// Repo names a repository.
type Repo struct{ Owner, Name string }

// FullName is "owner/name".
func (r Repo) FullName() string { return r.Owner + "/" + r.Name }

func (r Repo) String() string { return r.FullName() }

// ParseRepo reads "owner/name", as GITHUB_REPOSITORY and events give it.
func ParseRepo(s string) (Repo, error) {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || owner == "" || name == "" || strings.ContainsAny(name, "/ ") || strings.ContainsAny(owner, " ") {
		return Repo{}, fmt.Errorf("github: repository %q is not owner/name (e.g. ducksnest/infra)", s)
	}
	return Repo{Owner: owner, Name: name}, nil
}

// ready says why c cannot call the repository API, if it cannot.
func (c *Client) ready() error {
	if c.err != nil {
		return c.err
	}
	if c.apps != nil && c.install == nil {
		return errors.New("a GitHub App acts on a repository only as one of its installations: call Installation(id) with the installation id from the event")
	}
	return nil
}
