package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The locks' top-level bucket holds two buckets:
//
//	leases  name -> leaseRecord (JSON); its sequence is the fencing token counter
//	fenced  key -> value written by Fenced
var (
	locksBucket  = []byte("locks")
	leasesBucket = []byte("leases")
	fencedBucket = []byte("fenced")
)

// leaseRecord is a lease as the file keeps it: with the epoch it was
// taken in, since a lease of an earlier epoch has no holder left.
type leaseRecord struct {
	Lease Lease  `json:"lease"`
	Epoch uint64 `json:"epoch"`
}

// Locks is the set of named locks kept in this file. Tokens come from one
// counter for all names, so each lease's token is greater than that of
// every earlier lease, of any name. A lease taken by an earlier process
// (an earlier Open) has no holder any more and counts as expired.
func (db *DB) Locks() Locker { return boltLocks{db} }

type boltLocks struct{ db *DB }

var _ Locker = boltLocks{}

func (l boltLocks) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, fmt.Errorf("store: acquire lock %s: %w", name, err)
	}
	if name == "" || owner == "" {
		return Lease{}, fmt.Errorf("store: acquire lock %q for %q: both the lock's name and the owner are needed", name, owner)
	}
	if err := checkTTL("lock ttl", ttl); err != nil {
		return Lease{}, err
	}
	var got Lease
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		leases := tx.Bucket(locksBucket).Bucket(leasesBucket)
		now := l.db.now()
		if cur, ok, err := l.current(leases, name, now); err != nil {
			return err
		} else if ok && cur.Lease.Owner != owner {
			return &LockedError{Lease: cur.Lease}
		}
		token, err := leases.NextSequence()
		if err != nil {
			return err
		}
		got = Lease{Name: name, Owner: owner, Token: token, Acquired: now, Expires: now.Add(ttl)}
		return putLease(leases, leaseRecord{Lease: got, Epoch: l.db.epoch})
	})
	if err != nil {
		var locked *LockedError
		if errors.As(err, &locked) {
			return Lease{}, locked
		}
		return Lease{}, fmt.Errorf("store: acquire lock %s: %w", name, err)
	}
	return got, nil
}

func (l boltLocks) Renew(ctx context.Context, lease Lease, ttl time.Duration) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, fmt.Errorf("store: renew lock %s: %w", lease.Name, err)
	}
	if err := checkTTL("lock ttl", ttl); err != nil {
		return Lease{}, err
	}
	var got Lease
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		leases := tx.Bucket(locksBucket).Bucket(leasesBucket)
		now := l.db.now()
		cur, err := l.held(leases, lease, now)
		if err != nil {
			return err
		}
		cur.Lease.Expires = now.Add(ttl)
		got = cur.Lease
		return putLease(leases, cur)
	})
	if err != nil {
		return Lease{}, fmt.Errorf("store: renew lock %s: %w", lease.Name, err)
	}
	return got, nil
}

func (l boltLocks) Release(ctx context.Context, lease Lease) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: release lock %s: %w", lease.Name, err)
	}
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		leases := tx.Bucket(locksBucket).Bucket(leasesBucket)
		v := leases.Get([]byte(lease.Name))
		if v == nil {
			return nil
		}
		cur, err := decodeLease(v)
		if err != nil || cur.Lease.Token != lease.Token {
			return err // lost already: not an error
		}
		return leases.Delete([]byte(lease.Name))
	})
	if err != nil {
		return fmt.Errorf("store: release lock %s: %w", lease.Name, err)
	}
	return nil
}

func (l boltLocks) Break(ctx context.Context, name string) (Lease, bool, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, false, fmt.Errorf("store: break lock %s: %w", name, err)
	}
	var (
		got Lease
		ok  bool
	)
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		leases := tx.Bucket(locksBucket).Bucket(leasesBucket)
		cur, live, err := l.current(leases, name, l.db.now())
		if err != nil {
			return err
		}
		got, ok = cur.Lease, live
		return leases.Delete([]byte(name))
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("store: break lock %s: %w", name, err)
	}
	if !ok {
		return Lease{}, false, nil
	}
	return got, true, nil
}

func (l boltLocks) Holder(ctx context.Context, name string) (Lease, bool, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, false, fmt.Errorf("store: holder of lock %s: %w", name, err)
	}
	var (
		got Lease
		ok  bool
	)
	err := l.db.bolt.View(func(tx *bolt.Tx) error {
		cur, live, err := l.current(tx.Bucket(locksBucket).Bucket(leasesBucket), name, l.db.now())
		got, ok = cur.Lease, live
		return err
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("store: holder of lock %s: %w", name, err)
	}
	if !ok {
		return Lease{}, false, nil
	}
	return got, true, nil
}

func (l boltLocks) Fenced(ctx context.Context, lease Lease, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: fenced write of %s under lock %s: %w", key, lease.Name, err)
	}
	if key == "" {
		return fmt.Errorf("store: fenced write under lock %s: the key is empty", lease.Name)
	}
	err := l.db.bolt.Update(func(tx *bolt.Tx) error {
		locks := tx.Bucket(locksBucket)
		if _, err := l.held(locks.Bucket(leasesBucket), lease, l.db.now()); err != nil {
			if errors.Is(err, ErrLost) {
				return fmt.Errorf("%w (token %d)", ErrFenced, lease.Token)
			}
			return err
		}
		return locks.Bucket(fencedBucket).Put([]byte(key), value)
	})
	if err != nil {
		return fmt.Errorf("store: fenced write of %s under lock %s: %w", key, lease.Name, err)
	}
	return nil
}

func (l boltLocks) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, err)
	}
	var out []byte
	err := l.db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(locksBucket).Bucket(fencedBucket).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, err)
	}
	return out, nil
}

// current returns the lease stored under name and whether it is live: of
// this epoch and not expired.
func (l boltLocks) current(leases *bolt.Bucket, name string, now time.Time) (leaseRecord, bool, error) {
	v := leases.Get([]byte(name))
	if v == nil {
		return leaseRecord{}, false, nil
	}
	cur, err := decodeLease(v)
	if err != nil {
		return leaseRecord{}, false, err
	}
	return cur, cur.Epoch == l.db.epoch && now.Before(cur.Lease.Expires), nil
}

// held returns the stored lease when it is live and is lease; else ErrLost.
func (l boltLocks) held(leases *bolt.Bucket, lease Lease, now time.Time) (leaseRecord, error) {
	cur, live, err := l.current(leases, lease.Name, now)
	if err != nil {
		return leaseRecord{}, err
	}
	if !live || cur.Lease.Token != lease.Token || cur.Lease.Owner != lease.Owner {
		return leaseRecord{}, fmt.Errorf("%w: lock %s is no longer held with token %d", ErrLost, lease.Name, lease.Token)
	}
	return cur, nil
}

func putLease(leases *bolt.Bucket, rec leaseRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return leases.Put([]byte(rec.Lease.Name), v)
}

func decodeLease(v []byte) (leaseRecord, error) {
	var rec leaseRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, errors.New("corrupt lease record: " + err.Error())
	}
	return rec, nil
}
