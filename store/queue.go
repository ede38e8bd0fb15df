package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// The queue's top-level bucket holds five buckets:
//
//	jobs      id -> jobRecord (JSON, without the payload), kept after Done for de-duplication
//	refs      id -> where the payload is: the intake log's id and the record's offset in it
//	          (16 bytes, intakelog.go); deleted on Done
//	payloads  id -> the payload, as received (files written before refs); deleted on Done
//	pending   key 0x00 order -> id, every queued or claimed job, by Key, oldest first
//	heads     order -> id, the job of each Key that runs next: its claimed job, else its oldest
//	done      done time (Unix nanoseconds, big-endian) id -> nothing, every done job, oldest
//	          first, so that those past the retention are found and deleted (retention.go)
//
// order is 16 bytes: Received (Unix nanoseconds) then the enqueue sequence,
// both big-endian, so jobs are claimed in the order they were received.
// Claim scans only heads, so its cost grows with the number of Keys that
// have work, not with the number of jobs waiting.
var (
	queueBucket    = []byte("queue")
	jobsBucket     = []byte("jobs")
	payloadsBucket = []byte("payloads")
	refsBucket     = []byte("refs")
	pendingBucket  = []byte("pending")
	headsBucket    = []byte("heads")
	doneBucket     = []byte("done")
	depthKey       = []byte("depth") // in the queue bucket: jobs queued or claimed
)

// Limits on what Enqueue accepts.
const (
	maxJobIDLen = 256
	maxJobKey   = 1024
)

const (
	stateQueued  = "queued"
	stateClaimed = "claimed"
	stateDone    = "done"
)

