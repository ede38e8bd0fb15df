package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

func TestLocksOfAnEarlierProcessAreFreeAfterOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db := open(t, path)
	ctx := context.Background()
	old, err := db.Locks().Acquire(ctx, "fleet/ducksnest", "dead-apply", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Locks().Fenced(ctx, old, "apply/ducksnest", []byte("step 3")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	l := open(t, path).Locks()
	if h, ok, err := l.Holder(ctx, "fleet/ducksnest"); ok || err != nil {
		t.Errorf("Holder after reopen = %+v, %v, %v; want none", h, ok, err)
	}
	lease, err := l.Acquire(ctx, "fleet/ducksnest", "new-apply", time.Minute)
	if err != nil {
		t.Fatalf("Acquire after reopen: %v (the earlier process's hour-long lease should not hold it)", err)
	}
	if lease.Token <= old.Token {
		t.Errorf("token %d after reopen, want above the earlier %d", lease.Token, old.Token)
	}
	if err := l.Fenced(ctx, old, "apply/ducksnest", []byte("late")); !errors.Is(err, store.ErrFenced) {
		t.Errorf("Fenced with the earlier process's lease: %v, want ErrFenced", err)
	}
	if _, err := l.Renew(ctx, old, time.Minute); !errors.Is(err, store.ErrLost) {
		t.Errorf("Renew of the earlier process's lease: %v, want ErrLost", err)
	}
	if v, err := l.Get(ctx, "apply/ducksnest"); err != nil || string(v) != "step 3" {
		t.Errorf("Get = %q, %v; want what the earlier holder wrote", v, err)
	}
}

func TestLocksRefuseBadInput(t *testing.T) {
	l := openEmpty(t).Locks()
	ctx := context.Background()
	if _, err := l.Acquire(ctx, "", "me", time.Minute); err == nil {
		t.Error("Acquire of a lock without a name succeeded")
	}
	if _, err := l.Acquire(ctx, "fleet", "", time.Minute); err == nil {
		t.Error("Acquire without an owner succeeded")
	}
	if _, err := l.Acquire(ctx, "fleet", "me", 0); err == nil {
		t.Error("Acquire with a zero ttl succeeded")
	}
	lease, err := l.Acquire(ctx, "fleet", "me", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Fenced(ctx, lease, "", []byte("v")); err == nil {
		t.Error("Fenced under an empty key succeeded")
	}
	var locked *store.LockedError
	if _, err := l.Acquire(ctx, "fleet", "you", time.Minute); !errors.As(err, &locked) ||
		locked.Error() == "" || locked.Lease.Owner != "me" {
		t.Errorf("Acquire of a held lock: %v, want a LockedError naming me", err)
	}
}
