package github

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRateLimitBare429RetryAfter: a 429 with Retry-After but without the
// documentation URL that makes go-github see a secondary limit (the lab
// covers that one) is a rate limit all the same.
func TestRateLimitBare429RetryAfter(t *testing.T) {
	w := setup(t)
	var hits atomic.Int32
	w.interceptWith(func(rw http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/api/v3/repos/ducksnest/infra/issues/1/comments" || hits.Add(1) > 1 {
			return false
		}
		rw.Header().Set("Retry-After", "1")
		writeJSON(rw, http.StatusTooManyRequests, map[string]any{"message": "Too many requests"})
		return true
	})
	c, logs := tokenClient(t, w)
	start := time.Now()
	id, err := c.Comment(testContext(t), testRepo, 1, "hello")
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
	if got, err := w.srv.Comments(testRepo.Owner, testRepo.Name, 1); err != nil || len(got) != 1 || got[0].ID != id {
		t.Errorf("comments %+v, want the one created on the retry", got)
	}
	if !strings.Contains(logs.String(), "rate limited; retrying in 1s") {
		t.Errorf("the wait was not logged:\n%s", logs.String())
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
	w := setup(t)
	const spacing = 30 * time.Millisecond
	var mu sync.Mutex
	var inFlight, most int
	var starts []time.Time
	var ends []time.Time
	w.interceptWith(func(rw http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet {
			return false
		}
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		starts = append(starts, time.Now())
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a write that takes a while
		w.srv.ServeHTTP(rw, r)
		mu.Lock()
		inFlight--
		ends = append(ends, time.Now())
		mu.Unlock()
		return true
	})
	c, _ := tokenClient(t, w, func(o *Options) { o.WriteSpacing = spacing })
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
	if c2, _ := tokenClient(t, w); c2.gate == c.gate {
		t.Error("two clients share a write gate")
	}
}
