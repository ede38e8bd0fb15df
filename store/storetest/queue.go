package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

// TestQueue runs the conformance suite of store.Queue. open returns a
// fresh, empty queue for each subtest, whose clock is now: the suite moves
// it past a claim's end instead of waiting the lease out.
func TestQueue(t *testing.T, open func(t *testing.T, now func() time.Time) store.Queue) {
	t.Run("ClaimsOldestFirstAndDoneEmpties", func(t *testing.T) { clock := NewClock(time.Now()); queueOrder(t, clock, open(t, clock.Now)) })
	t.Run("ClaimOnEmptyQueueIsNil", func(t *testing.T) { clock := NewClock(time.Now()); queueEmpty(t, clock, open(t, clock.Now)) })
	t.Run("DuplicateWhileQueuedClaimedOrDoneOK", func(t *testing.T) { clock := NewClock(time.Now()); queueDuplicate(t, clock, open(t, clock.Now)) })
	t.Run("RedeliveryAfterFailureRunsAgain", func(t *testing.T) { clock := NewClock(time.Now()); queueRedelivery(t, clock, open(t, clock.Now)) })
	t.Run("OneKeyOneClaimAtATime", func(t *testing.T) { clock := NewClock(time.Now()); queueKeySerialization(t, clock, open(t, clock.Now)) })
	t.Run("ExpiredClaimIsReclaimedAndOldClaimLost", func(t *testing.T) { clock := NewClock(time.Now()); queueExpiry(t, clock, open(t, clock.Now)) })
	t.Run("ClaimPastItsLeaseIsLost", func(t *testing.T) { clock := NewClock(time.Now()); queueLapsed(t, clock, open(t, clock.Now)) })
	t.Run("ExtendKeepsTheClaim", func(t *testing.T) { clock := NewClock(time.Now()); queueExtend(t, clock, open(t, clock.Now)) })
	t.Run("DepthCountsQueuedAndClaimed", func(t *testing.T) { clock := NewClock(time.Now()); queueDepth(t, clock, open(t, clock.Now)) })
	t.Run("ConcurrentWorkersClaimEachJobOnce", func(t *testing.T) { clock := NewClock(time.Now()); queueConcurrent(t, clock, open(t, clock.Now)) })
}

// t0 is when the suite's jobs were received; job i is received i seconds later.
var t0 = time.Date(2025, 7, 8, 10, 0, 0, 0, time.UTC)

func job(i int, key string) store.Job {
	return store.Job{
		ID:       fmt.Sprintf("delivery-%03d", i),
		Event:    "pull_request",
		Key:      key,
		Payload:  []byte(fmt.Sprintf(`{"action":"opened","number":%d}`, i)),
		Received: t0.Add(time.Duration(i) * time.Second),
	}
}

func enqueue(t *testing.T, q store.Queue, jobs ...store.Job) {
	t.Helper()
	for _, j := range jobs {
		if err := q.Enqueue(ctx(t), j); err != nil {
			t.Fatalf("Enqueue %s: %v", j.ID, err)
		}
	}
}

// claim claims a job, failing t when there is none or on error.
func claim(t *testing.T, clock *Clock, q store.Queue, owner string, lease time.Duration) *store.Claim {
	t.Helper()
	before := clock.Now()
	c, err := q.Claim(ctx(t), owner, lease)
	if err != nil {
		t.Fatalf("Claim by %s: %v", owner, err)
	}
	if c == nil {
		t.Fatalf("Claim by %s: nothing to claim, want a job", owner)
	}
	if c.Owner != owner {
		t.Errorf("claim of %s: Owner %q, want %q", c.Job.ID, c.Owner, owner)
	}
	if lo, hi := before.Add(lease-time.Second), clock.Now().Add(lease+time.Second); c.Expires.Before(lo) || c.Expires.After(hi) {
		t.Errorf("claim of %s: Expires %s, want about now+%s", c.Job.ID, c.Expires, lease)
	}
	return c
}

// claimNone fails t unless nothing can be claimed.
func claimNone(t *testing.T, q store.Queue, owner string) {
	t.Helper()
	c, err := q.Claim(ctx(t), owner, long)
	if err != nil {
		t.Fatalf("Claim by %s: %v", owner, err)
	}
	if c != nil {
		t.Fatalf("Claim by %s took %s (key %s), want nothing claimable", owner, c.Job.ID, c.Job.Key)
	}
}

func done(t *testing.T, q store.Queue, c *store.Claim, r store.Result) {
	t.Helper()
	if err := q.Done(ctx(t), c, r); err != nil {
		t.Fatalf("Done %s: %v", c.Job.ID, err)
	}
}

func depth(t *testing.T, q store.Queue, want int) {
	t.Helper()
	n, err := q.Depth(ctx(t))
	if err != nil {
		t.Fatalf("Depth: %v", err)
	}
	if n != want {
		t.Errorf("Depth = %d, want %d", n, want)
	}
}

