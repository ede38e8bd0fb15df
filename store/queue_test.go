package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

var received = time.Date(2025, 7, 8, 10, 0, 0, 0, time.UTC)

func testJob(i int, key string) store.Job {
	return store.Job{
		ID:       fmt.Sprintf("delivery-%04d", i),
		Event:    "push",
		Key:      key,
		Payload:  []byte(fmt.Sprintf(`{"ref":"refs/heads/main","n":%d}`, i)),
		Received: received.Add(time.Duration(i) * time.Second),
	}
}

// openEmpty opens a fresh state file.
func openEmpty(t *testing.T) *store.DB {
	return open(t, filepath.Join(t.TempDir(), "nestbot.db"))
}

func mustClaim(t *testing.T, q store.Queue, owner string) *store.Claim {
	t.Helper()
	c, err := q.Claim(context.Background(), owner, time.Minute)
	if err != nil || c == nil {
		t.Fatalf("Claim by %s = %v, %v; want a job", owner, c, err)
	}
	return c
}

func TestQueueEnqueuedJobSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db := open(t, path)
	j := testJob(1, "o/r")
	j.Payload = bytes.Repeat([]byte("x"), 3<<20) // a large delivery
	if err := db.Queue().Enqueue(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	q := open(t, path).Queue()
	c := mustClaim(t, q, "w")
	if c.Job.ID != j.ID || !bytes.Equal(c.Job.Payload, j.Payload) || !c.Job.Received.Equal(j.Received) || c.Job.Attempt != 1 {
		t.Errorf("after reopen claimed %s (%d payload bytes, received %s, attempt %d); want %s as enqueued, attempt 1",
			c.Job.ID, len(c.Job.Payload), c.Job.Received, c.Job.Attempt, j.ID)
	}
}

func TestQueueClaimsOfAnEarlierProcessAreFreeAfterOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db := open(t, path)
	ctx := context.Background()
	if err := db.Queue().Enqueue(ctx, testJob(1, "o/r")); err != nil {
		t.Fatal(err)
	}
	old, err := db.Queue().Claim(ctx, "dead-worker", time.Hour)
	if err != nil || old == nil {
		t.Fatalf("Claim = %v, %v", old, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	q := open(t, path).Queue()
	c := mustClaim(t, q, "new-worker") // the hour-long lease does not hold it
	if c.Job.ID != old.Job.ID || c.Job.Attempt != 2 || c.Token <= old.Token {
		t.Errorf("reclaimed %s attempt %d token %d; want %s attempt 2, token above %d", c.Job.ID, c.Job.Attempt, c.Token, old.Job.ID, old.Token)
	}
	if err := q.Done(ctx, old, store.ResultOK); !errors.Is(err, store.ErrLost) {
		t.Errorf("Done with the earlier process's claim: %v, want ErrLost", err)
	}
	if err := q.Done(ctx, c, store.ResultOK); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, testJob(1, "o/r")); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("Enqueue after done: %v, want ErrDuplicate", err)
	}
}

