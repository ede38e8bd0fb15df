package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

// TestLocker runs the conformance suite of store.Locker. open returns a
// fresh, empty locker for each subtest, whose clock is now: the suite moves
// it past a lease's end instead of waiting the lease out.
func TestLocker(t *testing.T, open func(t *testing.T, now func() time.Time) store.Locker) {
	t.Run("AcquireHeldByAnotherIsLockedError", func(t *testing.T) { clock := NewClock(time.Now()); lockHeld(t, clock, open(t, clock.Now)) })
	t.Run("RenewExtendsTheLease", func(t *testing.T) { clock := NewClock(time.Now()); lockRenew(t, clock, open(t, clock.Now)) })
	t.Run("RenewPastTheLeaseIsLost", func(t *testing.T) { clock := NewClock(time.Now()); lockLapsed(t, clock, open(t, clock.Now)) })
	t.Run("ReleaseFreesAndTokensGrow", func(t *testing.T) { clock := NewClock(time.Now()); lockRelease(t, clock, open(t, clock.Now)) })
	t.Run("BreakFreesAndTokensGrow", func(t *testing.T) { clock := NewClock(time.Now()); lockBreak(t, clock, open(t, clock.Now)) })
	t.Run("ExpiredLeaseIsTakenOverWithAHigherToken", func(t *testing.T) { clock := NewClock(time.Now()); lockExpiry(t, clock, open(t, clock.Now)) })
	t.Run("FencedAcceptsTheCurrentLeaseAndRefusesAStaleOne", func(t *testing.T) { clock := NewClock(time.Now()); lockFenced(t, clock, open(t, clock.Now)) })
	t.Run("FencedRefusesReleasedBrokenAndExpiredLeases", func(t *testing.T) { clock := NewClock(time.Now()); lockFencedGone(t, clock, open(t, clock.Now)) })
	t.Run("LocksAreIndependent", func(t *testing.T) { clock := NewClock(time.Now()); lockIndependent(t, clock, open(t, clock.Now)) })
}

const fleetLock = "fleet/ducksnest"

func acquire(t *testing.T, clock *Clock, l store.Locker, name, owner string, ttl time.Duration) store.Lease {
	t.Helper()
	before := clock.Now()
	lease, err := l.Acquire(ctx(t), name, owner, ttl)
	if err != nil {
		t.Fatalf("Acquire %s by %s: %v", name, owner, err)
	}
	if lease.Name != name || lease.Owner != owner || lease.Token == 0 {
		t.Errorf("Acquire %s by %s: lease %+v, want that name and owner and a token", name, owner, lease)
	}
	if lo, hi := before.Add(ttl-time.Second), clock.Now().Add(ttl+time.Second); lease.Expires.Before(lo) || lease.Expires.After(hi) {
		t.Errorf("Acquire %s: Expires %s, want about now+%s", name, lease.Expires, ttl)
	}
	return lease
}

// locked fails t unless owner's Acquire of name fails with a LockedError
// naming holder.
func locked(t *testing.T, l store.Locker, name, owner string, holder store.Lease) {
	t.Helper()
	_, err := l.Acquire(ctx(t), name, owner, long)
	var le *store.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("Acquire %s by %s while %s holds it: %v, want a *store.LockedError", name, owner, holder.Owner, err)
	}
	if le.Lease.Owner != holder.Owner || le.Lease.Token != holder.Token || le.Lease.Name != name {
		t.Errorf("LockedError names %+v, want the holder's lease %+v", le.Lease, holder)
	}
}

func holder(t *testing.T, l store.Locker, name string) (store.Lease, bool) {
	t.Helper()
	h, ok, err := l.Holder(ctx(t), name)
	if err != nil {
		t.Fatalf("Holder %s: %v", name, err)
	}
	return h, ok
}

func fenced(t *testing.T, l store.Locker, lease store.Lease, key, value string) {
	t.Helper()
	if err := l.Fenced(ctx(t), lease, key, []byte(value)); err != nil {
		t.Fatalf("Fenced %s by %s (token %d): %v", key, lease.Owner, lease.Token, err)
	}
}

