// Package store is nestbot's durable state: one bbolt file in the state
// directory. It holds the rollout journal (DB.Journal), and the shared
// state of contract.go for one process: the job queue with its delivery
// de-duplication (DB.Queue), locks with fencing tokens (DB.Locks) and saved
// plans with the audit log (DB.Artifacts), each in its own top-level bucket.
//
//	db, err := store.Open(filepath.Join(stateDir, "nestbot.db"))
//	if err != nil { ... }
//	defer db.Close()
//	err = db.Journal().Record(store.Entry{Rollout: rev, Host: "web", Step: "armed", Generation: 41})
//
// One process at a time holds the file: Open waits up to OpenTimeout for
// another nestbot to let go of it, then fails with ErrLocked. Because of
// that, whatever an earlier process held when it stopped or died — job
// claims, lock leases — is free again once Open returns: each Open starts a
// new epoch, and claims and leases of earlier epochs count as expired.
package store

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// OpenTimeout bounds how long Open waits for another process to release the file.
const OpenTimeout = 2 * time.Second

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("store: the state file is in use by another nestbot process")

// DeliveryRetention is how long the queue remembers a done delivery, so
// that a redelivery of it is answered as a duplicate. GitHub redelivers
// deliveries of the past 3 days (github.com) or 7 days (GitHub Enterprise
// Server), and never on its own; a delivery done longer ago than this is
// forgotten: its record is deleted, and an id seen again is a new job.
const DeliveryRetention = 7 * 24 * time.Hour

// DB is an open state file. Its methods are safe for concurrent use.
type DB struct {
	bolt      *bolt.DB
	path      string
	epoch     uint64 // this Open's epoch (see openShared)
	group     groupCommit
	intake    *intakeLog
	now       func() time.Time
	retention time.Duration
	logf      func(format string, args ...any)
}

// Options tune OpenWith; the zero value is what Open uses.
type Options struct {
	// Retention is how long a done delivery is remembered (0:
	// DeliveryRetention).
	Retention time.Duration
	// Now is the store's clock (nil: time.Now): the queue's claims, the
	// locks' leases and the journal's times are read from it, so tests move
	// it instead of waiting.
	Now func() time.Time
	// OpenTimeout bounds how long OpenWith waits for another process to
	// release the file (0: OpenTimeout).
	OpenTimeout time.Duration
	// Logf, if set, is told of failures the queue retries on its own.
	Logf func(format string, args ...any)
}

// Open opens (creating it, and its directory, if needed) the state file at path.
func Open(path string) (*DB, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with options.
func OpenWith(path string, o Options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// The free list is not written at each commit (Open rebuilds it from
	// the pages, as etcd runs bbolt): every commit of the queue wrote it
	// whole, and it grows with the pages done jobs freed. What is stored
	// is synced as before. The file is mapped 1 GB ahead (address space,
	// not memory), so that a growing queue does not stop every reader and
	// writer to map it again at each doubling.
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cmp.Or(o.OpenTimeout, OpenTimeout), NoFreelistSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: 1 << 30})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (stop the other one, or use another --state-dir)", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db := &DB{bolt: b, path: path, now: o.Now, retention: o.Retention, logf: o.Logf}
	if db.logf == nil {
		db.logf = func(string, ...any) {}
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.retention <= 0 {
		db.retention = DeliveryRetention
	}
	db.group.db = db
	if err := b.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(journalBucket); err != nil {
			return err
		}
		epoch, err := openShared(tx)
		db.epoch = epoch
		return err
	}); err != nil {
		b.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if db.intake, err = openIntake(db, path+".intake"); err != nil {
		b.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return db, nil
}

// Path is the file's path.
func (db *DB) Path() string { return db.path }

// Close closes the file, once the jobs accepted are in it.
func (db *DB) Close() error {
	ierr := db.intake.close()
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", db.path, err)
	}
	if ierr != nil {
		return fmt.Errorf("store: close %s: %w", db.intake.path, ierr)
	}
	return nil
}

// Journal is the rollout journal kept in this file.
func (db *DB) Journal() *Journal { return &Journal{db: db.bolt, now: db.now} }
