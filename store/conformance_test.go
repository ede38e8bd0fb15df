package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
	"github.com/ducksnest/nestbot/store/storetest"
)

// The bbolt implementations run the conformance suite every implementation
// of the contracts runs, each subtest on a fresh file.

func TestQueueConformance(t *testing.T) {
	storetest.TestQueue(t, func(t *testing.T, now func() time.Time) store.Queue { return openAt(t, now).Queue() })
}

func TestLockerConformance(t *testing.T) {
	storetest.TestLocker(t, func(t *testing.T, now func() time.Time) store.Locker { return openAt(t, now).Locks() })
}

func TestArtifactsConformance(t *testing.T) {
	storetest.TestArtifacts(t, func(t *testing.T) store.Artifacts { return openEmpty(t).Artifacts() })
}

func TestRetentionConformance(t *testing.T) {
	storetest.TestRetention(t, func(t *testing.T, now func() time.Time) store.Queue { return openAt(t, now).Queue() })
}

// openAt opens a fresh store whose clock is now.
func openAt(t *testing.T, now func() time.Time) *store.DB {
	t.Helper()
	db, err := store.OpenWith(filepath.Join(t.TempDir(), "nestbot.db"), store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