func sameJob(t *testing.T, got, want store.Job, attempt int) {
	t.Helper()
	if got.ID != want.ID || got.Event != want.Event || got.Key != want.Key ||
		!bytes.Equal(got.Payload, want.Payload) || !got.Received.Equal(want.Received) || got.Attempt != attempt {
		t.Errorf("claimed job\n  %+v\nwant\n  %+v with Attempt %d", got, want, attempt)
	}
}

func queueOrder(t *testing.T, clock *Clock, q store.Queue) {
	jobs := []store.Job{job(1, "o/r#1"), job(2, "o/r#2"), job(3, "o/r")}
	// Enqueued newest first: the order of claims follows Received.
	enqueue(t, q, jobs[2], jobs[0], jobs[1])
	var claims []*store.Claim
	for _, want := range jobs {
		c := claim(t, clock, q, "worker-1", long)
		sameJob(t, c.Job, want, 1)
		claims = append(claims, c)
	}
	claimNone(t, q, "worker-2")
	for _, c := range claims {
		done(t, q, c, store.ResultOK)
	}
	claimNone(t, q, "worker-2")
	depth(t, q, 0)
}

func queueEmpty(t *testing.T, clock *Clock, q store.Queue) {
	claimNone(t, q, "worker-1")
	depth(t, q, 0)
}

func queueDuplicate(t *testing.T, clock *Clock, q store.Queue) {
	j := job(1, "o/r#1")
	again := func(state string) {
		t.Helper()
		err := q.Enqueue(ctx(t), j)
		if !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("Enqueue of %s while %s: %v, want ErrDuplicate", j.ID, state, err)
		}
	}
	enqueue(t, q, j)
	again("queued")
	c := claim(t, clock, q, "worker-1", long)
	again("claimed")
	done(t, q, c, store.ResultOK)
	again("done ok")
	claimNone(t, q, "worker-1")
	depth(t, q, 0)
}

func queueRedelivery(t *testing.T, clock *Clock, q store.Queue) {
	j := job(1, "o/r#1")
	enqueue(t, q, j)
	c1 := claim(t, clock, q, "worker-1", long)
	done(t, q, c1, store.ResultFailed)
	depth(t, q, 0)

	redelivered := j
	redelivered.Payload = []byte(`{"action":"synchronize"}`)
	redelivered.Received = t0.Add(time.Hour)
	enqueue(t, q, redelivered)
	depth(t, q, 1)
	c2 := claim(t, clock, q, "worker-2", long)
	// The redelivery is a job of its own: its first claim is attempt 1.
	sameJob(t, c2.Job, redelivered, 1)
	if c2.Token == c1.Token {
		t.Errorf("the redelivery's claim has the token of the first delivery's claim (%d)", c1.Token)
	}
	if err := q.Done(ctx(t), c1, store.ResultOK); !errors.Is(err, store.ErrLost) {
		t.Errorf("Done with the first delivery's claim: %v, want ErrLost", err)
	}
	done(t, q, c2, store.ResultOK)
	if err := q.Enqueue(ctx(t), j); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("Enqueue after the redelivery was done ok: %v, want ErrDuplicate", err)
	}
}

func queueKeySerialization(t *testing.T, clock *Clock, q store.Queue) {
	a, b, other := job(1, "o/r#1"), job(2, "o/r#1"), job(3, "o/r#2")
	enqueue(t, q, a, b, other)
	ca := claim(t, clock, q, "worker-1", long)
	sameJob(t, ca.Job, a, 1)
	// b's key is held by a's claim: the next claim skips it.
	cother := claim(t, clock, q, "worker-2", long)
	sameJob(t, cother.Job, other, 1)
	claimNone(t, q, "worker-3")
	done(t, q, cother, store.ResultOK)
	claimNone(t, q, "worker-3")

	done(t, q, ca, store.ResultFailed)
	cb := claim(t, clock, q, "worker-3", long)
	sameJob(t, cb.Job, b, 1)
	done(t, q, cb, store.ResultOK)
	depth(t, q, 0)
}

