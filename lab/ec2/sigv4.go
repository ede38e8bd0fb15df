package ec2

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

const sigV4Algorithm = "AWS4-HMAC-SHA256"

// sigV4Auth is a parsed Authorization header.
type sigV4Auth struct {
	accessKeyID   string
	date          string // yyyymmdd
	region        string
	service       string
	signedHeaders []string
	signature     string
}

func parseSigV4Auth(h string) (sigV4Auth, error) {
	var a sigV4Auth
	rest, ok := strings.CutPrefix(h, sigV4Algorithm+" ")
	if !ok {
		return a, errf(400, "IncompleteSignature", "Unsupported authorization type; expected %s.", sigV4Algorithm)
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return a, errf(400, "IncompleteSignature", "Credential is malformed: %q.", v)
			}
			a.accessKeyID, a.date, a.region, a.service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		}
	}
	if a.accessKeyID == "" || len(a.signedHeaders) == 0 || a.signature == "" {
		return a, errf(400, "IncompleteSignature", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.")
	}
	return a, nil
}

// verifySigV4 recomputes the request's SigV4 signature with the server's
// secret and returns the region it was signed for.
func (s *Server) verifySigV4(r *http.Request, body []byte) (string, error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return "", errf(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
	}
	a, err := parseSigV4Auth(authz)
	if err != nil {
		return "", err
	}
	if a.accessKeyID != s.AccessKeyID {
		return "", errf(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
	}
	if a.service != "ec2" {
		return "", errf(403, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'ec2'.")
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return "", errf(400, "IncompleteSignature", "Authorization header requires existence of a 'X-Amz-Date' header.")
	}
	if !strings.HasPrefix(amzDate, a.date) {
		return "", errf(403, "SignatureDoesNotMatch",
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s'", a.date, amzDate)
	}
	if !slices.Contains(a.signedHeaders, "host") {
		return "", errf(403, "SignatureDoesNotMatch", "'Host' must be a signed header.")
	}

	canonical := canonicalRequest(r, body, a.signedHeaders)
	scope := strings.Join([]string{a.date, a.region, a.service, "aws4_request"}, "/")
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := strings.Join([]string{sigV4Algorithm, amzDate, scope, hex.EncodeToString(sum[:])}, "\n")

	key := hmacSHA256([]byte("AWS4"+s.SecretAccessKey), a.date)
	key = hmacSHA256(key, a.region)
	key = hmacSHA256(key, a.service)
	key = hmacSHA256(key, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(key, stringToSign))
	if !hmac.Equal([]byte(want), []byte(a.signature)) {
		// EC2 answers a bad signature with AuthFailure, not SignatureDoesNotMatch.
		return "", errf(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
	}
	return a.region, nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalRequest builds the SigV4 canonical request the way
// aws-sdk-go-v2's signer does.
func canonicalRequest(r *http.Request, body []byte, signed []string) string {
	var hdrs strings.Builder
	for _, h := range signed {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		default:
			vals := r.Header.Values(h)
			for i := range vals {
				vals[i] = strings.TrimSpace(stripExcessSpaces(vals[i]))
			}
			v = strings.Join(vals, ",")
		}
		hdrs.WriteString(h + ":" + stripExcessSpaces(v) + "\n")
	}
	sum := sha256.Sum256(body)
	return strings.Join([]string{
		r.Method,
		escapePath(r.URL.EscapedPath()),
		canonicalQuery(r.URL.Query()),
		hdrs.String(),
		strings.Join(signed, ";"),
		hex.EncodeToString(sum[:]),
	}, "\n")
}

func stripExcessSpaces(s string) string {
	s = strings.Trim(s, " ")
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}

func canonicalQuery(q url.Values) string {
	type kv struct{ k, v string }
	var kvs []kv
	for k, vs := range q {
		for _, v := range vs {
			kvs = append(kvs, kv{queryEscape(k), queryEscape(v)})
		}
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].k != kvs[j].k {
			return kvs[i].k < kvs[j].k
		}
		return kvs[i].v < kvs[j].v
	})
	parts := make([]string, len(kvs))
	for i, p := range kvs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func escapePath(p string) string {
	if p == "" {
		return "/"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' || c == '-' || c == '.' || c == '_' || c == '~' ||
			(c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
