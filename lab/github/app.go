package github

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// app is a GitHub App: the lab's (nestbot) or github-actions, whose
// installation token is the Actions GITHUB_TOKEN.
type app struct {
	id             int64
	slug           string
	name           string
	clientID       string
	key            *rsa.PrivateKey // nil for github-actions: nobody signs as it
	installationID int64
	ownerLogin     string
	created        time.Time
	limit          int
	jwt            *token // the principal of requests signed with the App's JWT
}

func (a *app) botLogin() string { return a.slug + "[bot]" }

func newApp(cfg Config) (*app, error) {
	a := &app{id: cfg.AppID, slug: cfg.AppSlug, key: cfg.AppKey, installationID: cfg.InstallationID,
		ownerLogin: "nestbot-lab", created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), limit: cfg.RateLimit}
	if a.id == 0 {
		a.id = DefaultAppID
	}
	if a.slug == "" {
		a.slug = DefaultAppSlug
	}
	if a.installationID == 0 {
		a.installationID = DefaultInstallationID
	}
	if a.limit == 0 {
		a.limit = DefaultRateLimit
	}
	a.name = a.slug
	a.clientID = "Iv23lab" + strconv.FormatInt(a.id, 10)
	if a.key == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("labgithub.New: make the App's key: %w", err)
		}
		a.key = k
	}
	return a, nil
}

func actionsApp() *app {
	return &app{id: 15368, slug: "github-actions", name: "GitHub Actions", clientID: "Iv1.actions",
		installationID: 1, ownerLogin: "github", created: time.Date(2018, 7, 30, 9, 30, 17, 0, time.UTC), limit: 1000}
}

// App is the lab's GitHub App, as nestbot is configured with it.
type App struct {
	ID             int64
	Slug           string
	ClientID       string
	InstallationID int64  // one installation, on every repository
	BotLogin       string // the user its installation tokens act as: "<slug>[bot]"
	PrivateKeyPEM  []byte // PKCS#1 "RSA PRIVATE KEY", as GitHub hands it out; a lab key
}

// App returns the lab's App and its private key.
func (s *Server) App() App {
	der := x509.MarshalPKCS1PrivateKey(s.app.key)
	return App{
		ID: s.app.id, Slug: s.app.slug, ClientID: s.app.clientID, InstallationID: s.app.installationID,
		BotLogin:      s.app.botLogin(),
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}),
	}
}

// InstallationToken mints an installation token of the lab's App, as
// POST /app/installations/{id}/access_tokens would: it acts as BotLogin
// and expires in an hour.
func (s *Server) InstallationToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, _ := s.mintLocked(s.app)
	return tok
}

// ActionsToken mints a GITHUB_TOKEN as a GitHub Actions job gets it: an
// installation token of the github-actions App, acting as
// github-actions[bot], with 1000 requests an hour.
func (s *Server) ActionsToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, _ := s.mintLocked(s.action)
	return tok
}

// Token mints a personal access token acting as login (created if need
// be). It does not expire.
func (s *Server) Token(login string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := s.newToken("ghp_", "")
	s.st.tokens[tok] = &token{user: s.userLocked(login), limit: s.app.limit}
	return tok
}

func (s *Server) mintLocked(a *app) (string, time.Time) {
	tok := s.newToken("ghs_", "v1.")
	exp := s.now().Add(time.Hour)
	s.st.tokens[tok] = &token{user: s.userLocked(a.botLogin()), app: a, expires: exp, limit: a.limit}
	return tok, exp
}

// newToken is a new token with GitHub's prefix, or as a legacy token
// (Config.LegacyTokens): 40 hex digits after legacyPrefix.
func (s *Server) newToken(prefix, legacyPrefix string) string {
	if s.cfg.LegacyTokens {
		b := make([]byte, 20)
		_, _ = rand.Read(b) // never fails: crypto/rand crashes the program instead
		return legacyPrefix + hex.EncodeToString(b)
	}
	return prefix + randomToken()
}

func randomToken() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 36)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

// jwtOperations are the operations that take the App's JWT, and only it.
func jwtOperation(op string) bool {
	return op == "apps/create-installation-access-token" || op == "apps/get-repo-installation" || op == "apps/get-authenticated"
}

