package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The artifacts' top-level bucket holds two buckets:
//
//	plans  key -> saved plan (JSON of reconcile.SavedPlan), as given
//	audit  seq -> AuditRecord (JSON), in the order recorded
var (
	artifactsBucket = []byte("artifacts")
	plansBucket     = []byte("plans")
	auditBucket     = []byte("audit")
)

// Artifacts is the saved plans and the audit log kept in this file.
func (db *DB) Artifacts() Artifacts { return boltArtifacts{db} }

type boltArtifacts struct{ db *DB }

var _ Artifacts = boltArtifacts{}

func (a boltArtifacts) PutPlan(ctx context.Context, key string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: put plan %s: %w", key, err)
	}
	if key == "" {
		return errors.New("store: put plan: the key is empty")
	}
	err := a.db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(artifactsBucket).Bucket(plansBucket).Put([]byte(key), data)
	})
	if err != nil {
		return fmt.Errorf("store: put plan %s: %w", key, err)
	}
	return nil
}

func (a boltArtifacts) GetPlan(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: get plan %s: %w", key, err)
	}
	var out []byte
	err := a.db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(artifactsBucket).Bucket(plansBucket).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: get plan %s: %w", key, err)
	}
	return out, nil
}

func (a boltArtifacts) Audit(ctx context.Context, rec AuditRecord) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: audit %s at %s: %w", rec.Fleet, rec.Revision, err)
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("store: audit %s at %s: %w", rec.Fleet, rec.Revision, err)
	}
	err = a.db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(artifactsBucket).Bucket(auditBucket)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(uint64Bytes(seq), v)
	})
	if err != nil {
		return fmt.Errorf("store: audit %s at %s: %w", rec.Fleet, rec.Revision, err)
	}
	return nil
}

func (a boltArtifacts) AuditLog(ctx context.Context) ([]AuditRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	var out []AuditRecord
	err := a.db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(artifactsBucket).Bucket(auditBucket).ForEach(func(k, v []byte) error {
			var rec AuditRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("corrupt audit record %d: %w", getUint64(k), err)
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit log: %w", err)
	}
	return out, nil
}
