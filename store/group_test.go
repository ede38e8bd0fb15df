package store

import (
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A write that fails rolls back its group; the others are committed in a
// retry without it, and a domain error stays its own write's answer.
func TestGroupCommitIsolatesAFailedWrite(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bucket := []byte("group-test")
	put := func(k string) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			return b.Put([]byte(k), []byte("v"))
		}
	}
	broken := errors.New("disk says no")
	answer := domainError{errors.New("duplicate")}
	writes := []*groupWrite{
		{apply: put("a")},
		{apply: func(tx *bolt.Tx) error { return answer }},
		{apply: func(tx *bolt.Tx) error {
			if err := put("lost")(tx); err != nil {
				return err
			}
			return broken
		}},
		{apply: put("b")},
	}
	for _, w := range writes {
		w.done = make(chan struct{})
	}
	db.group.commit(writes)
	for i, w := range writes {
		select {
		case <-w.done:
		default:
			t.Fatalf("write %d was not answered", i)
		}
	}
	if writes[0].err != nil || writes[3].err != nil {
		t.Errorf("the good writes: %v, %v; want nil", writes[0].err, writes[3].err)
	}
	if !errors.Is(writes[1].err, answer) || !errors.Is(writes[2].err, broken) {
		t.Errorf("answers %v, %v; want the domain error and the failure", writes[1].err, writes[2].err)
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil || b.Get([]byte("a")) == nil || b.Get([]byte("b")) == nil || b.Get([]byte("lost")) != nil {
			t.Error("want a and b committed and the failed write's put rolled back")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
