package webhook

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/store"
)

// MaxBody is the largest delivery intake reads: GitHub caps webhook
// payloads at 25 MB.
const MaxBody = 25 << 20

// DefaultMaxUnverified is Handler.MaxUnverified when zero: the bytes all
// deliveries together may hold before their signatures are checked.
const DefaultMaxUnverified = 64 << 20

// readChunk is the least a body's buffer grows by: a body is held only as
// far as it has arrived, whatever its Content-Length announces.
const readChunk = 32 << 10

// errBusy: the deliveries being read hold MaxUnverified bytes already.
var errBusy = errors.New("webhook: too many bytes of unverified deliveries in flight")

// The headers GitHub sends with every delivery.
const (
	HeaderSignature = "X-Hub-Signature-256"
	HeaderEvent     = "X-GitHub-Event"
	HeaderDelivery  = "X-GitHub-Delivery"
)

// Results of a delivery, as the deliveries metric counts them.
const (
	ResultAccepted     = "accepted"      // 202: stored as a job
	ResultDuplicate    = "duplicate"     // 200: the delivery is queued, running, or done ok
	ResultIgnored      = "ignored"       // 204: not an event nestbot handles
	ResultPong         = "pong"          // 200: a ping
	ResultUnsigned     = "unsigned"      // 401: no signature header
	ResultBadSignature = "bad_signature" // 401: the signature matches no secret
	ResultTooLarge     = "too_large"     // 413
	ResultMalformed    = "malformed"     // 400: bad JSON, missing fields or headers
	ResultBadMethod    = "bad_method"    // 405
	ResultStoreFailed  = "store_failed"  // 503: the queue could not store the job
	ResultBusy         = "busy"          // 503: unverified deliveries hold MaxUnverified bytes
)

// Handler is the webhook intake: an http.Handler for POST /webhook.
//
// It answers, in this order:
//   - 405 to anything but POST;
//   - 401 when X-Hub-Signature-256 is missing, before reading the body;
//   - 413 when the body is larger than MaxBody;
//   - 503 when the bodies being read, not yet verified, would hold more
//     than MaxUnverified bytes together (a body is held as far as it has
//     arrived, never by its announced length);
//   - 401 when the signature is not HMAC-SHA256 of the raw body under one
//     of Secrets (compared in constant time; several secrets allow a
//     rotation; with no secrets every delivery is refused);
//   - 400 when X-GitHub-Event is missing;
//   - 200 {"msg":"pong"} to a ping;
//   - 204 to a delivery Classify does not handle;
//   - 400 when the payload of a handled event is malformed (*PayloadError),
//     or X-GitHub-Delivery is missing or unusable as an id;
//   - 200 {"status":"duplicate"} when the queue already has the delivery
//     (queued, running, or done ok): nothing more is stored. A comment's
//     command is one job per comment (CommentJobID), so a delivery of a
//     comment already run, under any delivery id, is a duplicate too;
//   - 503 when the queue fails to store it (GitHub shows the failure, and a
//     person can redeliver);
//   - 202 {"status":"accepted"} once Queue.Enqueue returned: the job is on
//     disk.
//
// Nothing is parsed, and nothing stored, before the signature verified.
// A secret never reaches a response or the log.
type Handler struct {
	// Secrets are the webhook secrets a delivery may be signed with.
	Secrets [][]byte
	// Queue stores accepted deliveries as jobs.
	Queue store.Queue
	// MaxBody bounds the body; 0 means MaxBody.
	MaxBody int64
	// MaxUnverified bounds the bytes all deliveries being read hold
	// together before their signatures are checked; 0 means
	// DefaultMaxUnverified.
	MaxUnverified int64
	// Accepted, if set, is called with each job after it is stored (a
	// Pool's Notify, which wakes a worker and cancels superseded plans).
	Accepted func(store.Job)
	// Metrics, if set, counts deliveries by event and result.
	Metrics *Metrics
	// Logger receives a record per refused or failed delivery, with its
	// delivery id; nil discards.
	Logger *slog.Logger
	// Now is the clock for Job.Received; nil means time.Now.
	Now func() time.Time

	inflight atomic.Int64 // bytes held by bodies being read
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, r, "unverified", http.StatusMethodNotAllowed, ResultBadMethod, "webhook deliveries are POSTed")
		return
	}
	sig := r.Header.Get(HeaderSignature)
	if sig == "" {
		h.refuse(w, r, "unverified", http.StatusUnauthorized, ResultUnsigned,
			"no "+HeaderSignature+" header: give the GitHub webhook (or App) a secret, and nestbot the same one")
		return
	}
	limit := h.MaxBody
	if limit <= 0 {
		limit = MaxBody
	}
	h.Metrics.Unverified(1)
	body, release, err := h.readBody(w, r, limit)
	h.Metrics.Unverified(-1)
	defer release()
	if errors.Is(err, errBusy) {
		w.Header().Set("Retry-After", "10")
		h.refuse(w, r, "unverified", http.StatusServiceUnavailable, ResultBusy, "too many deliveries are being received at once; redeliver it")
		return
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.refuse(w, r, "unverified", http.StatusRequestEntityTooLarge, ResultTooLarge,
				fmt.Sprintf("the body is larger than %d bytes", limit))
			return
		}
		h.refuse(w, r, "unverified", http.StatusBadRequest, ResultMalformed, "reading the body: "+err.Error())
		return
	}
	if !Verify(h.Secrets, sig, body) {
		h.refuse(w, r, "unverified", http.StatusUnauthorized, ResultBadSignature,
			HeaderSignature+" does not match the body under any configured secret")
		return
	}

	event := r.Header.Get(HeaderEvent)
	label := eventLabel(event)
	if event == "" {
		h.refuse(w, r, label, http.StatusBadRequest, ResultMalformed, "no "+HeaderEvent+" header")
		return
	}
	if event == EventPing {
		h.Metrics.Delivery(label, ResultPong)
		reply(w, http.StatusOK, `{"msg":"pong"}`)
		return
	}
	c, handled, err := classify(event, body)
	if err != nil {
		h.refuse(w, r, label, http.StatusBadRequest, ResultMalformed, err.Error())
		return
	}
	if !handled {
		h.Metrics.Delivery(label, ResultIgnored)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	id := r.Header.Get(HeaderDelivery)
	if !validDeliveryID(id) {
		h.refuse(w, r, label, http.StatusBadRequest, ResultMalformed,
			HeaderDelivery+" is missing or not an id (1 to 128 letters, digits, '-', '_', '.', ':')")
		return
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	key := c.key
	job := store.Job{ID: cmp.Or(c.once, id), Event: event, Key: key, Payload: body, Received: now()}
	if h.Queue == nil {
		h.refuse(w, r, label, http.StatusServiceUnavailable, ResultStoreFailed, "no queue to store the delivery in")
		return
	}
	if err := h.Queue.Enqueue(r.Context(), job); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			h.Metrics.Delivery(label, ResultDuplicate)
			reply(w, http.StatusOK, `{"status":"duplicate"}`)
			return
		}
		logs.Or(h.Logger).Error("webhook: store the delivery", "delivery", id, "event", event, "key", key, "err", err)
		h.refuse(w, r, label, http.StatusServiceUnavailable, ResultStoreFailed, "storing the delivery failed; redeliver it once nestbot's store is back")
		return
	}
	h.Metrics.Delivery(label, ResultAccepted)
	if h.Accepted != nil {
		h.Accepted(job)
	}
	reply(w, http.StatusAccepted, `{"status":"accepted"}`)
}

