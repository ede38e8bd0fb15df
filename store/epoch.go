package store

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// metaBucket holds the file's epoch: a counter that every Open raises.
var (
	metaBucket = []byte("meta")
	epochKey   = []byte("epoch")
)

// openShared creates the buckets of the queue, the locks and the artifacts,
// and starts a new epoch, which it returns.
//
// Only one process holds the file (bbolt's flock), so a job claim or a lock
// lease recorded under an earlier epoch belongs to a process that is gone:
// Claim takes such a job again, Acquire takes such a lock, and the old
// holder's Extend, Done, Renew or Fenced fail as lost. Tokens keep growing
// across epochs, so fencing still tells old from new.
func openShared(tx *bolt.Tx) (uint64, error) {
	for _, name := range [][]byte{queueBucket, locksBucket, artifactsBucket} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, err
		}
	}
	q := tx.Bucket(queueBucket)
	for _, name := range [][]byte{jobsBucket, payloadsBucket, refsBucket, pendingBucket, headsBucket} {
		if _, err := q.CreateBucketIfNotExists(name); err != nil {
			return 0, err
		}
	}
	if err := indexDone(q); err != nil {
		return 0, err
	}
	l := tx.Bucket(locksBucket)
	for _, name := range [][]byte{leasesBucket, fencedBucket} {
		if _, err := l.CreateBucketIfNotExists(name); err != nil {
			return 0, err
		}
	}
	a := tx.Bucket(artifactsBucket)
	for _, name := range [][]byte{plansBucket, auditBucket} {
		if _, err := a.CreateBucketIfNotExists(name); err != nil {
			return 0, err
		}
	}
	m, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return 0, err
	}
	epoch := getUint64(m.Get(epochKey)) + 1
	if err := m.Put(epochKey, uint64Bytes(epoch)); err != nil {
		return 0, err
	}
	return epoch, nil
}

func uint64Bytes(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

func getUint64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// checkTTL refuses a lease or ttl that is not positive.
func checkTTL(what string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("store: %s must be positive, got %s", what, d)
	}
	return nil
}
