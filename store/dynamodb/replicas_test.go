package dynamodb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
	"github.com/ducksnest/nestbot/store/dynamodb"
)

// Two replicas on one table both receive the same 500 deliveries (GitHub
// sends each to one, but a redelivery or a load balancer's retry can reach
// the other) while their workers drain the queue: each delivery is
// accepted once and processed once, and no two jobs of one Key overlap.
func TestTwoReplicasProcessEachDeliveryOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("processes 500 deliveries on dynalite (several seconds)")
	}
	const (
		deliveries = 500
		workers    = 4 // per replica
		keys       = 40
	)
	l := newLab(t)
	table := l.fresh(t) // creates the table
	replicas := []*dynamodb.Store{table, l.client(t, table.Table())}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var (
		mu        sync.Mutex
		accepted  = map[string]int{}
		processed = map[string]int{}
		running   = map[string]string{}   // Key -> job running
		order     = map[string][]string{} // Key -> jobs in the order claimed
		overlaps  []string
		errs      []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	t0 := time.Now()
	var intake, pool sync.WaitGroup
	for r, s := range replicas {
		intake.Go(func() {
			for i := range deliveries {
				j := store.Job{
					ID:       fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
					Event:    "pull_request",
					Key:      fmt.Sprintf("ducksnest/infra#%d", i%keys),
					Payload:  []byte(fmt.Sprintf(`{"action":"synchronize","number":%d}`, i%keys)),
					Received: t0.Add(time.Duration(i) * time.Millisecond),
				}
				err := s.Enqueue(ctx, j)
				switch {
				case err == nil:
					mu.Lock()
					accepted[j.ID]++
					mu.Unlock()
				case !errors.Is(err, store.ErrDuplicate):
					fail(fmt.Errorf("replica %d: %w", r, err))
					return
				}
			}
		})
		for w := range workers {
			pool.Go(func() {
				owner := fmt.Sprintf("replica-%d/worker-%d", r, w)
				for ctx.Err() == nil {
					c, err := s.Claim(ctx, owner, time.Minute)
					if err != nil {
						fail(err)
						return
					}
					mu.Lock()
					if c == nil {
						finished := len(processed) == deliveries && len(running) == 0
						mu.Unlock()
						if finished {
							return
						}
						time.Sleep(5 * time.Millisecond)
						continue
					}
					processed[c.Job.ID]++
					if other, ok := running[c.Job.Key]; ok {
						overlaps = append(overlaps, fmt.Sprintf("%s and %s of %s", other, c.Job.ID, c.Job.Key))
					}
					running[c.Job.Key] = c.Job.ID
					order[c.Job.Key] = append(order[c.Job.Key], c.Job.ID)
					mu.Unlock()

					mu.Lock()
					delete(running, c.Job.Key)
					mu.Unlock()
					if err := s.Done(ctx, c, store.ResultOK); err != nil {
						fail(fmt.Errorf("%s: %w", owner, err))
						return
					}
				}
			})
		}
	}
	intake.Wait()
	pool.Wait()
	elapsed := time.Since(t0)
	for _, err := range errs {
		t.Error(err)
	}
	if ctx.Err() != nil && len(errs) == 0 {
		t.Fatalf("not drained within the deadline: %d of %d processed", len(processed), deliveries)
	}
	once := 0
	for i := range deliveries {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		if accepted[id] != 1 || processed[id] != 1 {
			t.Errorf("delivery %s: accepted %d times, processed %d times; want once each", id, accepted[id], processed[id])
			continue
		}
		once++
	}
	// Each replica enqueues in id order, so the deliveries are accepted in
	// id order, and each Key's jobs must be claimed in that order.
	for key, ids := range order {
		if !slices.IsSorted(ids) {
			t.Errorf("jobs of %s claimed in the order %v, want oldest first", key, ids)
		}
	}
	for _, o := range overlaps {
		t.Errorf("jobs of one key ran at once: %s", o)
	}
	if n, err := replicas[1].Depth(context.Background()); err != nil || n != 0 {
		t.Errorf("Depth after draining = %d, %v; want 0", n, err)
	}
	t.Logf("%d deliveries, each enqueued by both replicas: %d accepted once and processed once, in %s (%d workers per replica)",
		deliveries, once, elapsed.Round(time.Millisecond), workers)
}
