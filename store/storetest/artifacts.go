package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

// TestArtifacts runs the conformance suite of store.Artifacts. open
// returns a fresh, empty store for each subtest.
func TestArtifacts(t *testing.T, open func(t *testing.T) store.Artifacts) {
	t.Run("PlanRoundTripsAndOverwrites", func(t *testing.T) { artifactsPlan(t, open(t)) })
	t.Run("MissingPlanIsNotFound", func(t *testing.T) { artifactsMissing(t, open(t)) })
	t.Run("AuditLogIsOldestFirst", func(t *testing.T) { artifactsAudit(t, open(t)) })
	t.Run("EmptyAuditLog", func(t *testing.T) { artifactsAuditEmpty(t, open(t)) })
}

func artifactsPlan(t *testing.T, a store.Artifacts) {
	plan := []byte(`{"format_version":"1","plan":{"fleet":"ducksnest"}}`)
	if err := a.PutPlan(ctx(t), "ducksnest/pr-12", plan); err != nil {
		t.Fatalf("PutPlan: %v", err)
	}
	other := []byte(`{"format_version":"1","plan":{"fleet":"other"}}`)
	if err := a.PutPlan(ctx(t), "other/pr-3", other); err != nil {
		t.Fatalf("PutPlan: %v", err)
	}
	got, err := a.GetPlan(ctx(t), "ducksnest/pr-12")
	if err != nil || !bytes.Equal(got, plan) {
		t.Fatalf("GetPlan = %s, %v; want %s", got, err, plan)
	}
	newer := []byte(`{"format_version":"1","plan":{"fleet":"ducksnest","steps":[]}}`)
	if err := a.PutPlan(ctx(t), "ducksnest/pr-12", newer); err != nil {
		t.Fatalf("PutPlan over a plan: %v", err)
	}
	if got, err := a.GetPlan(ctx(t), "ducksnest/pr-12"); err != nil || !bytes.Equal(got, newer) {
		t.Errorf("GetPlan after overwrite = %s, %v; want %s", got, err, newer)
	}
	if got, err := a.GetPlan(ctx(t), "other/pr-3"); err != nil || !bytes.Equal(got, other) {
		t.Errorf("GetPlan of the other plan = %s, %v; want %s", got, err, other)
	}
}

func artifactsMissing(t *testing.T, a store.Artifacts) {
	if got, err := a.GetPlan(ctx(t), "ducksnest/pr-404"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetPlan of a plan never put = %q, %v; want ErrNotFound", got, err)
	}
}

func auditRecord(i int) store.AuditRecord {
	started := t0.Add(time.Duration(i) * time.Hour)
	return store.AuditRecord{
		Fleet:    "ducksnest",
		Revision: fmt.Sprintf("%040x", i+1),
		Trigger:  "push",
		Actor:    "octocat",
		Started:  started,
		Finished: started.Add(90 * time.Second),
		Result:   "success",
		Counts:   map[string]int{"create": i, "update": 1},
		Hosts:    map[string]string{"laptop-ultra": fmt.Sprintf("%040x", i+1)},
	}
}

func artifactsAudit(t *testing.T, a store.Artifacts) {
	var want []store.AuditRecord
	for i := range 12 {
		rec := auditRecord(i)
		if i == 5 {
			rec.Result, rec.Error, rec.Hosts = "failure", "rollout: laptop-ultra: health check failed", nil
		}
		if err := a.Audit(ctx(t), rec); err != nil {
			t.Fatalf("Audit %d: %v", i, err)
		}
		want = append(want, rec)
	}
	got, err := a.AuditLog(ctx(t))
	if err != nil {
		t.Fatalf("AuditLog: %v", err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("AuditLog =\n%s\nwant\n%s", g, w)
	}
}

func artifactsAuditEmpty(t *testing.T, a store.Artifacts) {
	got, err := a.AuditLog(ctx(t))
	if err != nil || len(got) != 0 {
		t.Errorf("AuditLog of an empty store = %v, %v; want none", got, err)
	}
}