// Verify tells whether header, an X-Hub-Signature-256 value
// ("sha256=<hex>"), is the HMAC-SHA256 of body under one of secrets. Every
// secret is tried, and each comparison takes constant time. Empty secrets
// never match.
func Verify(secrets [][]byte, header string, body []byte) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], []byte(hexSig)); err != nil {
		return false
	}
	match := false
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		m := hmac.New(sha256.New, s)
		m.Write(body)
		if hmac.Equal(m.Sum(nil), want[:]) {
			match = true
		}
	}
	return match
}

// Sign returns the X-Hub-Signature-256 value of body under secret, as
// GitHub computes it (for tests, benchmarks and the lab).
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ParseSecrets reads webhook secrets from the value of a flag, variable or
// secret file: one secret per line, so that during a rotation the old and
// the new secret are both accepted. Lines are trimmed of surrounding
// whitespace; blank lines are skipped. It fails when there is no secret:
// nestbot does not accept unsigned deliveries.
func ParseSecrets(value string) ([][]byte, error) {
	var out [][]byte
	for line := range strings.SplitSeq(value, "\n") {
		if s := strings.TrimSpace(line); s != "" {
			out = append(out, []byte(s))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("webhook: no webhook secret: set --webhook-secret, NESTBOT_WEBHOOK_SECRET or NESTBOT_WEBHOOK_SECRET_FILE to the secret the GitHub App or webhook signs with (one per line while rotating)")
	}
	return out, nil
}

// readBody reads r's body, at most limit bytes (more is a
// *http.MaxBytesError), into a buffer that grows as the body arrives, each
// growth counted against MaxUnverified (errBusy past it). release gives the
// bytes back; call it once the body is no longer needed.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, release func(), err error) {
	var held int64
	release = func() { h.inflight.Add(-held) }
	if r.ContentLength > limit {
		return nil, release, &http.MaxBytesError{Limit: limit}
	}
	most := h.MaxUnverified
	if most <= 0 {
		most = DefaultMaxUnverified
	}
	want := limit + 1 // room to see one byte too many
	if r.ContentLength >= 0 {
		want = r.ContentLength + 1
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	buf := make([]byte, 0)
	for {
		if len(buf) == cap(buf) {
			grow := min(max(int64(cap(buf)), readChunk), want-int64(cap(buf)))
			if grow <= 0 {
				break // read want bytes: one more than Content-Length
			}
			if h.inflight.Add(grow) > most {
				h.inflight.Add(-grow)
				return nil, release, errBusy
			}
			held += grow
			buf = slices.Grow(buf, int(grow))
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, release, err
		}
	}
	if r.ContentLength >= 0 && int64(len(buf)) != r.ContentLength {
		if int64(len(buf)) > r.ContentLength {
			return nil, release, errors.New("the body is longer than its Content-Length")
		}
		return nil, release, io.ErrUnexpectedEOF
	}
	return buf, release, nil
}

// validDeliveryID accepts what GitHub sends (a GUID) and similar ids.
func validDeliveryID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// eventLabel bounds the event label of the metrics to the events nestbot
// knows, whatever a sender puts in the header.
func eventLabel(event string) string {
	switch event {
	case EventPullRequest, EventIssueComment, EventPush, EventPing, "drift":
		return event
	}
	return "other"
}

func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, label string, status int, result, msg string) {
	h.Metrics.Delivery(label, result)
	if status != http.StatusServiceUnavailable {
		logs.Or(h.Logger).Warn("webhook: delivery refused: "+msg, "status", status, "remote", r.RemoteAddr, "delivery", cut(r.Header.Get(HeaderDelivery), 64))
	}
	http.Error(w, msg, status)
}

// cut is s, cut to at most n bytes: an unverified delivery id is logged,
// but only so much of it.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body+"\n")
}
