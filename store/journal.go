package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// journalBucket holds one bucket per rollout id, which holds one bucket per
// host, whose keys are big-endian sequence numbers and whose values are
// JSON Entries: each host's steps in the order they were recorded.
var journalBucket = []byte("rollout-journal")

// Journal records the steps of rollouts, per rollout and host, so that a
// restarted nestbot can resume a rollout or say where it stopped. Entries
// are only appended; the last one of a host is where it stands.
type Journal struct {
	db  *bolt.DB
	now func() time.Time
}

// Entry is one recorded step of one host in one rollout.
type Entry struct {
	// Rollout identifies the rollout: the target revision.
	Rollout string `json:"rollout"`
	// Host is the host's name.
	Host string `json:"host"`
	// Step is what the host had just started or reached (the rollout
	// package's states: queued, shipping, armed, switching, health,
	// confirmed, failed, rolled-back, skipped).
	Step string `json:"step"`
	// Time is when the step was recorded; Record sets it if zero.
	Time time.Time `json:"time"`
	// Generation is the system generation the host rolls back to, once
	// known (from the step that armed the rollback on).
	Generation int `json:"generation,omitempty"`
	// Detail says more: an error, what a resumed run found.
	Detail string `json:"detail,omitempty"`
}

// Record appends e to its host's history in its rollout. The write is
// durable (fsynced) when Record returns.
func (j *Journal) Record(e Entry) error {
	if e.Rollout == "" || e.Host == "" || e.Step == "" {
		return fmt.Errorf("store: journal: entry needs a rollout, a host and a step: %+v", e)
	}
	if e.Time.IsZero() {
		e.Time = j.now()
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("store: journal: %w", err)
	}
	err = j.db.Update(func(tx *bolt.Tx) error {
		r, err := tx.Bucket(journalBucket).CreateBucketIfNotExists([]byte(e.Rollout))
		if err != nil {
			return err
		}
		h, err := r.CreateBucketIfNotExists([]byte(e.Host))
		if err != nil {
			return err
		}
		seq, err := h.NextSequence()
		if err != nil {
			return err
		}
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], seq)
		return h.Put(k[:], v)
	})
	if err != nil {
		return fmt.Errorf("store: journal: record %s %s %s: %w", e.Rollout, e.Host, e.Step, err)
	}
	return nil
}

// History returns every entry of host in rollout, oldest first; none if
// the journal has no record of it.
func (j *Journal) History(rollout, host string) ([]Entry, error) {
	var out []Entry
	err := j.db.View(func(tx *bolt.Tx) error {
		h := hostBucket(tx, rollout, host)
		if h == nil {
			return nil
		}
		return h.ForEach(func(_, v []byte) error {
			e, err := decodeEntry(v)
			out = append(out, e)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: journal: history %s %s: %w", rollout, host, err)
	}
	return out, nil
}

// Last returns the newest entry of host in rollout, and whether there is one.
func (j *Journal) Last(rollout, host string) (Entry, bool, error) {
	var e Entry
	var ok bool
	err := j.db.View(func(tx *bolt.Tx) error {
		h := hostBucket(tx, rollout, host)
		if h == nil {
			return nil
		}
		_, v := h.Cursor().Last()
		if v == nil {
			return nil
		}
		var err error
		e, err = decodeEntry(v)
		ok = err == nil
		return err
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("store: journal: last %s %s: %w", rollout, host, err)
	}
	return e, ok, nil
}

// Hosts returns the newest entry of every host recorded in rollout, by
// host name.
func (j *Journal) Hosts(rollout string) ([]Entry, error) {
	var out []Entry
	err := j.db.View(func(tx *bolt.Tx) error {
		r := tx.Bucket(journalBucket).Bucket([]byte(rollout))
		if r == nil {
			return nil
		}
		return r.ForEachBucket(func(name []byte) error {
			_, v := r.Bucket(name).Cursor().Last()
			if v == nil {
				return nil
			}
			e, err := decodeEntry(v)
			out = append(out, e)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: journal: hosts of %s: %w", rollout, err)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Host < out[b].Host })
	return out, nil
}

// Rollouts lists the rollout ids the journal holds, the most recently
// recorded first.
func (j *Journal) Rollouts() ([]string, error) {
	type rollout struct {
		id   string
		last time.Time
	}
	var all []rollout
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(journalBucket).ForEachBucket(func(id []byte) error {
			r := rollout{id: string(id)}
			b := tx.Bucket(journalBucket).Bucket(id)
			err := b.ForEachBucket(func(host []byte) error {
				_, v := b.Bucket(host).Cursor().Last()
				if v == nil {
					return nil
				}
				e, err := decodeEntry(v)
				if e.Time.After(r.last) {
					r.last = e.Time
				}
				return err
			})
			all = append(all, r)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: journal: rollouts: %w", err)
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].last.After(all[b].last) })
	ids := make([]string, len(all))
	for i, r := range all {
		ids[i] = r.id
	}
	return ids, nil
}

func hostBucket(tx *bolt.Tx, rollout, host string) *bolt.Bucket {
	r := tx.Bucket(journalBucket).Bucket([]byte(rollout))
	if r == nil {
		return nil
	}
	return r.Bucket([]byte(host))
}

func decodeEntry(v []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(v))
	if err := dec.Decode(&e); err != nil {
		return e, errors.New("corrupt journal entry: " + err.Error())
	}
	return e, nil
}
