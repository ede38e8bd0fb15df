package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/store"
)

func prPayload(action string, number int, sha string) []byte {
	return fmt.Appendf(nil, `{"action":%q,"number":%d,"repository":{"full_name":"o/r","default_branch":"main"},`+
		`"pull_request":{"head":{"sha":%q},"merged":false}}`, action, number, sha)
}

func pushTo(repo, after string) []byte {
	return fmt.Appendf(nil, `{"ref":"refs/heads/main","after":%q,"repository":{"full_name":%q,"default_branch":"main"}}`, after, repo)
}

// headSHA is the head sha of a pull_request job.
func headSHA(j store.Job) string {
	var p struct {
		PullRequest struct {
			Head struct {
				SHA string `json:"sha"`
			} `json:"head"`
		} `json:"pull_request"`
	}
	_ = json.Unmarshal(j.Payload, &p)
	return p.PullRequest.Head.SHA
}

func TestSameDeliveryTwiceRunsOnce(t *testing.T) {
	db := openDB(t)
	var r runs
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Run: func(_ context.Context, j store.Job) error {
		r.add(j)
		return nil
	}})
	id := newDelivery()
	if status, _ := send(t, base+"/webhook", "push", id, pushTo("o/r", "a1")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	testkit.WaitFor(t, "the job ran and was recorded done", 10*time.Second, func() bool {
		return len(r.ids()) == 1 && depth(t, db.Queue()) == 0
	})
	if status, _ := send(t, base+"/webhook", "push", id, pushTo("o/r", "a1")); status != http.StatusOK {
		t.Errorf("the same delivery again: status %d, want 200", status)
	}
	if n := depth(t, db.Queue()); n != 0 {
		t.Errorf("the duplicate was stored: depth %d", n)
	}
	if got := r.ids(); !slices.Equal(got, []string{id}) {
		t.Errorf("runs %v, want the delivery once", got)
	}
}

func TestFailedDeliveryRedeliveredRunsAgain(t *testing.T) {
	db := openDB(t)
	var r runs
	failing, panicking := newDelivery(), newDelivery()
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Run: func(_ context.Context, j store.Job) error {
		r.add(j)
		if len(r.ids()) <= 2 { // the first run of each fails
			if j.ID == panicking {
				panic("handler bug")
			}
			return errors.New("GitHub answered 502")
		}
		return nil
	}})
	for _, id := range []string{failing, panicking} {
		if status, _ := send(t, base+"/webhook", "push", id, pushTo("o/"+id, "a1")); status != http.StatusAccepted {
			t.Fatalf("status %d, want 202", status)
		}
	}
	testkit.WaitFor(t, "both ran and were recorded done", 10*time.Second, func() bool {
		return len(r.ids()) == 2 && depth(t, db.Queue()) == 0
	})
	// A person redelivers them from GitHub: same ids.
	for _, id := range []string{failing, panicking} {
		if status, _ := send(t, base+"/webhook", "push", id, pushTo("o/"+id, "a1")); status != http.StatusAccepted {
			t.Errorf("redelivery of failed %s: status %d, want 202", id, status)
		}
	}
	testkit.WaitFor(t, "the redeliveries ran", 10*time.Second, func() bool {
		return len(r.ids()) == 4 && depth(t, db.Queue()) == 0
	})
	for _, id := range []string{failing, panicking} {
		if status, _ := send(t, base+"/webhook", "push", id, pushTo("o/"+id, "a1")); status != http.StatusOK {
			t.Errorf("delivery %s after it succeeded: status %d, want 200 duplicate", id, status)
		}
	}
	got := r.ids()
	slices.Sort(got)
	want := []string{failing, failing, panicking, panicking}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("runs %v, want each delivery twice", got)
	}
}