func refused(t *testing.T, l store.Locker, lease store.Lease, key, value, why string) {
	t.Helper()
	if err := l.Fenced(ctx(t), lease, key, []byte(value)); !errors.Is(err, store.ErrFenced) {
		t.Errorf("Fenced %s by %s (token %d) %s: %v, want ErrFenced", key, lease.Owner, lease.Token, why, err)
	}
}

// stored fails t unless key holds want ("" for nothing).
func stored(t *testing.T, l store.Locker, key, want string) {
	t.Helper()
	got, err := l.Get(ctx(t), key)
	if want == "" {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get %s: %q, %v; want ErrNotFound", key, got, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Errorf("Get %s = %q, want %q", key, got, want)
	}
}

func lockHeld(t *testing.T, clock *Clock, l store.Locker) {
	if _, ok := holder(t, l, fleetLock); ok {
		t.Fatal("Holder of a lock never taken: ok, want none")
	}
	a := acquire(t, clock, l, fleetLock, "replica-a", long)
	h, ok := holder(t, l, fleetLock)
	if !ok || h.Owner != "replica-a" || h.Token != a.Token || !h.Expires.Equal(a.Expires) {
		t.Errorf("Holder = %+v, %v; want %+v", h, ok, a)
	}
	locked(t, l, fleetLock, "replica-b", a)
}

func lockRenew(t *testing.T, clock *Clock, l store.Locker) {
	a := acquire(t, clock, l, fleetLock, "replica-a", medium)
	r, err := l.Renew(ctx(t), a, long)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if r.Token != a.Token || r.Owner != a.Owner || !r.Expires.After(a.Expires) {
		t.Errorf("Renew = %+v, want the same token and owner, expiring after %s", r, a.Expires)
	}
	clock.Pass(a.Expires)
	locked(t, l, fleetLock, "replica-b", r)
	if _, _, err := l.Break(ctx(t), fleetLock); err != nil {
		t.Fatalf("Break: %v", err)
	}
	if _, err := l.Renew(ctx(t), r, long); !errors.Is(err, store.ErrLost) {
		t.Errorf("Renew of a broken lease: %v, want ErrLost", err)
	}
}

func lockLapsed(t *testing.T, clock *Clock, l store.Locker) {
	a := acquire(t, clock, l, fleetLock, "replica-a", short)
	clock.Pass(a.Expires)
	if _, err := l.Renew(ctx(t), a, long); !errors.Is(err, store.ErrLost) {
		t.Errorf("Renew of a lease past its end, nobody else holding it: %v, want ErrLost", err)
	}
	if h, ok := holder(t, l, fleetLock); ok {
		t.Errorf("Holder of a lease past its end = %+v, want none", h)
	}
	if _, ok, err := l.Break(ctx(t), fleetLock); err != nil || ok {
		t.Errorf("Break of a lease past its end: ok %v, %v; want false, nil", ok, err)
	}
	b := acquire(t, clock, l, fleetLock, "replica-b", long)
	if b.Token <= a.Token {
		t.Errorf("token after a lapsed lease %d, want above %d", b.Token, a.Token)
	}
}

func lockRelease(t *testing.T, clock *Clock, l store.Locker) {
	a := acquire(t, clock, l, fleetLock, "replica-a", long)
	if err := l.Release(ctx(t), a); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if h, ok := holder(t, l, fleetLock); ok {
		t.Errorf("Holder after Release = %+v, want none", h)
	}
	b := acquire(t, clock, l, fleetLock, "replica-b", long)
	if b.Token <= a.Token {
		t.Errorf("token after Release %d, want above %d", b.Token, a.Token)
	}
	if err := l.Release(ctx(t), a); err != nil {
		t.Errorf("Release of a lease already released: %v, want nil", err)
	}
	if h, ok := holder(t, l, fleetLock); !ok || h.Token != b.Token {
		t.Errorf("a stale Release let go of the new lease: Holder = %+v, %v", h, ok)
	}
	if _, err := l.Renew(ctx(t), a, long); !errors.Is(err, store.ErrLost) {
		t.Errorf("Renew of a released lease: %v, want ErrLost", err)
	}
}