// jobRecord is a job's row in the jobs bucket.
type jobRecord struct {
	Job     Job       `json:"job"` // Payload is kept apart, in payloads
	State   string    `json:"state"`
	Seq     uint64    `json:"seq"`
	Owner   string    `json:"owner,omitempty"`
	Token   uint64    `json:"token,omitempty"`
	Epoch   uint64    `json:"epoch,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Result  Result    `json:"result,omitempty"`
	Done    time.Time `json:"done,omitzero"`
}

// Queue is the durable job queue kept in this file. Every Enqueue, Claim,
// Extend and Done is on disk (fsynced) when it returns; the ones that
// arrive while a commit is under way are committed together by the next
// one (group commit), so concurrent intake and workers cost one commit per
// batch, not one per call. An Enqueue is on disk in the intake log
// (intakelog.go): one fdatasync per batch, where a commit of the state
// file takes two.
func (db *DB) Queue() Queue { return boltQueue{db} }

type boltQueue struct{ db *DB }

var _ Queue = boltQueue{}

func (q boltQueue) Enqueue(ctx context.Context, j Job) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: enqueue %s: %w", j.ID, err)
	}
	if err := checkJob(j); err != nil {
		return err
	}
	if j.Received.IsZero() {
		j.Received = q.db.now()
	}
	j.Attempt = 0
	// The id is reserved, checked against the state file, and the job
	// written to the intake log (intakelog.go), whose write this joins and
	// waits for even if ctx ends meanwhile, so that the answer says what
	// is on disk.
	free, err := q.db.intake.reserve(j.ID)
	if err != nil {
		return fmt.Errorf("store: enqueue %s: %w", j.ID, err)
	}
	if !free {
		return fmt.Errorf("%w: job %s is queued", ErrDuplicate, j.ID)
	}
	if err := q.db.bolt.View(func(tx *bolt.Tx) error { return q.duplicate(tx, j.ID) }); err != nil {
		q.db.intake.unreserve(j.ID)
		var dup domainError
		if errors.As(err, &dup) {
			return dup.error // says what it is: "store: duplicate delivery: job ..."
		}
		return fmt.Errorf("store: enqueue %s: %w", j.ID, err)
	}
	if err := q.db.intake.append(j); err != nil {
		return fmt.Errorf("store: enqueue %s: %w", j.ID, err)
	}
	return nil
}

// duplicate returns a domainError when the state file has a job with id
// that a delivery with it duplicates: queued, claimed, or done ok within
// the retention.
func (q boltQueue) duplicate(tx *bolt.Tx, id string) error {
	v := tx.Bucket(queueBucket).Bucket(jobsBucket).Get([]byte(id))
	if v == nil {
		return nil
	}
	rec, err := decodeJob(v)
	if err != nil {
		return err
	}
	if rec.State != stateDone || rec.Result != ResultFailed && !q.forgotten(rec) {
		return domainError{fmt.Errorf("%w: job %s is %s", ErrDuplicate, id, describe(rec))}
	}
	return nil
}

func checkJob(j Job) error {
	switch {
	case j.ID == "" || len(j.ID) > maxJobIDLen || !utf8.ValidString(j.ID):
		return fmt.Errorf("store: enqueue: job id %.40q must be 1 to %d bytes of UTF-8", j.ID, maxJobIDLen)
	case j.Event == "":
		return fmt.Errorf("store: enqueue %s: the job has no event", j.ID)
	case j.Key == "" || len(j.Key) > maxJobKey || strings.ContainsRune(j.Key, 0):
		return fmt.Errorf("store: enqueue %s: job key %.40q must be 1 to %d bytes without NUL", j.ID, j.Key, maxJobKey)
	}
	return nil
}

// enqueueTx adds j in tx, its payload kept only where ref says, in the
// intake log. It returns a domainError for a duplicate, and any other
// error only when tx must be rolled back.
func (q boltQueue) enqueueTx(tx *bolt.Tx, j Job, ref payloadRef) error {
	qb := tx.Bucket(queueBucket)
	jobs := qb.Bucket(jobsBucket)
	if err := q.duplicate(tx, j.ID); err != nil {
		return err
	}
	if v := jobs.Get([]byte(j.ID)); v != nil {
		rec, err := decodeJob(v)
		if err != nil {
			return err
		}
		if err := qb.Bucket(doneBucket).Delete(doneKey(rec.Done, j.ID)); err != nil {
			return err
		}
	}
	pending := qb.Bucket(pendingBucket)
	seq, err := pending.NextSequence()
	if err != nil {
		return err
	}
	j.Payload = nil
	v, err := json.Marshal(jobRecord{Job: j, State: stateQueued, Seq: seq})
	if err != nil {
		return err
	}
	if err := jobs.Put([]byte(j.ID), v); err != nil {
		return err
	}
	if err := qb.Bucket(refsBucket).Put([]byte(j.ID), ref.bytes()); err != nil {
		return err
	}
	order := orderKey(j.Received, seq)
	if err := q.placeHead(qb, j.Key, order, []byte(j.ID)); err != nil {
		return err
	}
	if err := pending.Put(append(keyPrefix(j.Key), order...), []byte(j.ID)); err != nil {
		return err
	}
	return qb.Put(depthKey, uint64Bytes(getUint64(qb.Get(depthKey))+1))
}

// placeHead makes the new job (id, at order) its Key's head when no job of
// the Key waits, or when it is older than the Key's head and that head is
// only queued (a claimed head stays the head until it is done).
func (q boltQueue) placeHead(qb *bolt.Bucket, key string, order, id []byte) error {
	heads := qb.Bucket(headsBucket)
	prefix := keyPrefix(key)
	k, _ := qb.Bucket(pendingBucket).Cursor().Seek(prefix)
	if !bytes.HasPrefix(k, prefix) {
		return heads.Put(order, id)
	}
	first := bytes.Clone(k[len(prefix):])
	headID := heads.Get(first)
	if headID == nil || bytes.Compare(order, first) >= 0 {
		return nil
	}
	rec, err := decodeJob(qb.Bucket(jobsBucket).Get(headID))
	if err != nil || rec.State != stateQueued {
		return err
	}
	if err := heads.Delete(first); err != nil {
		return err
	}
	return heads.Put(order, id)
}

func (q boltQueue) Claim(ctx context.Context, owner string, lease time.Duration) (*Claim, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: claim: %w", err)
	}
	if owner == "" {
		return nil, errors.New("store: claim: the owner is empty; name the worker")
	}
	if err := checkTTL("claim lease", lease); err != nil {
		return nil, err
	}
	// Look first without writing: an idle worker's poll costs no commit.
	// The jobs accepted and still only in the intake log are put into the
	// state file first when one of them could be claimed before what the
	// state file offers: when it offers nothing and one of them has a Key
	// with no job there (else that job, claimed, holds the Key's later
	// ones back), or when one was received before the job it offers.
	keys, all, oldest := q.db.intake.unapplied(maxWaitingKeys)
	found, headless, err := q.look(keys, all, oldest)
	if err == nil && headless {
		if err := q.db.intake.flush(ctx); err != nil {
			return nil, fmt.Errorf("store: claim: %w", err)
		}
		found, _, err = q.look(nil, true, time.Time{})
	}
	if err != nil {
		return nil, fmt.Errorf("store: claim: %w", err)
	}
	if !found {
		return nil, nil
	}
	var c *Claim
	err = q.db.group.do(0, func(tx *bolt.Tx) error {
		c = nil // a retried group runs this again
		now := q.db.now()
		id, rec, err := q.claimable(tx, now)
		if rec == nil || err != nil {
			return err
		}
		qb := tx.Bucket(queueBucket)
		token, err := qb.Bucket(jobsBucket).NextSequence()
		if err != nil {
			return err
		}
		rec.State, rec.Owner, rec.Token, rec.Epoch = stateClaimed, owner, token, q.db.epoch
		rec.Expires = now.Add(lease)
		rec.Job.Attempt++
		if err := putJob(tx, id, rec); err != nil {
			return err
		}
		j := rec.Job
		if j.Payload, err = q.payload(qb, id); err != nil {
			return err
		}
		c = &Claim{Job: j, Owner: owner, Token: token, Expires: rec.Expires}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim: %w", err)
	}
	return c, nil
}

// maxWaitingKeys bounds the Keys of jobs in the intake log that Claim
// looks up in the state file; with more, it puts the log's jobs in first.
const maxWaitingKeys = 64

// look reports whether the state file has a claimable job, and whether the
// jobs still only in the intake log (of keys, all of them unless all is
// false, the oldest received at oldest) must be put in first: one was
// received before that job, or, with none, one's Key has no job in it.
func (q boltQueue) look(keys []string, all bool, oldest time.Time) (found, flush bool, err error) {
	err = q.db.bolt.View(func(tx *bolt.Tx) error {
		_, rec, err := q.claimable(tx, q.db.now())
		if err != nil || oldest.IsZero() {
			found = rec != nil
			return err
		}
		if rec != nil {
			found, flush = true, oldest.Before(rec.Job.Received)
			return nil
		}
		if !all {
			flush = true
			return nil
		}
		cur := tx.Bucket(queueBucket).Bucket(pendingBucket).Cursor()
		for _, key := range keys {
			prefix := keyPrefix(key)
			if k, _ := cur.Seek(prefix); !bytes.HasPrefix(k, prefix) {
				flush = true
				return nil
			}
		}
		return nil
	})
	return found, flush, err
}

// claimable returns the oldest head that is queued, or claimed under a
// lease that expired or belongs to an earlier epoch.
func (q boltQueue) claimable(tx *bolt.Tx, now time.Time) ([]byte, *jobRecord, error) {
	qb := tx.Bucket(queueBucket)
	jobs := qb.Bucket(jobsBucket)
	cur := qb.Bucket(headsBucket).Cursor()
	for _, id := cur.First(); id != nil; _, id = cur.Next() {
		rec, err := decodeJob(jobs.Get(id))
		if err != nil {
			return nil, nil, fmt.Errorf("job %s: %w", id, err)
		}
		if rec.State == stateQueued || (rec.State == stateClaimed && (rec.Epoch != q.db.epoch || !now.Before(rec.Expires))) {
			return bytes.Clone(id), &rec, nil
		}
	}
	return nil, nil, nil
}

func (q boltQueue) Extend(ctx context.Context, c *Claim, lease time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: extend %s: %w", c.Job.ID, err)
	}
	if err := checkTTL("claim lease", lease); err != nil {
		return err
	}
	var expires time.Time
	err := q.db.group.do(0, func(tx *bolt.Tx) error {
		now := q.db.now()
		rec, err := q.live(tx, c, now)
		if err != nil {
			return err
		}
		rec.Expires = now.Add(lease)
		expires = rec.Expires
		return putJob(tx, []byte(c.Job.ID), rec)
	})
	if err != nil {
		return fmt.Errorf("store: extend %s: %w", c.Job.ID, err)
	}
	c.Expires = expires
	return nil
}

func (q boltQueue) Done(ctx context.Context, c *Claim, result Result) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: done %s: %w", c.Job.ID, err)
	}
	if result != ResultOK && result != ResultFailed {
		return fmt.Errorf("store: done %s: result %q is neither %q nor %q", c.Job.ID, result, ResultOK, ResultFailed)
	}
	var freed *payloadRef // the intake log record this Done frees
	err := q.db.group.do(0, func(tx *bolt.Tx) error {
		freed = nil // a retried group runs this again
		now := q.db.now()
		rec, err := q.live(tx, c, now)
		if err != nil {
			return err
		}
		id := []byte(c.Job.ID)
		qb := tx.Bucket(queueBucket)
		pending, heads := qb.Bucket(pendingBucket), qb.Bucket(headsBucket)
		prefix := keyPrefix(rec.Job.Key)
		order := orderKey(rec.Job.Received, rec.Seq)
		if err := pending.Delete(append(bytes.Clone(prefix), order...)); err != nil {
			return err
		}
		if err := heads.Delete(order); err != nil {
			return err
		}
		if k, next := pending.Cursor().Seek(prefix); bytes.HasPrefix(k, prefix) {
			// The Key's next job heads it now.
			if err := heads.Put(bytes.Clone(k[len(prefix):]), bytes.Clone(next)); err != nil {
				return err
			}
		}
		refs := qb.Bucket(refsBucket)
		if ref, ok := decodeRef(refs.Get(id)); ok {
			freed = &ref
			if err := refs.Delete(id); err != nil {
				return err
			}
		}
		if err := qb.Bucket(payloadsBucket).Delete(id); err != nil {
			return err
		}
		if err := qb.Put(depthKey, uint64Bytes(getUint64(qb.Get(depthKey))-1)); err != nil {
			return err
		}
		rec.State, rec.Result, rec.Done = stateDone, result, now
		rec.Owner, rec.Token, rec.Epoch, rec.Expires = "", 0, 0, time.Time{}
		if err := putJob(tx, id, rec); err != nil {
			return err
		}
		if err := qb.Bucket(doneBucket).Put(doneKey(now, c.Job.ID), []byte{}); err != nil {
			return err
		}
		return q.prune(qb, now)
	})
	if err != nil {
		return fmt.Errorf("store: done %s: %w", c.Job.ID, err)
	}
	if freed != nil {
		q.db.intake.release(freed.log)
	}
	return nil
}

// payload reads the payload of job id: from the intake log its ref names,
// or, in a file written before refs, from the payloads bucket.
func (q boltQueue) payload(qb *bolt.Bucket, id []byte) ([]byte, error) {
	if ref, ok := decodeRef(qb.Bucket(refsBucket).Get(id)); ok {
		return q.db.intake.payload(ref, string(id))
	}
	return bytes.Clone(qb.Bucket(payloadsBucket).Get(id)), nil
}

// live returns c's job when c is its live claim, else ErrLost.
func (q boltQueue) live(tx *bolt.Tx, c *Claim, now time.Time) (*jobRecord, error) {
	v := tx.Bucket(queueBucket).Bucket(jobsBucket).Get([]byte(c.Job.ID))
	if v == nil {
		return nil, domainError{fmt.Errorf("%w: there is no job %s", ErrLost, c.Job.ID)}
	}
	rec, err := decodeJob(v)
	if err != nil {
		return nil, err
	}
	if rec.State != stateClaimed || rec.Token != c.Token || rec.Epoch != q.db.epoch || !now.Before(rec.Expires) {
		return nil, domainError{fmt.Errorf("%w: job %s is %s, not claimed with token %d", ErrLost, c.Job.ID, describe(rec), c.Token)}
	}
	return &rec, nil
}

func (q boltQueue) Depth(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: queue depth: %w", err)
	}
	if err := q.db.intake.flush(ctx); err != nil {
		return 0, fmt.Errorf("store: queue depth: %w", err)
	}
	var n uint64
	if err := q.db.bolt.View(func(tx *bolt.Tx) error {
		n = getUint64(tx.Bucket(queueBucket).Get(depthKey))
		return nil
	}); err != nil {
		return 0, fmt.Errorf("store: queue depth: %w", err)
	}
	return int(n), nil
}

// orderKey is where a job received at received, enqueued as seq, sorts.
func orderKey(received time.Time, seq uint64) []byte {
	ns := max(received.UnixNano(), 0)
	return append(uint64Bytes(uint64(ns)), uint64Bytes(seq)...)
}

func keyPrefix(key string) []byte {
	return append([]byte(key), 0)
}

func putJob(tx *bolt.Tx, id []byte, rec *jobRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(queueBucket).Bucket(jobsBucket).Put(id, v)
}

func decodeJob(v []byte) (jobRecord, error) {
	var rec jobRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, errors.New("corrupt job record: " + err.Error())
	}
	return rec, nil
}

func describe(rec jobRecord) string {
	switch rec.State {
	case stateDone:
		return fmt.Sprintf("done (%s at %s)", rec.Result, rec.Done.UTC().Format(time.RFC3339))
	case stateClaimed:
		return fmt.Sprintf("claimed by %s", rec.Owner)
	}
	return rec.State
}
