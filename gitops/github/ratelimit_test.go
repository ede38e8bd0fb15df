package github

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gogithub "github.com/google/go-github/v93/github"
)

// secondaryLimitOnce answers the first request to path with 429, Retry-After
// and, when docs is set, GitHub's secondary rate limit documentation URL.
func secondaryLimitOnce(path string, retryAfter string, docs bool) (func(http.ResponseWriter, *http.Request) bool, *atomic.Int32) {
	var hits atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path || hits.Add(1) > 1 {
			return false
		}
		w.Header().Set("Retry-After", retryAfter)
		body := map[string]any{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}
		if docs {
			body["documentation_url"] = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
		}
		writeJSON(w, http.StatusTooManyRequests, body)
		return true
	}, &hits
}

func TestRateLimitRetryAfterWaitsAndSucceeds(t *testing.T) {
	for name, docs := range map[string]bool{"secondary limit": true, "bare 429": false} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			var hits *atomic.Int32
			f.intercept, hits = secondaryLimitOnce("/repos/ducksnest/infra/issues/3/comments", "1", docs)
			c, logs := tokenClient(t, f)
			start := time.Now()
			id, err := c.Comment(testContext(t), testRepo, 3, "hello")
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if hits.Load() != 2 {
				t.Fatalf("%d requests, want 2: the refused one and its retry", hits.Load())
			}
			if took < time.Second || took > 10*time.Second {
				t.Errorf("took %s, want about the Retry-After of 1s", took)
			}
			if got := f.commentsOn(3); len(got) != 1 || got[0].ID != id {
				t.Errorf("comments %+v, want the one created on the retry", got)
			}
			if !strings.Contains(logs.all(), "rate limited; retrying in 1s") {
				t.Errorf("the wait was not logged:\n%s", logs.all())
			}
		})
	}
}

func TestRateLimitResetFarAwayFailsFast(t *testing.T) {
	f := newFake(t)
	reset := time.Now().Add(time.Hour).Truncate(time.Second)
	var hits atomic.Int32
	f.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		hits.Add(1)
		w.Header().Set("X-Ratelimit-Limit", "5000")
		w.Header().Set("X-Ratelimit-Remaining", "0")
		w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		writeJSON(w, http.StatusForbidden, map[string]any{"message": "API rate limit exceeded for installation ID 1."})
		return true
	}
	c, _ := tokenClient(t, f)
	start := time.Now()
	_, err := c.PullRequest(testContext(t), testRepo, 1)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s: the client waited for a reset an hour away", took)
	}
	var rl *RateLimitedError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("error %v (%T), want a *RateLimitedError", err, err)
	}
	var ghErr *gogithub.RateLimitError
	if !errors.As(err, &ghErr) {
		t.Errorf("error %v does not unwrap to go-github's *RateLimitError", err)
	}
	if d := rl.Reset.Sub(reset); d < 0 || d > 2*time.Second {
		t.Errorf("reset %s, want %s", rl.Reset, reset)
	}
	msg := err.Error()
	for _, want := range []string{"read pull request ducksnest/infra#1", reset.UTC().Format(time.RFC3339), "longer than nestbot waits", "try again after"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	// go-github remembers the limit: the next call fails without a request.
	if _, err := c.PullRequest(testContext(t), testRepo, 2); !errors.Is(err, ErrRateLimited) {
		t.Errorf("second call: %v, want ErrRateLimited", err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests, want 1: the second call must not reach GitHub before the reset", hits.Load())
	}
}

func TestRateLimitPastTheDeadlineFailsFast(t *testing.T) {
	f := newFake(t)
	f.intercept, _ = secondaryLimitOnce("/repos/ducksnest/infra/issues/3/comments", "30", true)
	c, _ := tokenClient(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Comment(ctx, testRepo, 3, "hello")
	if !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "past the deadline") {
		t.Fatalf("error %v, want a rate limit past the deadline", err)
	}
	var abuse *gogithub.AbuseRateLimitError
	if !errors.As(err, &abuse) {
		t.Errorf("error does not unwrap to go-github's *AbuseRateLimitError")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %s: the client waited although the deadline comes first", took)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"3": 3 * time.Second, "0": 0, now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got, ok := parseRetryAfter(v, now); !ok || got != want {
			t.Errorf("Retry-After %q: %s %v, want %s", v, got, ok, want)
		}
	}
	if _, ok := parseRetryAfter("soon", now); ok {
		t.Error(`Retry-After "soon" was read as a wait`)
	}
}

func TestWritesAreSerializedAndSpaced(t *testing.T) {
	f := newFake(t)
	const spacing = 30 * time.Millisecond
	var mu sync.Mutex
	var inFlight, most int
	var starts []time.Time
	var ends []time.Time
	f.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet {
			return false
		}
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		starts = append(starts, time.Now())
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a write that takes a while
		mu.Lock()
		inFlight--
		ends = append(ends, time.Now())
		mu.Unlock()
		return false
	}
	c, _ := tokenClient(t, f, func(o *Options) { o.WriteSpacing = spacing })
	ctx := testContext(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Comment(ctx, testRepo, 1, "concurrent"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d writes in flight at once, want 1", most)
	}
	if len(starts) != 8 {
		t.Fatalf("%d writes, want 8", len(starts))
	}
	for i := 1; i < len(starts); i++ {
		// The client starts the next write spacing after the previous
		// response; the server sees the response a little before that.
		if gap := starts[i].Sub(ends[i-1]); gap < spacing-5*time.Millisecond {
			t.Errorf("write %d started %s after the previous ended, want at least %s", i+1, gap, spacing)
		}
	}
	// Another installation (here: another Client) has its own gate.
	if c2, _ := tokenClient(t, f); c2.gate == c.gate {
		t.Error("two clients share a write gate")
	}
}