func lockBreak(t *testing.T, clock *Clock, l store.Locker) {
	if _, ok, err := l.Break(ctx(t), fleetLock); err != nil || ok {
		t.Fatalf("Break of a lock never taken: ok %v, %v; want false, nil", ok, err)
	}
	a := acquire(t, clock, l, fleetLock, "replica-a", long)
	broken, ok, err := l.Break(ctx(t), fleetLock)
	if err != nil || !ok || broken.Owner != a.Owner || broken.Token != a.Token {
		t.Fatalf("Break = %+v, %v, %v; want %+v", broken, ok, err, a)
	}
	if h, ok := holder(t, l, fleetLock); ok {
		t.Errorf("Holder after Break = %+v, want none", h)
	}
	if _, ok, err := l.Break(ctx(t), fleetLock); err != nil || ok {
		t.Errorf("second Break: ok %v, %v; want false, nil", ok, err)
	}
	b := acquire(t, clock, l, fleetLock, "replica-b", long)
	if b.Token <= a.Token {
		t.Errorf("token after Break %d, want above %d", b.Token, a.Token)
	}
}

func lockExpiry(t *testing.T, clock *Clock, l store.Locker) {
	a := acquire(t, clock, l, fleetLock, "replica-a", short)
	// replica-a dies holding the lock: replica-b gets it once the lease
	// ends, not a moment before.
	clock.Set(a.Expires.Add(-time.Millisecond))
	locked(t, l, fleetLock, "replica-b", a)
	clock.Pass(a.Expires)
	b := acquire(t, clock, l, fleetLock, "replica-b", long)
	if b.Token <= a.Token {
		t.Errorf("token after takeover %d, want above %d", b.Token, a.Token)
	}
	if _, err := l.Renew(ctx(t), a, long); !errors.Is(err, store.ErrLost) {
		t.Errorf("Renew of the lease taken over: %v, want ErrLost", err)
	}
	if h, ok := holder(t, l, fleetLock); !ok || h.Token != b.Token {
		t.Errorf("Holder = %+v, %v; want replica-b's lease", h, ok)
	}
}

func lockFenced(t *testing.T, clock *Clock, l store.Locker) {
	const key = "fleet/ducksnest/applied"
	stored(t, l, key, "")
	a := acquire(t, clock, l, fleetLock, "replica-a", medium)
	fenced(t, l, a, key, "rev-1")
	stored(t, l, key, "rev-1")
	fenced(t, l, a, key, "rev-2")
	stored(t, l, key, "rev-2")

	clock.Pass(a.Expires)
	b := acquire(t, clock, l, fleetLock, "replica-b", long)
	refused(t, l, a, key, "rev-stale", "after its lease was taken over")
	stored(t, l, key, "rev-2")
	fenced(t, l, b, key, "rev-3")
	refused(t, l, a, key, "rev-stale", "after the new holder wrote")
	stored(t, l, key, "rev-3")
}

func lockFencedGone(t *testing.T, clock *Clock, l store.Locker) {
	released := acquire(t, clock, l, fleetLock, "replica-a", long)
	if err := l.Release(ctx(t), released); err != nil {
		t.Fatal(err)
	}
	refused(t, l, released, "k-released", "v", "after Release")
	stored(t, l, "k-released", "")

	broken := acquire(t, clock, l, fleetLock, "replica-a", long)
	if _, _, err := l.Break(ctx(t), fleetLock); err != nil {
		t.Fatal(err)
	}
	refused(t, l, broken, "k-broken", "v", "after Break")
	stored(t, l, "k-broken", "")

	expired := acquire(t, clock, l, fleetLock, "replica-a", short)
	clock.Pass(expired.Expires)
	refused(t, l, expired, "k-expired", "v", "after its lease ended, nobody else holding it")
	stored(t, l, "k-expired", "")

	forged := acquire(t, clock, l, fleetLock, "replica-a", long)
	forged.Token++
	refused(t, l, forged, "k-forged", "v", "with a token never given")
	stored(t, l, "k-forged", "")
}

func lockIndependent(t *testing.T, clock *Clock, l store.Locker) {
	a := acquire(t, clock, l, "fleet/one", "replica-a", long)
	b := acquire(t, clock, l, "fleet/two", "replica-b", long)
	locked(t, l, "fleet/one", "replica-b", a)
	locked(t, l, "fleet/two", "replica-a", b)
	fenced(t, l, a, "one/applied", "a")
	fenced(t, l, b, "two/applied", "b")
	stored(t, l, "one/applied", "a")
	stored(t, l, "two/applied", "b")
}
