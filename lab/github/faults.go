package github

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FaultKind names a failure the server can answer with.
type FaultKind string

// The failures InjectFault knows.
const (
	// SecondaryRateLimit is GitHub's secondary ("abuse") rate limit: 403
	// (or 429) with Retry-After and the documentation URL go-github turns
	// into *github.AbuseRateLimitError.
	SecondaryRateLimit FaultKind = "secondary rate limit"
	// PrimaryRateLimit is an exhausted hourly limit: 403 (or 429) with
	// x-ratelimit-remaining: 0 and x-ratelimit-reset RetryAfter away,
	// which go-github turns into *github.RateLimitError.
	PrimaryRateLimit FaultKind = "primary rate limit"
	// ServerError is a 5xx (502 unless Status says otherwise).
	ServerError FaultKind = "server error"
)

// Fault makes the next Count API requests for Operation fail. Faulted
// requests change nothing; they are counted by Calls and Writes.
type Fault struct {
	Kind FaultKind
	// Operation is an operationId such as "issues/create-comment"; empty
	// means every operation.
	Operation string
	// Count is how many requests fail; zero means one.
	Count int
	// Status overrides the status: 403 or 429 for the rate limits, a 5xx
	// for ServerError.
	Status int
	// RetryAfter is the Retry-After of a secondary limit and how far away
	// x-ratelimit-reset is for a primary one; whole seconds, zero means 60s.
	RetryAfter time.Duration
}

// InjectFault queues f; faults are used in the order injected.
func (s *Server) InjectFault(f Fault) error {
	switch f.Kind {
	case SecondaryRateLimit, PrimaryRateLimit:
		if f.Status == 0 {
			f.Status = http.StatusForbidden
		}
		if f.Status != http.StatusForbidden && f.Status != http.StatusTooManyRequests {
			return fmt.Errorf("labgithub: fault %s with status %d: GitHub answers a rate limit with 403 or 429", f.Kind, f.Status)
		}
	case ServerError:
		if f.Status == 0 {
			f.Status = http.StatusBadGateway
		}
		if f.Status < 500 || f.Status > 599 {
			return fmt.Errorf("labgithub: fault %s with status %d: want a 5xx", f.Kind, f.Status)
		}
	default:
		return fmt.Errorf("labgithub: fault kind %q: want SecondaryRateLimit, PrimaryRateLimit or ServerError", f.Kind)
	}
	if f.Count <= 0 {
		f.Count = 1
	}
	if f.RetryAfter <= 0 {
		f.RetryAfter = 60 * time.Second
	}
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	s.faults = append(s.faults, f)
	return nil
}

// PendingFaults is how many faulted requests are still to come.
func (s *Server) PendingFaults() int {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	n := 0
	for _, f := range s.faults {
		n += f.Count
	}
	return n
}

func (s *Server) takeFault(op string) (Fault, bool) {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	for i := range s.faults {
		f := &s.faults[i]
		if f.Operation != "" && f.Operation != op {
			continue
		}
		out := *f
		f.Count--
		if f.Count == 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return out, true
	}
	return Fault{}, false
}

func (s *Server) writeFault(w http.ResponseWriter, r *http.Request, who *token, f Fault) {
	secs := int64(f.RetryAfter.Round(time.Second) / time.Second)
	h := http.Header{}
	var body map[string]any
	switch f.Kind {
	case SecondaryRateLimit:
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		body = map[string]any{
			"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
			"status":            strconv.Itoa(f.Status),
		}
	case PrimaryRateLimit:
		limit := 60
		if who != nil {
			limit = who.limit
		}
		h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Used", strconv.Itoa(limit))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(f.RetryAfter).Unix(), 10))
		h.Set("X-RateLimit-Resource", "core")
		body = map[string]any{
			"message":           "API rate limit exceeded.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits",
			"status":            strconv.Itoa(f.Status),
		}
	default:
		body = errorBody(f.Status, "Server Error")
	}
	s.writeAPI(w, r, who, f.Status, body, h)
}
