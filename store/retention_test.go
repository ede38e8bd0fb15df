package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// clock is a clock the test moves (storetest.Clock, which this package's
// own tests cannot import).
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *clock { return &clock{now: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// openAtClock opens a fresh file whose clock the test moves, standing at
// start; the file closes with the test.
func openAtClock(t *testing.T) (time.Time, *clock, *DB) {
	t.Helper()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := newClock(start)
	db, err := OpenWith(filepath.Join(t.TempDir(), "nestbot.db"), Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return start, c, db
}

// counts returns how many records the jobs and done buckets hold, once
// the state file has every job accepted.
func counts(t *testing.T, db *DB) (jobs, done int) {
	t.Helper()
	if err := db.intake.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.bolt.View(func(tx *bolt.Tx) error {
		qb := tx.Bucket(queueBucket)
		jobs, done = qb.Bucket(jobsBucket).Stats().KeyN, qb.Bucket(doneBucket).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return jobs, done
}

// runJobs enqueues, claims and finishes n jobs with ids prefix-0…, at the clock's time.
func runJobs(t *testing.T, q Queue, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := q.Enqueue(ctx, Job{ID: fmt.Sprintf("%s-%d", prefix, i), Event: "push", Key: "o/r"}); err != nil {
			t.Fatal(err)
		}
		c, err := q.Claim(ctx, "worker", 30*24*time.Hour)
		if err != nil || c == nil {
			t.Fatalf("Claim = %v, %v", c, err)
		}
		if err := q.Done(ctx, c, ResultOK); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDoneDeliveriesArePrunedAfterTheRetention shows the file does not
// keep done deliveries forever: once they are past the retention, each
// Done deletes up to pruneBatch of them, oldest first, until none is left.
func TestDoneDeliveriesArePrunedAfterTheRetention(t *testing.T) {
	start, clock, db := openAtClock(t)
	q := db.Queue()
	old := pruneBatch + 44
	runJobs(t, q, "old", old)
	if jobs, done := counts(t, db); jobs != old || done != old {
		t.Fatalf("after %d deliveries: %d job records, %d done entries; want %d of each", old, jobs, done, old)
	}
	// Within the retention nothing goes.
	clock.Set(start.Add(DeliveryRetention - time.Minute))
	runJobs(t, q, "recent", 1)
	if jobs, _ := counts(t, db); jobs != old+1 {
		t.Fatalf("within the retention: %d job records, want %d", jobs, old+1)
	}
	// Past it, the next Done prunes a batch, the one after that the rest;
	// the delivery done within the retention stays.
	clock.Set(start.Add(DeliveryRetention + time.Minute))
	runJobs(t, q, "new", 1)
	if jobs, done := counts(t, db); jobs != old+2-pruneBatch || done != jobs {
		t.Fatalf("after one Done past the retention: %d job records, %d done entries; want %d of each", jobs, done, old+2-pruneBatch)
	}
	runJobs(t, q, "new2", 1)
	if jobs, done := counts(t, db); jobs != 3 || done != 3 {
		t.Fatalf("after two: %d job records, %d done entries; want 3 (recent, new, new2)", jobs, done)
	}
}

// TestOpenIndexesDoneDeliveriesOfAnOlderFile: a file written before
// pruning has done records and no done bucket; Open indexes them, so they
// are pruned like the rest.
func TestOpenIndexesDoneDeliveriesOfAnOlderFile(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := newClock(start)
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db, err := OpenWith(path, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	runJobs(t, db.Queue(), "old", 5)
	if err := db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(queueBucket).DeleteBucket(doneBucket) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	if db, err = OpenWith(path, Options{Now: clock.Now}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if jobs, done := counts(t, db); jobs != 5 || done != 5 {
		t.Fatalf("reopened: %d job records, %d done entries; want 5 of each", jobs, done)
	}
	clock.Set(start.Add(DeliveryRetention + time.Minute))
	runJobs(t, db.Queue(), "new", 1)
	if jobs, done := counts(t, db); jobs != 1 || done != 1 {
		t.Fatalf("past the retention: %d job records, %d done entries; want only the new one", jobs, done)
	}
}

// TestRedeliveredFailureLeavesNoStaleDoneEntry: a failed delivery enqueued
// again drops its done entry, and its new record is not pruned by the old.
func TestRedeliveredFailureLeavesNoStaleDoneEntry(t *testing.T) {
	start, clock, db := openAtClock(t)
	q, ctx := db.Queue(), context.Background()
	j := Job{ID: "d-1", Event: "push", Key: "o/r"}
	if err := q.Enqueue(ctx, j); err != nil {
		t.Fatal(err)
	}
	c, _ := q.Claim(ctx, "worker", time.Hour)
	if err := q.Done(ctx, c, ResultFailed); err != nil {
		t.Fatal(err)
	}
	clock.Set(start.Add(DeliveryRetention - time.Hour))
	if err := q.Enqueue(ctx, j); err != nil {
		t.Fatal(err)
	}
	if jobs, done := counts(t, db); jobs != 1 || done != 0 {
		t.Fatalf("redelivered: %d job records, %d done entries; want the queued job and no done entry", jobs, done)
	}
	clock.Set(start.Add(DeliveryRetention + time.Hour))
	runJobs(t, q, "other", 1) // its Done prunes; the queued d-1 stays
	if n, err := q.Depth(ctx); err != nil || n != 1 {
		t.Fatalf("Depth = %d, %v; want d-1 still queued", n, err)
	}
}
