package github

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"sync"

	gogithub "github.com/google/go-github/v93/github"
)

// secrets are the credentials a Client has used, so that none of them ever
// reaches an error or a log line, even when a server echoes one back.
type secrets struct {
	mu    sync.Mutex
	known []string // most recent first
}

// maxKnownSecrets bounds how many credentials are remembered: installation
// tokens live an hour, so a long-running server sees a new one each hour
// per installation.
const maxKnownSecrets = 256

func newSecrets(static ...string) *secrets {
	s := &secrets{}
	for _, v := range static {
		s.add(v)
	}
	return s
}

// add remembers v as a secret. Values too short to be a credential are
// ignored: replacing them would mangle ordinary text.
func (s *secrets) add(v string) {
	v = strings.TrimSpace(v)
	if len(v) < 8 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range s.known {
		if k == v {
			if i > 0 {
				copy(s.known[1:i+1], s.known[:i])
				s.known[0] = v
			}
			return
		}
	}
	s.known = append([]string{v}, s.known...)
	if len(s.known) > maxKnownSecrets {
		s.known = s.known[:maxKnownSecrets]
	}
}

// addAuthorization remembers the credential of an Authorization header
// ("token X", "Bearer X", "Basic X").
func (s *secrets) addAuthorization(h string) {
	if h == "" {
		return
	}
	if _, cred, ok := strings.Cut(h, " "); ok {
		s.add(cred)
	} else {
		s.add(h)
	}
}

const redacted = "[redacted]"

// Shapes of credentials, removed even when this Client never held them:
// GitHub's token prefixes, JSON Web Tokens, PEM private keys, and whatever
// follows an authorization scheme.
var secretShapes = []*regexp.Regexp{
	regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{16,}`),
	regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{16,}`),
	regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`),
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)`),
	regexp.MustCompile(`(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{20,}`),
}

// redact removes every known secret and anything shaped like one from s.
func (s *secrets) redact(text string) string {
	s.mu.Lock()
	known := s.known
	s.mu.Unlock()
	for _, k := range known {
		text = strings.ReplaceAll(text, k, redacted)
	}
	for _, re := range secretShapes {
		text = re.ReplaceAllString(text, redacted)
	}
	return text
}

// apiError is an error of a Client: the operation and the cause, with the
// secrets removed from its text. It unwraps to the cause, so go-github's
// typed errors (*gogithub.ErrorResponse, *gogithub.RateLimitError, ...)
// are found with errors.As.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// wrap makes the error a call returns: op, then err, both redacted. The
// message of a GitHub error response is redacted in place too, so that a
// caller who unwraps it finds no secret either.
func (c *Client) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if er, ok := errors.AsType[*gogithub.ErrorResponse](err); ok {
		er.Message = c.secrets.redact(er.Message)
		for i := range er.Errors {
			er.Errors[i].Message = c.secrets.redact(er.Errors[i].Message)
		}
	}
	return &apiError{msg: c.secrets.redact(op + ": " + err.Error()), err: err}
}

// redactURL shows u without its userinfo and query.
func redactURL(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	v.Fragment = ""
	return v.String()
}