func TestJobsOfOneKeyNeverOverlap(t *testing.T) {
	db := openDB(t)
	const perKey = 15
	var (
		mu       sync.Mutex
		inFlight = map[string]int{}
		order    = map[string][]string{}
		overlaps []string
		most     int
		both     = make(chan struct{}) // closed once jobs of both keys ran at once
		bothOnce sync.Once
	)
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Workers: 4, Run: func(ctx context.Context, j store.Job) error {
		mu.Lock()
		inFlight[j.Key]++
		if inFlight[j.Key] > 1 {
			overlaps = append(overlaps, j.ID)
		}
		order[j.Key] = append(order[j.Key], j.ID)
		if n := inFlight["o/a"] + inFlight["o/b"]; n > most {
			most = n
		}
		if inFlight["o/a"] > 0 && inFlight["o/b"] > 0 {
			bothOnce.Do(func() { close(both) })
		}
		first := len(order[j.Key]) == 1
		mu.Unlock()
		if first {
			// The first job of each key waits for the other key's: the
			// pool runs different keys at once.
			select {
			case <-both:
			case <-time.After(10 * time.Second):
			}
		}
		time.Sleep(2 * time.Millisecond) // a little work, so an overlap would show
		mu.Lock()
		inFlight[j.Key]--
		mu.Unlock()
		return nil
	}})
	sent := map[string][]string{}
	for i := range perKey {
		for _, key := range []string{"o/a", "o/b"} {
			id := newDelivery()
			if status, _ := send(t, base+"/webhook", "push", id, pushTo(key, fmt.Sprint(i))); status != http.StatusAccepted {
				t.Fatalf("status %d, want 202", status)
			}
			sent[key] = append(sent[key], id)
		}
	}
	testkit.WaitFor(t, "every job ran", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order["o/a"])+len(order["o/b"]) == 2*perKey && depth(t, db.Queue()) == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("jobs %v ran while another job of their key ran", overlaps)
	}
	for key, ids := range sent {
		if !slices.Equal(order[key], ids) {
			t.Errorf("key %s ran %v, want the order received %v", key, order[key], ids)
		}
	}
	if most < 2 {
		t.Errorf("at most %d jobs ran at once, want jobs of both keys at once", most)
	}
}

