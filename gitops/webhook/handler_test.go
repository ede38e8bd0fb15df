package webhook_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/store"
)

// pushPayload is a push to the default branch of o/r.
func pushPayload(after string) []byte {
	return []byte(`{"ref":"refs/heads/main","after":"` + after + `","deleted":false,` +
		`"repository":{"full_name":"o/r","default_branch":"main"}}`)
}

func intake(t *testing.T, secrets ...string) (*httptest.Server, store.Queue, *webhook.Metrics) {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{secret}
	}
	var bs [][]byte
	for _, s := range secrets {
		bs = append(bs, []byte(s))
	}
	db := openDB(t)
	m := webhook.NewMetrics(db.Queue())
	ts := httptest.NewServer(&webhook.Handler{Secrets: bs, Queue: db.Queue(), Metrics: m, Logger: logger(t)})
	t.Cleanup(ts.Close)
	return ts, db.Queue(), m
}

func TestRefusedDeliveriesStoreNothing(t *testing.T) {
	ts, q, _ := intake(t)
	body := pushPayload("aaaa")
	big := append(bytes.Repeat([]byte(" "), webhook.MaxBody), body...) // valid JSON, one byte per space too many

	for _, c := range []struct {
		name   string
		req    func() *http.Request
		status int
	}{
		{"forged signature", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), body)
			r.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte("not-the-secret"), body))
			return r
		}, http.StatusUnauthorized},
		{"signature of another body", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), body)
			r.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte(secret), pushPayload("bbbb")))
			return r
		}, http.StatusUnauthorized},
		{"sha1 signature only", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), body)
			r.Header.Del(webhook.HeaderSignature)
			r.Header.Set("X-Hub-Signature", "sha1=0123456789abcdef0123456789abcdef01234567")
			return r
		}, http.StatusUnauthorized},
		{"garbled signature", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), body)
			r.Header.Set(webhook.HeaderSignature, "sha256=zz"+strings.Repeat("0", 62))
			return r
		}, http.StatusUnauthorized},
		{"missing signature", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), body)
			r.Header.Del(webhook.HeaderSignature)
			return r
		}, http.StatusUnauthorized},
		{"oversized body", func() *http.Request {
			return request(t, ts.URL, "push", newDelivery(), big)
		}, http.StatusRequestEntityTooLarge},
		{"oversized body without a length", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), big)
			r.Body = io.NopCloser(bytes.NewReader(big)) // chunked: the limit is found while reading
			r.ContentLength = -1
			return r
		}, http.StatusRequestEntityTooLarge},
		{"malformed JSON", func() *http.Request {
			return request(t, ts.URL, "push", newDelivery(), []byte(`{"ref":"refs/heads/main",`))
		}, http.StatusBadRequest},
		{"pull_request without a head sha", func() *http.Request {
			return request(t, ts.URL, "pull_request", newDelivery(),
				[]byte(`{"action":"opened","number":3,"repository":{"full_name":"o/r"},"pull_request":{}}`))
		}, http.StatusBadRequest},
		{"push without a repository", func() *http.Request {
			return request(t, ts.URL, "push", newDelivery(), []byte(`{"ref":"refs/heads/main"}`))
		}, http.StatusBadRequest},
		{"pull request number of the wrong type", func() *http.Request {
			return request(t, ts.URL, "pull_request", newDelivery(),
				[]byte(`{"action":"opened","number":"3","repository":{"full_name":"o/r"},"pull_request":{"head":{"sha":"a"}}}`))
		}, http.StatusBadRequest},
		{"missing event header", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), body)
			r.Header.Del(webhook.HeaderEvent)
			return r
		}, http.StatusBadRequest},
		{"missing delivery header", func() *http.Request {
			r := request(t, ts.URL, "push", newDelivery(), body)
			r.Header.Del(webhook.HeaderDelivery)
			return r
		}, http.StatusBadRequest},
		{"unusable delivery id", func() *http.Request {
			return request(t, ts.URL, "push", "../../etc/passwd", body)
		}, http.StatusBadRequest},
		{"GET", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, ts.URL, nil)
			return r
		}, http.StatusMethodNotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, msg := do(t, c.req())
			if status != c.status {
				t.Errorf("status %d %q, want %d", status, msg, c.status)
			}
			if n := depth(t, q); n != 0 {
				t.Errorf("the queue holds %d jobs after a refused delivery", n)
			}
		})
	}
}

