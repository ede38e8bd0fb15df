package dynamodb_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

// A replica holding the fleet lock, renewing it, is killed: it stops
// renewing and never releases. The other replica takes the lock once the
// lease ends, with a higher token, and the dead replica's late writes are
// refused by the token, before and after the new holder writes.
func TestKilledHolderIsTakenOverAndFencedOut(t *testing.T) {
	const (
		lock    = "fleet/ducksnest"
		applied = "fleet/ducksnest/applied"
		ttl     = 500 * time.Millisecond
	)
	l := newLab(t)
	a := l.fresh(t)
	b := l.client(t, a.Table())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first, err := a.Acquire(ctx, lock, "replica-a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Fenced(ctx, first, applied, []byte("rev-a")); err != nil {
		t.Fatal(err)
	}

	// replica-a renews its lease every ttl/4 until it is killed.
	var (
		mu       sync.Mutex
		held     = first
		renewals int
		renewErr error
	)
	alive, kill := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(ttl / 4)
		defer tick.Stop()
		for {
			select {
			case <-alive.Done():
				return
			case <-tick.C:
			}
			mu.Lock()
			lease := held
			mu.Unlock()
			next, err := a.Renew(ctx, lease, ttl)
			mu.Lock()
			if err != nil {
				renewErr = err
			} else {
				held, renewals = next, renewals+1
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	// While replica-a renews, replica-b is refused, for longer than a lease.
	refusedSince := time.Now()
	for {
		_, err := b.Acquire(ctx, lock, "replica-b", ttl)
		var le *store.LockedError
		if !errors.As(err, &le) {
			kill()
			t.Fatalf("replica-b's Acquire while replica-a renews: %v, want a *store.LockedError", err)
		}
		if le.Lease.Owner != "replica-a" || le.Lease.Token != first.Token {
			t.Errorf("LockedError names %+v, want replica-a's lease", le.Lease)
		}
		mu.Lock()
		n, rerr := renewals, renewErr
		mu.Unlock()
		if rerr != nil {
			t.Fatalf("replica-a's renewal: %v", rerr)
		}
		if n >= 4 && time.Since(refusedSince) > 2*ttl {
			break
		}
		if time.Since(refusedSince) > 30*time.Second {
			t.Fatalf("replica-a renewed %d times in 30s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}

	kill()
	<-stopped
	killedAt := time.Now()
	mu.Lock()
	last := held
	mu.Unlock()

	var second store.Lease
	for {
		lease, err := b.Acquire(ctx, lock, "replica-b", time.Minute)
		if err == nil {
			if returned := time.Now(); returned.Before(last.Expires) {
				t.Fatalf("replica-b acquired by %s, before replica-a's last lease ended at %s",
					returned.Format(time.RFC3339Nano), last.Expires.Format(time.RFC3339Nano))
			}
			second = lease
			break
		}
		var le *store.LockedError
		if !errors.As(err, &le) {
			t.Fatalf("replica-b's Acquire: %v", err)
		}
		if time.Since(killedAt) > 30*time.Second {
			t.Fatalf("replica-b did not take over within 30s of the kill (lease %s)", ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}
	takenAt := time.Now()
	if second.Token <= last.Token {
		t.Errorf("replica-b's token %d, want above replica-a's %d", second.Token, last.Token)
	}

	// replica-a's late write, before replica-b wrote anything: refused, and nothing stored.
	if err := a.Fenced(ctx, last, applied, []byte("rev-a-late")); !errors.Is(err, store.ErrFenced) {
		t.Errorf("replica-a's late Fenced: %v, want ErrFenced", err)
	}
	wantStored(t, b, applied, "rev-a")
	if err := b.Fenced(ctx, second, applied, []byte("rev-b")); err != nil {
		t.Fatalf("replica-b's Fenced: %v", err)
	}
	// ... and after.
	if err := a.Fenced(ctx, last, applied, []byte("rev-a-later")); !errors.Is(err, store.ErrFenced) {
		t.Errorf("replica-a's later Fenced: %v, want ErrFenced", err)
	}
	wantStored(t, a, applied, "rev-b")
	if _, err := a.Renew(ctx, last, ttl); !errors.Is(err, store.ErrLost) {
		t.Errorf("replica-a's Renew after the takeover: %v, want ErrLost", err)
	}
	if err := a.Release(ctx, last); err != nil {
		t.Errorf("replica-a's Release after the takeover: %v, want nil", err)
	}
	if h, ok, err := b.Holder(ctx, lock); err != nil || !ok || h.Token != second.Token {
		t.Errorf("Holder after replica-a's stale Release = %+v, %v, %v; want replica-b's lease", h, ok, err)
	}
	mu.Lock()
	n := renewals
	mu.Unlock()
	t.Logf("lease %s, %d renewals: taken over %s after the kill, %s after the last lease ended; tokens %d -> %d",
		ttl, n, takenAt.Sub(killedAt).Round(time.Millisecond), takenAt.Sub(last.Expires).Round(time.Millisecond), last.Token, second.Token)
}

func wantStored(t *testing.T, l store.Locker, key, want string) {
	t.Helper()
	got, err := l.Get(context.Background(), key)
	if err != nil || string(got) != want {
		t.Errorf("Get %s = %q, %v; want %q", key, got, err, want)
	}
}