func queueExpiry(t *testing.T, clock *Clock, q store.Queue) {
	a, b := job(1, "o/r#1"), job(2, "o/r#1")
	enqueue(t, q, a, b)
	c1 := claim(t, clock, q, "worker-1", short)
	sameJob(t, c1.Job, a, 1)

	// worker-1 dies. Until its lease ends nothing is claimable (b shares
	// a's key); after, a is claimable again, one attempt higher.
	clock.Set(c1.Expires.Add(-time.Millisecond))
	claimNone(t, q, "worker-2")
	clock.Pass(c1.Expires)
	c2 := claim(t, clock, q, "worker-2", long)
	sameJob(t, c2.Job, a, 2)
	if c2.Owner != "worker-2" || c2.Token == c1.Token {
		t.Errorf("reclaim: Owner %q Token %d, want worker-2 and a token other than %d", c2.Owner, c2.Token, c1.Token)
	}
	if err := q.Extend(ctx(t), c1, long); !errors.Is(err, store.ErrLost) {
		t.Errorf("Extend of the expired claim: %v, want ErrLost", err)
	}
	if err := q.Done(ctx(t), c1, store.ResultOK); !errors.Is(err, store.ErrLost) {
		t.Errorf("Done of the expired claim: %v, want ErrLost", err)
	}
	// The old claim's Done did not free the key.
	claimNone(t, q, "worker-3")
	done(t, q, c2, store.ResultOK)
	cb := claim(t, clock, q, "worker-3", long)
	sameJob(t, cb.Job, b, 1)
	done(t, q, cb, store.ResultOK)
	depth(t, q, 0)
}

func queueLapsed(t *testing.T, clock *Clock, q store.Queue) {
	j := job(1, "o/r#1")
	enqueue(t, q, j)
	c1 := claim(t, clock, q, "worker-1", short)
	// Nobody took the job over yet; still, a claim past its lease is no
	// longer the job's live claim.
	clock.Pass(c1.Expires)
	if err := q.Extend(ctx(t), c1, long); !errors.Is(err, store.ErrLost) {
		t.Errorf("Extend of a claim past its lease: %v, want ErrLost", err)
	}
	if err := q.Done(ctx(t), c1, store.ResultOK); !errors.Is(err, store.ErrLost) {
		t.Errorf("Done of a claim past its lease: %v, want ErrLost", err)
	}
	c2 := claim(t, clock, q, "worker-2", long)
	sameJob(t, c2.Job, j, 2)
	done(t, q, c2, store.ResultOK)
	depth(t, q, 0)
}

func queueExtend(t *testing.T, clock *Clock, q store.Queue) {
	enqueue(t, q, job(1, "o/r#1"))
	c := claim(t, clock, q, "worker-1", medium)
	first := c.Expires
	if err := q.Extend(ctx(t), c, long); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	if !c.Expires.After(first) {
		t.Errorf("Extend left Expires at %s, want it moved on", c.Expires)
	}
	clock.Pass(first)
	claimNone(t, q, "worker-2")
	done(t, q, c, store.ResultOK)
	depth(t, q, 0)
}

func queueDepth(t *testing.T, clock *Clock, q store.Queue) {
	depth(t, q, 0)
	enqueue(t, q, job(1, "a"), job(2, "b"), job(3, "c"))
	depth(t, q, 3)
	c := claim(t, clock, q, "worker-1", long)
	depth(t, q, 3)
	done(t, q, c, store.ResultOK)
	depth(t, q, 2)
	c = claim(t, clock, q, "worker-1", long)
	done(t, q, c, store.ResultFailed)
	depth(t, q, 1)
}

func queueConcurrent(t *testing.T, clock *Clock, q store.Queue) {
	const jobs, workers = 40, 6
	for i := range jobs {
		enqueue(t, q, job(i, fmt.Sprintf("o/r#%d", i%10)))
	}
	var (
		mu      sync.Mutex
		claimed = map[string]int{}
		running = map[string]string{}   // key -> job
		order   = map[string][]string{} // key -> jobs in the order claimed
		wg      sync.WaitGroup
		failed  = make(chan error, workers)
	)
	deadline := time.Now().Add(bound)
	for w := range workers {
		wg.Go(func() {
			owner := fmt.Sprintf("worker-%d", w)
			for time.Now().Before(deadline) {
				c, err := q.Claim(ctx(t), owner, long)
				if err != nil {
					failed <- err
					return
				}
				mu.Lock()
				if c == nil {
					finished := len(claimed) == jobs && len(running) == 0
					mu.Unlock()
					if finished {
						return
					}
					time.Sleep(5 * time.Millisecond)
					continue
				}
				claimed[c.Job.ID]++
				if other, busy := running[c.Job.Key]; busy {
					failed <- fmt.Errorf("%s claimed while %s of the same key %s runs", c.Job.ID, other, c.Job.Key)
				}
				running[c.Job.Key] = c.Job.ID
				order[c.Job.Key] = append(order[c.Job.Key], c.Job.ID)
				mu.Unlock()

				mu.Lock()
				delete(running, c.Job.Key)
				mu.Unlock()
				if err := q.Done(ctx(t), c, store.ResultOK); err != nil {
					failed <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Error(err)
	}
	if len(claimed) != jobs {
		t.Errorf("%d of %d jobs were claimed", len(claimed), jobs)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("%s was claimed %d times, want once", id, n)
		}
	}
	for key, ids := range order {
		if !slices.IsSorted(ids) {
			t.Errorf("jobs of key %s claimed in the order %v, want oldest first", key, ids)
		}
	}
	depth(t, q, 0)
}
