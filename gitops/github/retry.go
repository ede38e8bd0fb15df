package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	gogithub "github.com/google/go-github/v93/github"
)

// ErrRateLimited is matched (errors.Is) by every *RateLimitedError.
var ErrRateLimited = errors.New("GitHub's rate limit is exhausted")

// RateLimitedError is returned by a call that GitHub refused for a rate
// limit that lifts later than the Client waits (Options.MaxRateLimitWait),
// later than the context allows, or that stayed after several waits. It
// unwraps to go-github's *RateLimitError or *AbuseRateLimitError, or to
// the *ErrorResponse of a bare 429.
type RateLimitedError struct {
	Op    string
	Reset time.Time // when GitHub said the limit lifts
	Err   error
	msg   string
}

func (e *RateLimitedError) Error() string { return e.msg }
func (e *RateLimitedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// maxAttempts bounds the tries of one request that keeps being rate limited.
const maxAttempts = 5

// defaultRateLimitWait is how long to wait when GitHub refused for a rate
// limit without saying for how long: GitHub's guidance is a minute.
const defaultRateLimitWait = time.Minute

// do runs one request of the operation op (fn makes it with the context it
// is given), behind the installation's write gate when write is set, and
// again after a rate limit that lifts soon enough. Its error is op and the
// cause, redacted.
func (c *Client) do(ctx context.Context, op string, write bool, fn func(context.Context) (*gogithub.Response, error)) error {
	if err := c.ready(); err != nil {
		return c.wrap(op, err)
	}
	return c.call(ctx, op, write, fn)
}

// call is do for any Client, also the App's own.
func (c *Client) call(ctx context.Context, op string, write bool, fn func(context.Context) (*gogithub.Response, error)) error {
	for attempt := 1; ; attempt++ {
		if write {
			if err := c.gate.enter(ctx); err != nil {
				return c.wrap(op, fmt.Errorf("waiting for the previous write: %w", err))
			}
		}
		_, err := fn(ctx)
		if write {
			c.gate.leave()
		}
		if err == nil {
			return nil
		}
		now := time.Now()
		wait, reset, limited := rateLimitWait(err, now)
		if !limited {
			return c.wrap(op, err)
		}
		why := ""
		switch deadline, ok := ctx.Deadline(); {
		case wait > c.opts.MaxRateLimitWait:
			why = fmt.Sprintf("longer than nestbot waits (%s)", c.opts.MaxRateLimitWait)
		case ok && deadline.Before(now.Add(wait)):
			why = "past the deadline of this work"
		case attempt >= maxAttempts:
			why = fmt.Sprintf("and it was still in force after %d tries", attempt)
		}
		if why != "" {
			return &RateLimitedError{Op: op, Reset: reset, Err: err, msg: c.secrets.redact(fmt.Sprintf(
				"%s: GitHub's rate limit is exhausted until %s (in %s), %s; try again after then (%v)",
				op, reset.UTC().Format(time.RFC3339), time.Until(reset).Round(time.Second), why, err))}
		}
		c.log().Warn("github: rate limited; retrying in "+wait.Round(time.Millisecond).String(), "op", op, "try", attempt+1, "of", maxAttempts)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return c.wrap(op, fmt.Errorf("waiting for GitHub's rate limit to lift: %w", ctx.Err()))
		}
	}
}

// rateLimitWait says whether err is GitHub refusing for a rate limit and,
// if so, when GitHub said the limit lifts and how long to wait before
// trying again: a second past a reset time, for clocks that differ a little.
func rateLimitWait(err error, now time.Time) (wait time.Duration, reset time.Time, limited bool) {
	after := func(d time.Duration) (time.Duration, time.Time, bool) {
		d = max(d, 0)
		return d, now.Add(d), true
	}
	until := func(t time.Time) (time.Duration, time.Time, bool) {
		return max(t.Sub(now)+time.Second, 0), t, true
	}
	if e, ok := errors.AsType[*gogithub.RateLimitError](err); ok {
		if e.Rate.Reset.IsZero() {
			return after(defaultRateLimitWait)
		}
		return until(e.Rate.Reset.Time)
	}
	if e, ok := errors.AsType[*gogithub.AbuseRateLimitError](err); ok {
		if e.RetryAfter == nil {
			return after(defaultRateLimitWait)
		}
		return after(*e.RetryAfter)
	}
	e, ok := errors.AsType[*gogithub.ErrorResponse](err)
	if !ok || e.Response == nil {
		return 0, time.Time{}, false
	}
	h := e.Response.Header
	switch code := e.Response.StatusCode; {
	case code == http.StatusTooManyRequests:
	case code == http.StatusForbidden && (h.Get("Retry-After") != "" || h.Get("X-Ratelimit-Remaining") == "0"):
	default:
		return 0, time.Time{}, false
	}
	if d, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		return after(d)
	}
	if h.Get("X-Ratelimit-Remaining") == "0" {
		if v, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
			return until(time.Unix(v, 0))
		}
	}
	return after(defaultRateLimitWait)
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// isStatus says whether err is GitHub answering with the HTTP status code.
func isStatus(err error, code int) bool {
	e, ok := errors.AsType[*gogithub.ErrorResponse](err)
	return ok && e.Response != nil && e.Response.StatusCode == code
}
