package ec2

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
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

// verifySigV4 re-signs the request with the server's secret through the
// SDK's own signer (aws/signer/v4), over exactly the headers the client
// said it signed, and compares the signatures; it returns the region the
// request was signed for.
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
	signedAt, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return "", errf(400, "IncompleteSignature", "X-Amz-Date %q is not an ISO-8601 basic date and time (YYYYMMDD'T'HHMMSS'Z').", amzDate)
	}
	if !slices.Contains(a.signedHeaders, "host") {
		return "", errf(403, "SignatureDoesNotMatch", "'Host' must be a signed header.")
	}

	// The request as the client signed it: its method, URL and host, and
	// of its headers only those it signed (the signer adds host and
	// content-length itself, and X-Amz-Date from signedAt).
	again := &http.Request{Method: r.Method, URL: r.URL, Host: r.Host, Header: http.Header{}}
	for _, h := range a.signedHeaders {
		switch h {
		case "host":
		case "content-length":
			again.ContentLength = r.ContentLength
		default:
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, again, hex.EncodeToString(sum[:]), a.service, a.region, signedAt); err != nil {
		return "", errf(500, "InternalError", "signing the request again: %v", err)
	}
	want, err := parseSigV4Auth(again.Header.Get("Authorization"))
	if err != nil {
		return "", errf(500, "InternalError", "the SDK's signature: %v", err)
	}
	if !hmac.Equal([]byte(want.signature), []byte(a.signature)) {
		// EC2 answers a bad signature with AuthFailure, not SignatureDoesNotMatch.
		return "", errf(401, "AuthFailure", "AWS was not able to validate the provided access credentials")
	}
	return a.region, nil
}
