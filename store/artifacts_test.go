package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

func TestArtifactsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db := open(t, path)
	ctx := context.Background()
	a := db.Artifacts()
	plan := []byte(`{"format_version":"1"}`)
	if err := a.PutPlan(ctx, "ducksnest/pr-12", plan); err != nil {
		t.Fatal(err)
	}
	rec := store.AuditRecord{Fleet: "ducksnest", Revision: "abc", Trigger: "push", Result: "success",
		Started: time.Date(2025, 7, 8, 10, 0, 0, 0, time.UTC), Finished: time.Date(2025, 7, 8, 10, 2, 0, 0, time.UTC)}
	if err := a.Audit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	a = open(t, path).Artifacts()
	if got, err := a.GetPlan(ctx, "ducksnest/pr-12"); err != nil || string(got) != string(plan) {
		t.Errorf("GetPlan after reopen = %s, %v", got, err)
	}
	log, err := a.AuditLog(ctx)
	if err != nil || len(log) != 1 || log[0].Revision != "abc" || !log[0].Finished.Equal(rec.Finished) {
		t.Errorf("AuditLog after reopen = %+v, %v; want the one record", log, err)
	}
	if err := a.PutPlan(ctx, "", plan); err == nil {
		t.Error("PutPlan under an empty key succeeded")
	}
	if _, err := a.GetPlan(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetPlan of nothing: %v, want ErrNotFound", err)
	}
}