func TestMalformedPayloadOfAnUnhandledEventIsIgnored(t *testing.T) {
	// Intake does not parse what nestbot does not handle.
	ts, q, _ := intake(t)
	if status, body := send(t, ts.URL, "issues", newDelivery(), []byte(`{not json`)); status != http.StatusNoContent {
		t.Errorf("status %d %q, want 204", status, body)
	}
	if n := depth(t, q); n != 0 {
		t.Errorf("the queue holds %d jobs", n)
	}
}

func TestSameDeliveryTwiceIsStoredOnce(t *testing.T) {
	ts, q, _ := intake(t)
	id := newDelivery()
	if status, body := send(t, ts.URL, "push", id, pushPayload("aaaa")); status != http.StatusAccepted || body != "{\"status\":\"accepted\"}\n" {
		t.Fatalf("first delivery: %d %q, want 202 accepted", status, body)
	}
	if status, body := send(t, ts.URL, "push", id, pushPayload("aaaa")); status != http.StatusOK || body != "{\"status\":\"duplicate\"}\n" {
		t.Errorf("second delivery: %d %q, want 200 duplicate", status, body)
	}
	if jobs := drain(t, q); len(jobs) != 1 || jobs[0].ID != id {
		t.Errorf("jobs %v, want the one delivery", jobs)
	}
}

func TestEitherSecretOfARotationIsAccepted(t *testing.T) {
	ts, q, _ := intake(t, "old-secret", secret)
	for _, s := range []string{"old-secret", secret} {
		body := pushPayload(s)
		r := request(t, ts.URL, "push", newDelivery(), body)
		r.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte(s), body))
		if status, msg := do(t, r); status != http.StatusAccepted {
			t.Errorf("signed with %s: %d %q, want 202", s, status, msg)
		}
	}
	if n := depth(t, q); n != 2 {
		t.Errorf("depth %d, want 2", n)
	}
}

func TestHandlerWithoutSecretsRefusesEverything(t *testing.T) {
	db := openDB(t)
	ts := httptest.NewServer(&webhook.Handler{Queue: db.Queue()})
	defer ts.Close()
	body := pushPayload("aaaa")
	r := request(t, ts.URL, "push", newDelivery(), body)
	r.Header.Set(webhook.HeaderSignature, webhook.Sign(nil, body)) // the HMAC under an empty key
	if status, _ := do(t, r); status != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", status)
	}
	if n := depth(t, db.Queue()); n != 0 {
		t.Errorf("depth %d, want 0", n)
	}
}

func TestStoreFailureIs503(t *testing.T) {
	db := openDB(t)
	var logged atomic.Int32
	ts := httptest.NewServer(&webhook.Handler{Secrets: [][]byte{[]byte(secret)}, Queue: db.Queue(),
		Logger: slog.New(countingHandler{logger(t).Handler(), &logged})})
	defer ts.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if status, msg := send(t, ts.URL, "push", newDelivery(), pushPayload("aaaa")); status != http.StatusServiceUnavailable {
		t.Errorf("status %d %q, want 503", status, msg)
	}
	if logged.Load() == 0 {
		t.Error("the store failure was not logged")
	}
}

// countingHandler counts the records it passes on.
type countingHandler struct {
	slog.Handler
	n *atomic.Int32
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

func TestParseSecrets(t *testing.T) {
	got, err := webhook.ParseSecrets("  old \r\n\nnew\n")
	if err != nil || len(got) != 2 || string(got[0]) != "old" || string(got[1]) != "new" {
		t.Errorf("ParseSecrets = %q, %v; want old and new", got, err)
	}
	if _, err := webhook.ParseSecrets(" \n\n"); err == nil || !strings.Contains(err.Error(), "NESTBOT_WEBHOOK_SECRET") {
		t.Errorf("ParseSecrets of blanks: %v, want an error naming where the secret goes", err)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	sig := webhook.Sign([]byte(secret), body)
	for _, c := range []struct {
		name    string
		secrets []string
		header  string
		want    bool
	}{
		{"right secret", []string{secret}, sig, true},
		{"second of two", []string{"x", secret}, sig, true},
		{"upper-case hex", []string{secret}, "sha256=" + strings.ToUpper(sig[7:]), true},
		{"wrong secret", []string{"x"}, sig, false},
		{"empty secret", []string{""}, webhook.Sign(nil, body), false},
		{"no prefix", []string{secret}, sig[7:], false},
		{"truncated", []string{secret}, sig[:len(sig)-2], false},
		{"too long", []string{secret}, sig + "00", false},
	} {
		var secrets [][]byte
		for _, s := range c.secrets {
			secrets = append(secrets, []byte(s))
		}
		if got := webhook.Verify(secrets, c.header, body); got != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, got, c.want)
		}
	}
}
