package store_test

import (
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

func open(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func steps(es []store.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Host+":"+e.Step)
	}
	return out
}

func TestJournalRecordsStepsInOrderAndSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "nestbot.db")
	db := open(t, path)
	j := db.Journal()
	t0 := time.Date(2025, 7, 8, 10, 0, 0, 0, time.UTC)
	for i, e := range []store.Entry{
		{Rollout: "bbbb", Host: "web", Step: "queued"},
		{Rollout: "bbbb", Host: "web", Step: "armed", Generation: 41},
		{Rollout: "bbbb", Host: "db", Step: "queued"},
		{Rollout: "bbbb", Host: "web", Step: "switching", Generation: 41},
		{Rollout: "aaaa", Host: "web", Step: "confirmed"},
	} {
		e.Time = t0.Add(time.Duration(i) * time.Second)
		if err := j.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Record(store.Entry{Rollout: "bbbb", Host: "web"}); err == nil {
		t.Error("an entry without a step was recorded")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	j = open(t, path).Journal()
	h, err := j.History("bbbb", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := steps(h), []string{"web:queued", "web:armed", "web:switching"}; !slices.Equal(got, want) {
		t.Errorf("history %v, want %v", got, want)
	}
	last, ok, err := j.Last("bbbb", "web")
	if err != nil || !ok || last.Step != "switching" || last.Generation != 41 || !last.Time.Equal(t0.Add(3*time.Second)) {
		t.Errorf("last = %+v, %v, %v; want switching, generation 41, at t0+3s", last, ok, err)
	}
	if _, ok, err := j.Last("bbbb", "nope"); ok || err != nil {
		t.Errorf("last of an unknown host: %v, %v", ok, err)
	}
	hosts, err := j.Hosts("bbbb")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := steps(hosts), []string{"db:queued", "web:switching"}; !slices.Equal(got, want) {
		t.Errorf("hosts %v, want %v", got, want)
	}
	if hosts, err := j.Hosts("cccc"); err != nil || len(hosts) != 0 {
		t.Errorf("hosts of an unknown rollout: %v, %v", hosts, err)
	}
	ids, err := j.Rollouts()
	if err != nil || !slices.Equal(ids, []string{"aaaa", "bbbb"}) {
		t.Errorf("rollouts %v, %v; want aaaa (newest) then bbbb", ids, err)
	}
}

func TestJournalConcurrentRecords(t *testing.T) {
	j := open(t, filepath.Join(t.TempDir(), "nestbot.db")).Journal()
	var wg sync.WaitGroup
	for _, host := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, step := range []string{"queued", "shipping", "armed", "switching", "health", "confirmed"} {
				if err := j.Record(store.Entry{Rollout: "r", Host: host, Step: step}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, host := range []string{"a", "b", "c", "d"} {
		h, err := j.History("r", host)
		if err != nil {
			t.Fatal(err)
		}
		if got := steps(h); len(got) != 6 || got[0] != host+":queued" || got[5] != host+":confirmed" {
			t.Errorf("history of %s: %v", host, got)
		}
	}
}

func TestOpenRefusesAFileInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	open(t, path)
	start := time.Now()
	db, err := store.OpenWith(path, store.Options{OpenTimeout: 100 * time.Millisecond})
	if err == nil {
		db.Close()
		t.Fatal("opened a state file that another handle holds")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("error %v, want ErrLocked", err)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
}
