package github

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/logs/logstest"
)

// testKey is a fresh RS256 key, in PEM.
func testKey(t *testing.T) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// appClient is an App-mode Client of the lab's App, through w's front.
func appClient(t *testing.T, w *world) (*Client, *logstest.Log) {
	t.Helper()
	app := w.srv.App()
	logger, logs := logstest.New(t)
	c, err := New(Options{BaseURL: w.url, AppID: app.ID, PrivateKey: app.PrivateKeyPEM, Login: app.BotLogin,
		WriteSpacing: time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

func TestNewRefusesBadOptions(t *testing.T) {
	key := testKey(t)
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"nothing":        {Options{}, "no credentials"},
		"both":           {Options{Token: "t", AppID: 1, PrivateKey: key}, "both a token and a GitHub App"},
		"key, no id":     {Options{PrivateKey: key}, "its id is not"},
		"id, no key":     {Options{AppID: 3}, "App 3 has no private key"},
		"bad key":        {Options{AppID: 3, PrivateKey: []byte("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")}, "not an RSA key in PEM"},
		"bad URL":        {Options{Token: "t", BaseURL: "api.github.com"}, "not an http(s) URL"},
		"URL with creds": {Options{Token: "t", BaseURL: "https://u:secretpass@ghe.example/api/v3"}, "must not carry credentials"},
	} {
		_, err := New(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "not a key") || strings.Contains(err.Error(), "secretpass")) {
			t.Errorf("%s: the error shows a secret: %v", name, err)
		}
	}
}

func TestParseRepo(t *testing.T) {
	r, err := ParseRepo("ducksnest/infra")
	if err != nil || r != testRepo || r.FullName() != "ducksnest/infra" {
		t.Fatalf("ParseRepo = %v, %v", r, err)
	}
	for _, bad := range []string{"", "ducksnest", "/infra", "ducksnest/", "a/b/c", "a b/c"} {
		if _, err := ParseRepo(bad); err == nil {
			t.Errorf("ParseRepo(%q) took it", bad)
		}
	}
}
