package dynamodb_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

// BenchmarkEnqueueClaimDone is one job's life on dynalite: Enqueue (one
// conditional write), Claim (one index query, two conditional writes) and
// Done (two conditional writes), one job at a time.
func BenchmarkEnqueueClaimDone(b *testing.B) {
	s := newLab(b).fresh(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		j := store.Job{ID: fmt.Sprintf("d-%d", i), Event: "push", Key: fmt.Sprintf("o/r#%d", i), Payload: []byte(`{}`)}
		if err := s.Enqueue(ctx, j); err != nil {
			b.Fatal(err)
		}
		c, err := s.Claim(ctx, "bench", time.Minute)
		if err != nil || c == nil {
			b.Fatalf("Claim = %v, %v", c, err)
		}
		if err := s.Done(ctx, c, store.ResultOK); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnqueueClaimDoneParallel is the same with GOMAXPROCS×4
// goroutines sharing one table, so claims contend for the oldest job.
func BenchmarkEnqueueClaimDoneParallel(b *testing.B) {
	s := newLab(b).fresh(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			j := store.Job{ID: fmt.Sprintf("d-%d", i), Event: "push", Key: fmt.Sprintf("o/r#%d", i), Payload: []byte(`{}`)}
			if err := s.Enqueue(ctx, j); err != nil {
				b.Error(err)
				return
			}
			var c *store.Claim
			for c == nil {
				var err error
				if c, err = s.Claim(ctx, "bench", time.Minute); err != nil {
					b.Error(err)
					return
				}
			}
			if err := s.Done(ctx, c, store.ResultOK); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAcquireFencedRelease is one apply's use of the fleet lock:
// Acquire, one fenced write, Release.
func BenchmarkAcquireFencedRelease(b *testing.B) {
	s := newLab(b).fresh(b)
	ctx := context.Background()
	for b.Loop() {
		l, err := s.Acquire(ctx, "fleet/ducksnest", "bench", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Fenced(ctx, l, "fleet/ducksnest/applied", []byte("0123456789abcdef")); err != nil {
			b.Fatal(err)
		}
		if err := s.Release(ctx, l); err != nil {
			b.Fatal(err)
		}
	}
}