func TestNewPushCancelsTheRunningPlan(t *testing.T) {
	db := openDB(t)
	var (
		r         runs
		started   = make(chan store.Job, 10)
		cancelled = make(chan string, 10)
	)
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Run: func(ctx context.Context, j store.Job) error {
		r.add(j)
		started <- j
		if headSHA(j) == "old" {
			<-ctx.Done()
			cancelled <- j.ID
			return ctx.Err()
		}
		return nil
	}})
	old, newer := newDelivery(), newDelivery()
	if status, _ := send(t, base+"/webhook", "pull_request", old, prPayload("synchronize", 7, "old")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	if j := <-started; j.ID != old {
		t.Fatalf("started %s, want %s", j.ID, old)
	}
	// The same head again (a reopen) does not supersede the plan.
	if status, _ := send(t, base+"/webhook", "pull_request", newDelivery(), prPayload("reopened", 7, "old")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	select {
	case id := <-cancelled:
		t.Fatalf("%s was cancelled by a delivery that does not supersede it", id)
	default:
	}
	if status, _ := send(t, base+"/webhook", "pull_request", newer, prPayload("synchronize", 7, "new")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	select {
	case id := <-cancelled:
		if id != old {
			t.Errorf("cancelled %s, want %s", id, old)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the plan for the old head was not cancelled")
	}
	testkit.WaitFor(t, "every job was recorded done", 10*time.Second, func() bool { return depth(t, db.Queue()) == 0 })
	if got := r.ids(); len(got) != 2 || got[0] != old || got[1] != newer {
		t.Errorf("runs %v, want %s then %s (the reopen, superseded before it ran, skipped)", got, old, newer)
	}
	// Superseded is done ok, not failed: a redelivery is a duplicate.
	if status, _ := send(t, base+"/webhook", "pull_request", old, prPayload("synchronize", 7, "old")); status != http.StatusOK {
		t.Errorf("redelivery of the superseded plan: status %d, want 200 duplicate", status)
	}
	metrics := scrape(t, base)
	if v := metrics[`nestbot_job_duration_seconds_count{event="pull_request",result="superseded"}`]; v != "2" {
		t.Errorf("superseded jobs in the metrics: %q, want 2 (one cancelled, one skipped)", v)
	}
}

func TestApplyIsNotCancelledByANewPush(t *testing.T) {
	db := openDB(t)
	release := make(chan struct{})
	started := make(chan context.Context, 10)
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Run: func(ctx context.Context, j store.Job) error {
		started <- ctx
		<-release
		return nil
	}})
	if status, _ := send(t, base+"/webhook", "push", newDelivery(), pushTo("o/r", "a1")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	ctx := <-started
	// Intake notifies the pool before it answers: had the push cancelled
	// the running apply, its context would be done by now.
	if status, _ := send(t, base+"/webhook", "push", newDelivery(), pushTo("o/r", "a2")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	if ctx.Err() != nil {
		t.Error("a new push cancelled the running apply")
	}
	close(release)
	testkit.WaitFor(t, "both applies ran", 10*time.Second, func() bool { return depth(t, db.Queue()) == 0 })
}

func TestQueuedPlanSupersededBeforeItRunsIsSkipped(t *testing.T) {
	db := openDB(t)
	var r runs
	started := make(chan store.Job, 10)
	release := make(chan struct{})
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Run: func(ctx context.Context, j store.Job) error {
		r.add(j)
		started <- j
		if headSHA(j) == "sha1" {
			<-ctx.Done()
			<-release // still returning when the later pushes are queued
		}
		return nil
	}})
	ids := []string{newDelivery(), newDelivery(), newDelivery()}
	for i, id := range ids {
		if status, _ := send(t, base+"/webhook", "pull_request", id, prPayload("synchronize", 9, fmt.Sprintf("sha%d", i+1))); status != http.StatusAccepted {
			t.Fatalf("status %d, want 202", status)
		}
		if i == 0 {
			<-started
		}
	}
	close(release)
	testkit.WaitFor(t, "every job was recorded done", 10*time.Second, func() bool { return depth(t, db.Queue()) == 0 })
	if got := r.ids(); !slices.Equal(got, []string{ids[0], ids[2]}) {
		t.Errorf("runs %v, want the first (cancelled) and the last; the middle one superseded before it ran", got)
	}
}

func TestLongJobKeepsItsClaim(t *testing.T) {
	db := openDB(t)
	var r runs
	const lease = 300 * time.Millisecond
	base, _ := serve(t, webhook.Config{Queue: db.Queue(), Workers: 2, Lease: lease, Poll: 50 * time.Millisecond,
		Run: func(ctx context.Context, j store.Job) error {
			r.add(j)
			select { // work for four leases
			case <-time.After(4 * lease):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
	if status, _ := send(t, base+"/webhook", "push", newDelivery(), pushTo("o/r", "a1")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	testkit.WaitFor(t, "the job was recorded done", 10*time.Second, func() bool { return depth(t, db.Queue()) == 0 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.jobs) != 1 || r.jobs[0].Attempt != 1 {
		t.Errorf("runs %+v, want one, attempt 1: the lease was extended while it ran", r.jobs)
	}
}

func TestShutdownLeavesACutJobForTheRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	srv, err := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(secret)}, Queue: db.Queue(), Logger: logger(t),
		ShutdownTimeout: 200 * time.Millisecond,
		Run: func(ctx context.Context, j store.Job) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	base, stop := runServer(t, srv)
	id := newDelivery()
	if status, _ := send(t, base+"/webhook", "push", id, pushTo("o/r", "a1")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	<-started
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := depth(t, db.Queue()); n != 1 {
		t.Errorf("depth after shutdown %d, want the cut job still there", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB2(t, path)
	jobs := drain(t, db.Queue())
	if len(jobs) != 1 || jobs[0].ID != id || jobs[0].Attempt != 2 {
		t.Errorf("after a restart the queue gave %+v, want %s at attempt 2", jobs, id)
	}
}

// runServer runs srv on a loopback port; stop ends Run and returns its error.
func runServer(t *testing.T, srv *webhook.Server) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

func openDB2(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// losingQueue is the real queue, except that every Extend finds the claim
// lost (as when a stalled worker's lease ran out and another took the job).
type losingQueue struct{ store.Queue }

func (losingQueue) Extend(context.Context, *store.Claim, time.Duration) error {
	return fmt.Errorf("extend: %w", store.ErrLost)
}

func TestJobWhoseClaimIsLostIsCancelledAndNotRecordedDone(t *testing.T) {
	db := openDB(t)
	cancelled := make(chan struct{})
	var once sync.Once
	m := webhook.NewMetrics(nil)
	base, _ := serve(t, webhook.Config{Queue: losingQueue{db.Queue()}, Lease: 300 * time.Millisecond, Metrics: m,
		Run: func(ctx context.Context, j store.Job) error {
			<-ctx.Done()
			once.Do(func() { close(cancelled) })
			return nil // it says it finished, but its claim is gone
		}})
	if status, _ := send(t, base+"/webhook", "push", newDelivery(), pushTo("o/r", "a1")); status != http.StatusAccepted {
		t.Fatalf("status %d, want 202", status)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the job was not cancelled when its claim was lost")
	}
	// (Its lease runs out unextended, so a worker takes it again, and
	// loses it again: the count may be past one.)
	testkit.WaitFor(t, "the job counted as abandoned", 10*time.Second, func() bool {
		n, _ := strconv.Atoi(scrape(t, base)[`nestbot_job_duration_seconds_count{event="push",result="abandoned"}`])
		return n >= 1
	})
	if v := scrape(t, base)[`nestbot_job_duration_seconds_count{event="push",result="ok"}`]; v != "" {
		t.Errorf("a job whose claim was lost counted as ok %s times", v)
	}
	if n := depth(t, db.Queue()); n != 1 {
		t.Errorf("depth %d, want the job still there: a lost claim's work is not recorded done", n)
	}
}
