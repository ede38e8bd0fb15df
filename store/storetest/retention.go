package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

// Clock is a clock a test moves by hand: the Now of a store under test.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Pass moves the clock just past instant: a lease ending then has ended.
func (c *Clock) Pass(instant time.Time) { c.Set(instant.Add(time.Millisecond)) }

// TestRetention runs the conformance suite of a queue's retention of done
// deliveries (store.DeliveryRetention). open returns a fresh, empty queue
// whose clock is now; the suite moves it, and waits for nothing.
func TestRetention(t *testing.T, open func(t *testing.T, now func() time.Time) store.Queue) {
	t.Run("DoneDeliveryIsForgottenAfterTheRetention", func(t *testing.T) {
		clock := NewClock(t0)
		retentionForgets(t, open(t, clock.Now), clock)
	})
	t.Run("QueuedAndClaimedJobsAreNeverForgotten", func(t *testing.T) {
		clock := NewClock(t0)
		retentionKeepsWork(t, open(t, clock.Now), clock)
	})
}

// claimAt claims a job with a lease longer than the suite moves the clock.
func claimAt(t *testing.T, q store.Queue, owner string) *store.Claim {
	t.Helper()
	c, err := q.Claim(ctx(t), owner, 30*24*time.Hour)
	if err != nil || c == nil {
		t.Fatalf("Claim by %s = %v, %v; want a job", owner, c, err)
	}
	return c
}

func retentionForgets(t *testing.T, q store.Queue, clock *Clock) {
	ok, failed := job(1, "o/r#1"), job(2, "o/r#2")
	enqueue(t, q, ok, failed)
	clock.Set(t0.Add(time.Minute))
	cok := claimAt(t, q, "worker-1")
	cfailed := claimAt(t, q, "worker-1")
	finished := t0.Add(2 * time.Minute)
	clock.Set(finished)
	done(t, q, cok, store.ResultOK)
	done(t, q, cfailed, store.ResultFailed)

	// Within the retention, even at its last instant, the delivery done
	// ok is a duplicate: a redelivery by GitHub is answered as such.
	for _, at := range []time.Time{finished.Add(time.Hour), finished.Add(store.DeliveryRetention - time.Second)} {
		clock.Set(at)
		if err := q.Enqueue(ctx(t), ok); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("Enqueue of %s done ok %s ago: %v, want ErrDuplicate", ok.ID, at.Sub(finished), err)
		}
	}
	// Past it, GitHub no longer redelivers it: the id is forgotten, and a
	// delivery with it is a new job, claimed as attempt 1.
	clock.Set(finished.Add(store.DeliveryRetention + time.Second))
	again := ok
	again.Received = clock.Now()
	enqueue(t, q, again)
	depth(t, q, 1)
	c := claimAt(t, q, "worker-2")
	sameJob(t, c.Job, again, 1)
	done(t, q, c, store.ResultOK)
	// And remembered again, from its new Done.
	if err := q.Enqueue(ctx(t), ok); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("Enqueue of %s right after it was done again: %v, want ErrDuplicate", ok.ID, err)
	}
	// The failed delivery is redelivered as ever.
	enqueue(t, q, failed)
	depth(t, q, 1)
}

func retentionKeepsWork(t *testing.T, q store.Queue, clock *Clock) {
	queued, claimed, finished := job(1, "o/r#1"), job(2, "o/r#2"), job(3, "o/r#3")
	queued.Received = t0.Add(time.Hour) // claimed after the jobs below
	enqueue(t, q, finished)
	done(t, q, claimAt(t, q, "worker-1"), store.ResultOK)
	enqueue(t, q, claimed, queued)
	c := claimAt(t, q, "worker-1")
	if c.Job.ID != claimed.ID {
		t.Fatalf("claimed %s, want %s (received first)", c.Job.ID, claimed.ID)
	}
	// Long past the retention (the claim's lease is longer still), the
	// other deliveries being done prune what they can: neither the
	// queued job nor the claimed one is forgotten.
	clock.Set(t0.Add(store.DeliveryRetention + 24*time.Hour))
	for i := 10; i < 13; i++ {
		enqueue(t, q, job(i, "o/r#other"))
		done(t, q, claimAt(t, q, "worker-2"), store.ResultOK)
	}
	for _, j := range []store.Job{queued, claimed} {
		if err := q.Enqueue(ctx(t), j); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("Enqueue of %s (queued or claimed) past the retention: %v, want ErrDuplicate", j.ID, err)
		}
	}
	depth(t, q, 2)
	if err := q.Extend(ctx(t), c, time.Hour); err != nil {
		t.Errorf("Extend of the claim of %s past the retention: %v", claimed.ID, err)
	}
	done(t, q, c, store.ResultOK)
	cq := claimAt(t, q, "worker-3")
	sameJob(t, cq.Job, queued, 1)
	done(t, q, cq, store.ResultOK)
	depth(t, q, 0)
}