// authenticate finds who sent r. It answers a status and GitHub's message
// when the credentials do not do for op. Nothing secret goes into the
// message.
func (s *Server) authenticate(r *http.Request, op string) (*token, int, string) {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	if cred == "" {
		if op == "rate-limit/get" {
			return nil, 0, ""
		}
		if jwtOperation(op) {
			return nil, http.StatusUnauthorized, "A JSON web token could not be decoded"
		}
		return nil, http.StatusUnauthorized, "Requires authentication"
	}
	if !strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token") {
		return nil, http.StatusUnauthorized, "Bad credentials"
	}
	if jwtOperation(op) {
		if refusal := s.app.verifyJWT(cred, time.Now()); refusal != "" {
			return nil, http.StatusUnauthorized, refusal
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.app.jwt == nil {
			s.app.jwt = &token{user: s.userLocked(s.app.botLogin()), app: s.app, limit: s.app.limit}
		}
		return s.app.jwt, 0, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.st.tokens[cred]
	if !ok || (!t.expires.IsZero() && !s.now().Before(t.expires)) {
		if strings.Count(cred, ".") == 2 {
			return nil, http.StatusUnauthorized, "A JSON web token is not accepted here; use an installation token"
		}
		return nil, http.StatusUnauthorized, "Bad credentials"
	}
	return t, 0, ""
}

// verifyJWT checks an App JWT as GitHub does: RS256 signed with the App's
// key, iss the App's id (or client id), iat not in the future, exp in the
// future and at most ten minutes away. It returns GitHub's message for a
// JWT it refuses, "" for one it takes.
func (a *app) verifyJWT(tok string, now time.Time) (refusal string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "A JSON web token could not be decoded"
	}
	var header struct {
		Alg string `json:"alg"`
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &header) != nil {
		return "A JSON web token could not be decoded"
	}
	if header.Alg != "RS256" {
		return "'Algorithm' header must be RS256"
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "A JSON web token could not be decoded"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&a.key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return "A JSON web token could not be decoded"
	}
	var claims struct {
		Iss any      `json:"iss"`
		Iat *float64 `json:"iat"`
		Exp *float64 `json:"exp"`
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(cb, &claims) != nil {
		return "A JSON web token could not be decoded"
	}
	var iss string
	switch v := claims.Iss.(type) {
	case string:
		iss = v
	case float64:
		iss = strconv.FormatFloat(v, 'f', -1, 64)
	}
	if iss != strconv.FormatInt(a.id, 10) && iss != a.clientID {
		return "Integration not found"
	}
	const skew = 60 * time.Second
	if claims.Iat == nil || *claims.Iat != float64(int64(*claims.Iat)) {
		return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	}
	if time.Unix(int64(*claims.Iat), 0).After(now.Add(skew)) {
		return "'Issued at' claim ('iat') must be an Integer representing a time in the past"
	}
	if claims.Exp == nil || *claims.Exp != float64(int64(*claims.Exp)) {
		return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	}
	exp := time.Unix(int64(*claims.Exp), 0)
	if !exp.After(now) {
		return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	}
	if exp.After(now.Add(10*time.Minute + skew)) {
		return "'Expiration time' claim ('exp') is too far in the future"
	}
	return ""
}

// spend counts one request against who's hourly limit and says whether
// the limit was already used up.
func (s *Server) spend(who *token) (exceeded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if who.reset.IsZero() || !now.Before(who.reset) {
		who.used, who.reset = 0, now.Add(time.Hour)
	}
	if who.used >= who.limit {
		return true
	}
	who.used++
	return false
}

// rateHeaders sets GitHub's x-ratelimit-* headers for who (the
// unauthenticated limit, 60, for nobody), unless already set.
func (s *Server) rateHeaders(h http.Header, who *token) {
	if h.Get("X-RateLimit-Remaining") != "" {
		return
	}
	limit, used := 60, 0
	reset := s.now().Add(time.Hour)
	if who != nil {
		s.mu.Lock()
		limit, used = who.limit, who.used
		if !who.reset.IsZero() {
			reset = who.reset
		}
		s.mu.Unlock()
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(0, limit-used)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Resource", "core")
}

// rateLimitJSON is one rate-limit resource for GET /rate_limit.
func (s *Server) rateLimitJSON(who *token, core bool) map[string]any {
	limit, used := 60, 0
	reset := s.now().Add(time.Hour)
	if who != nil {
		limit = who.limit
		if core {
			used = who.used
			if !who.reset.IsZero() && s.now().Before(who.reset) {
				reset = who.reset
			} else {
				used = 0
			}
		}
	}
	if !core {
		limit = 30
	}
	return map[string]any{"limit": limit, "remaining": max(0, limit-used), "reset": reset.Unix(), "used": used, "resource": "core"}
}

func getRateLimit(s *Server, c *call) reply {
	core := s.rateLimitJSON(c.who, true)
	search := s.rateLimitJSON(c.who, false)
	search["resource"] = "search"
	return reply{status: http.StatusOK, body: map[string]any{
		"resources": map[string]any{"core": core, "search": search},
		"rate":      core,
	}}
}

func createInstallationToken(s *Server, c *call) reply {
	if c.params["installation_id"] != strconv.FormatInt(s.app.installationID, 10) {
		return notFound()
	}
	tok, exp := s.mintLocked(s.app)
	return reply{status: http.StatusCreated, body: map[string]any{
		"token":                tok,
		"expires_at":           exp.Format(time.RFC3339),
		"permissions":          s.app.permissions(),
		"repository_selection": "all",
	}}
}

func getRepoInstallation(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	return reply{status: http.StatusOK, body: s.installationJSON(r.owner)}
}

// getAuthenticatedApp is GET /app: the App its JWT is of.
func getAuthenticatedApp(s *Server, c *call) reply {
	return reply{status: http.StatusOK, body: s.appJSON(s.app)}
}

// getAuthenticatedUser is GET /user: the user a personal access token acts
// as. An installation token (the App's, Actions' GITHUB_TOKEN) is refused,
// as GitHub refuses it.
func getAuthenticatedUser(s *Server, c *call) reply {
	if c.who.app != nil {
		return errReply(http.StatusForbidden, "Resource not accessible by integration")
	}
	u := s.userJSON(c.who.user)
	for _, k := range []string{"name", "company", "blog", "location", "email", "hireable", "bio"} {
		u[k] = nil
	}
	for _, k := range []string{"public_repos", "public_gists", "followers", "following"} {
		u[k] = 0
	}
	u["created_at"], u["updated_at"] = "2008-01-14T04:33:35Z", "2008-01-14T04:33:35Z" // as GitHub's own example

	return reply{status: http.StatusOK, body: u}
}

func (a *app) permissions() map[string]any {
	if a.slug == "github-actions" {
		return map[string]any{"actions": "write", "checks": "write", "contents": "write", "deployments": "write",
			"issues": "write", "metadata": "read", "pull_requests": "write", "statuses": "write"}
	}
	return map[string]any{"checks": "write", "contents": "write", "deployments": "write", "issues": "write",
		"metadata": "read", "pull_requests": "write", "statuses": "read"}
}

func (a *app) events() []string {
	return []string{"check_run", "issue_comment", "pull_request", "pull_request_review", "push"}
}

func (s *Server) installationJSON(account *user) map[string]any {
	a := s.app
	id := strconv.FormatInt(a.installationID, 10)
	return map[string]any{
		"id":                   a.installationID,
		"account":              s.userJSON(account),
		"repository_selection": "all",
		"access_tokens_url":    s.api("app/installations/" + id + "/access_tokens"),
		"repositories_url":     s.api("installation/repositories"),
		"html_url":             s.web + "/settings/installations/" + id,
		"app_id":               a.id,
		"app_slug":             a.slug,
		"client_id":            a.clientID,
		"target_id":            account.id,
		"target_type":          account.kind,
		"permissions":          a.permissions(),
		"events":               a.events(),
		"created_at":           ts(a.created),
		"updated_at":           ts(a.created),
		"single_file_name":     nil,
		"suspended_by":         nil,
		"suspended_at":         nil,
	}
}
