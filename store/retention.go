package store

import (
	"bytes"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pruneBatch bounds how many forgotten deliveries one Done deletes, so no
// commit is held up by a backlog (after a long stop, say): each Done adds
// one record and deletes up to this many, so the backlog goes quickly.
const pruneBatch = 256

// doneKey is where a job done at done sorts in the done bucket.
func doneKey(done time.Time, id string) []byte {
	return append(uint64Bytes(uint64(max(done.UnixNano(), 0))), id...)
}

// forgotten reports whether rec, done, is past the retention: GitHub no
// longer redelivers it, so its id counts as new.
func (q boltQueue) forgotten(rec jobRecord) bool {
	return rec.State == stateDone && !q.db.now().Before(rec.Done.Add(q.db.retention))
}

// prune deletes up to pruneBatch of the jobs done before now less the
// retention, oldest first. An entry whose job was enqueued again since (a
// failed delivery redelivered) no longer names a done job, and only the
// entry goes.
func (q boltQueue) prune(qb *bolt.Bucket, now time.Time) error {
	done, jobs := qb.Bucket(doneBucket), qb.Bucket(jobsBucket)
	cutoff := uint64Bytes(uint64(max(now.Add(-q.db.retention).UnixNano(), 0)))
	var expired [][]byte
	c := done.Cursor()
	for k, _ := c.First(); k != nil && len(expired) < pruneBatch && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.Next() {
		expired = append(expired, bytes.Clone(k))
	}
	for _, k := range expired {
		id := k[8:]
		if v := jobs.Get(id); v != nil {
			// A record that does not decode is left for a person to see.
			if rec, err := decodeJob(v); err == nil && rec.State == stateDone && bytes.Equal(doneKey(rec.Done, string(id)), k) {
				if err := jobs.Delete(id); err != nil {
					return err
				}
			}
		}
		if err := done.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// indexDone creates the done bucket of a queue that has none (a file
// written before nestbot pruned done deliveries), with an entry for every
// job done so far, so that those are pruned in their turn.
func indexDone(qb *bolt.Bucket) error {
	if qb.Bucket(doneBucket) != nil {
		return nil
	}
	done, err := qb.CreateBucket(doneBucket)
	if err != nil {
		return err
	}
	return qb.Bucket(jobsBucket).ForEach(func(id, v []byte) error {
		if rec, err := decodeJob(v); err == nil && rec.State == stateDone {
			return done.Put(doneKey(rec.Done, string(id)), []byte{})
		}
		return nil // a record that does not decode is reported where it is used
	})
}
