package git

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	secret := "ghs_a/b+c=d&e"
	r := newRedactor()
	r.addBasic("x-access-token", secret)
	for _, form := range []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		base64.StdEncoding.EncodeToString([]byte("x-access-token:" + secret)),
		(&url.URL{Scheme: "https", Host: "github.com", User: url.UserPassword("x-access-token", secret)}).String(),
	} {
		got := r.string("failed: " + form + " (end)")
		if strings.Contains(got, form) || !strings.Contains(got, redacted) || !strings.HasSuffix(got, "(end)") {
			t.Errorf("redact(%q) = %q", form, got)
		}
	}
	// Userinfo of any URL goes, even with a secret it was never told.
	if got := r.string(`Get "https://someone:hunter2@example.com/x.git/info/refs"`); strings.Contains(got, "hunter2") || strings.Contains(got, "someone") {
		t.Errorf("userinfo kept: %q", got)
	}
	if got := r.string("https://github.com/ducksnest/infra.git"); got != "https://github.com/ducksnest/infra.git" {
		t.Errorf("a URL without credentials changed: %q", got)
	}

	// errors.Is sees through; nothing unwraps to the original text.
	orig := fmt.Errorf("push to https://x-access-token:%s@github.com: %w", secret, context.Canceled)
	err := r.error(orig)
	if !errors.Is(err, context.Canceled) {
		t.Error("errors.Is(redacted, context.Canceled) = false")
	}
	if errors.Unwrap(err) != nil {
		t.Error("a redacted error unwraps to the original")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("redacted error = %q", err)
	}
}

func TestSplitCredentials(t *testing.T) {
	for _, tc := range []struct{ in, clean, user, pass string }{
		{"https://github.com/o/r.git", "https://github.com/o/r.git", "", ""},
		{"https://x-access-token:tok@github.com/o/r.git", "https://github.com/o/r.git", "x-access-token", "tok"},
		{"https://tok@github.com/o/r.git", "https://github.com/o/r.git", "", "tok"},
		{"/srv/git/r.git", "/srv/git/r.git", "", ""},
		{"file:///srv/git/r.git", "file:///srv/git/r.git", "", ""},
	} {
		clean, user, pass, err := splitCredentials(tc.in)
		if err != nil || clean != tc.clean || user != tc.user || pass != tc.pass {
			t.Errorf("splitCredentials(%q) = %q, %q, %q, %v", tc.in, clean, user, pass, err)
		}
	}
	if _, _, _, err := splitCredentials("https://u:sec ret@host\x7f/"); err == nil || strings.Contains(err.Error(), "sec ret") {
		t.Errorf("a malformed URL: %v", err)
	}
}