func TestQueueConcurrentEnqueuesAreEachStoredOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db := open(t, path)
	const ids, copies = 60, 4 // every delivery arrives four times at once
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		accepted   = map[string]int{}
		duplicates int
	)
	for i := range ids * copies {
		wg.Go(func() {
			err := db.Queue().Enqueue(context.Background(), testJob(i%ids, fmt.Sprintf("o/r#%d", i%7)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted[testJob(i%ids, "").ID]++
			case errors.Is(err, store.ErrDuplicate):
				duplicates++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(accepted) != ids || duplicates != ids*(copies-1) {
		t.Errorf("%d ids accepted, %d duplicates; want %d and %d", len(accepted), duplicates, ids, ids*(copies-1))
	}
	for id, n := range accepted {
		if n != 1 {
			t.Errorf("%s accepted %d times", id, n)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	q := open(t, path).Queue()
	if n, err := q.Depth(context.Background()); err != nil || n != ids {
		t.Errorf("Depth after reopen = %d, %v; want %d", n, err, ids)
	}
	seen := map[string]bool{}
	for {
		c, err := q.Claim(context.Background(), "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		if seen[c.Job.ID] {
			t.Errorf("%s claimed twice", c.Job.ID)
		}
		seen[c.Job.ID] = true
		if err := q.Done(context.Background(), c, store.ResultOK); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != ids {
		t.Errorf("%d jobs ran, want %d", len(seen), ids)
	}
}

func TestQueueAnOlderJobArrivingLaterRunsFirstUnlessItsKeyIsRunning(t *testing.T) {
	q := openEmpty(t).Queue()
	ctx := context.Background()
	newer, older, oldest := testJob(5, "o/r"), testJob(3, "o/r"), testJob(1, "o/r")
	for _, j := range []store.Job{newer, older} {
		if err := q.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	c := mustClaim(t, q, "w")
	if c.Job.ID != older.ID {
		t.Fatalf("claimed %s first, want the older %s", c.Job.ID, older.ID)
	}
	// While older runs, an even older job of the key arrives: it waits.
	if err := q.Enqueue(ctx, oldest); err != nil {
		t.Fatal(err)
	}
	if c2, err := q.Claim(ctx, "w2", time.Minute); c2 != nil || err != nil {
		t.Fatalf("Claim while the key runs = %+v, %v; want nothing", c2, err)
	}
	if err := q.Done(ctx, c, store.ResultOK); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{oldest.ID, newer.ID} {
		c := mustClaim(t, q, "w")
		if c.Job.ID != want {
			t.Errorf("claimed %s, want %s", c.Job.ID, want)
		}
		if err := q.Done(ctx, c, store.ResultOK); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQueueRefusesBadInput(t *testing.T) {
	q := openEmpty(t).Queue()
	ctx := context.Background()
	for name, j := range map[string]store.Job{
		"no id":      {Event: "push", Key: "o/r"},
		"no event":   {ID: "d1", Key: "o/r"},
		"no key":     {ID: "d1", Event: "push"},
		"NUL in key": {ID: "d1", Event: "push", Key: "o/r\x00x"},
		"long id":    {ID: strings.Repeat("d", 300), Event: "push", Key: "o/r"},
		"invalid id": {ID: "d\xff", Event: "push", Key: "o/r"},
		"long key":   {ID: "d1", Event: "push", Key: strings.Repeat("k", 2000)},
	} {
		if err := q.Enqueue(ctx, j); err == nil || !strings.HasPrefix(err.Error(), "store: enqueue") {
			t.Errorf("%s: Enqueue = %v, want an error that says it was the enqueue", name, err)
		}
	}
	if n, _ := q.Depth(ctx); n != 0 {
		t.Errorf("Depth = %d after refused jobs", n)
	}
	if _, err := q.Claim(ctx, "", time.Minute); err == nil {
		t.Error("Claim without an owner succeeded")
	}
	if _, err := q.Claim(ctx, "w", 0); err == nil {
		t.Error("Claim with a zero lease succeeded")
	}
	if err := q.Enqueue(ctx, testJob(1, "o/r")); err != nil {
		t.Fatal(err)
	}
	c := mustClaim(t, q, "w")
	if err := q.Done(ctx, c, "maybe"); err == nil {
		t.Error("Done with an unknown result succeeded")
	}
	if err := q.Extend(ctx, c, -time.Second); err == nil {
		t.Error("Extend with a negative lease succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := q.Enqueue(cancelled, testJob(2, "o/r")); !errors.Is(err, context.Canceled) {
		t.Errorf("Enqueue with a cancelled context: %v", err)
	}
}

// BenchmarkEnqueueParallel measures durable acceptance under concurrency:
// every Enqueue is fsynced before it returns, in shared commits.
func BenchmarkEnqueueParallel(b *testing.B) {
	db, err := store.Open(filepath.Join(b.TempDir(), "nestbot.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	q := db.Queue()
	payload := bytes.Repeat([]byte("p"), 7<<10)
	var n sync.Mutex
	next := 0
	b.SetParallelism(16) // 16 × GOMAXPROCS callers, as a busy intake has
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Lock()
			next++
			id := next
			n.Unlock()
			j := store.Job{ID: fmt.Sprintf("d-%d", id), Event: "push", Key: "o/r", Payload: payload}
			if err := q.Enqueue(context.Background(), j); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
