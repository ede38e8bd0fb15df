package tailnet

import (
	"errors"
	"fmt"

	"github.com/ducksnest/nestbot/nest"
)

// The environment variables APIConfigFromEnv reads: Tailscale's own
// names, as its Terraform provider reads them. Each secret may instead be
// in a file named by <NAME>_FILE.
const (
	EnvAPIURL            = "TAILSCALE_BASE_URL"
	EnvTailnet           = "TAILSCALE_TAILNET"
	EnvOAuthClientID     = "TAILSCALE_OAUTH_CLIENT_ID"
	EnvOAuthClientSecret = "TAILSCALE_OAUTH_CLIENT_SECRET"
	EnvAPIKey            = "TAILSCALE_API_KEY"
)

// APIConfigFromEnv reads an APIConfig from the environment (EnvAPIURL and
// the rest). Variables not set leave their fields empty: check
// HasCredentials before NewAPI to tell "not configured" from a mistake.
// Errors name variables, never values.
func APIConfigFromEnv(getenv func(string) string) (APIConfig, error) {
	cfg := APIConfig{
		BaseURL:       getenv(EnvAPIURL),
		Tailnet:       getenv(EnvTailnet),
		OAuthClientID: getenv(EnvOAuthClientID),
	}
	var err error
	if cfg.OAuthClientSecret, err = optionalSecret(getenv, EnvOAuthClientSecret); err != nil {
		return APIConfig{}, err
	}
	if cfg.APIKey, err = optionalSecret(getenv, EnvAPIKey); err != nil {
		return APIConfig{}, err
	}
	if (cfg.OAuthClientID == "") != (cfg.OAuthClientSecret == "") {
		return APIConfig{}, fmt.Errorf("tailscale api: set both %s and %s (or %s_FILE), or neither", EnvOAuthClientID, EnvOAuthClientSecret, EnvOAuthClientSecret)
	}
	return cfg, nil
}

// optionalSecret reads name, or the file name_FILE names; "" if neither is set.
func optionalSecret(getenv func(string) string, name string) (string, error) {
	if getenv(name) == "" && getenv(name+"_FILE") == "" {
		return "", nil
	}
	v, err := nest.SecretRef{Env: name}.Resolve(getenv, "") // the operator's environment
	if err != nil {
		return "", fmt.Errorf("tailscale api: %w", err)
	}
	return v, nil
}

// HasCredentials reports whether c names an OAuth client or an API key.
func (c APIConfig) HasCredentials() bool {
	return c.OAuthClientID != "" || c.OAuthClientSecret != "" || c.APIKey != ""
}

// errNoCredentials is NewAPI's error when c has none.
var errNoCredentials = errors.New("tailscale api: no credentials: give an OAuth client (" + EnvOAuthClientID + " and " + EnvOAuthClientSecret + ", or tailnet.oauth in nest.yaml) or an API access token (" + EnvAPIKey + ")")
