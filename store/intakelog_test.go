package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func intakeJob(i int) Job {
	return Job{ID: fmt.Sprintf("d-%03d", i), Event: "push", Key: fmt.Sprintf("o/r#%d", i),
		Payload: fmt.Appendf(nil, `{"n":%d}`, i), Received: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC)}
}

// claimAll claims every job there is and returns their ids and payloads.
func claimAll(t *testing.T, q Queue) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, c := range claims(t, q) {
		got[c.Job.ID] = string(c.Job.Payload)
	}
	return got
}

// claims claims every job there is, oldest first.
func claims(t *testing.T, q Queue) []*Claim {
	t.Helper()
	var out []*Claim
	for {
		c, err := q.Claim(context.Background(), "worker", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			return out
		}
		out = append(out, c)
	}
}

// TestIntakeLogIsPutIntoTheStateFileAtOpen: jobs that reached the intake
// log but not the state file (a crash in between: here, records appended
// to the log of a closed file) are in the queue once it is opened again;
// a record the crash cut short is dropped, and the log goes on after the
// last good one.
func TestIntakeLogIsPutIntoTheStateFileAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Queue().Enqueue(context.Background(), intakeJob(1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// What a process wrote to the log, synced, and answered, before it died.
	var tail []byte
	for i := 2; i <= 4; i++ {
		tail = appendRecord(tail, intakeJob(i))
	}
	torn := appendRecord(nil, intakeJob(5))
	tail = append(tail, torn[:len(torn)-3]...)
	f, err := os.OpenFile(path+".intake", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before, _ := os.Stat(path + ".intake")

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path + ".intake")
	if want := before.Size() - int64(len(torn)-3); after.Size() != want {
		t.Errorf("the log is %d bytes after Open, want %d (the torn record cut off)", after.Size(), want)
	}
	q := db.Queue()
	if err := q.Enqueue(context.Background(), intakeJob(6)); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(context.Background(), intakeJob(3)); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Enqueue of a job the log had: %v, want ErrDuplicate", err)
	}
	got := claimAll(t, q)
	want := map[string]string{}
	for _, i := range []int{1, 2, 3, 4, 6} {
		want[intakeJob(i).ID] = string(intakeJob(i).Payload)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("claimed %v, want %v (the torn d-005 dropped)", got, want)
	}
	db.Close()
	// Opened again, nothing is put in twice.
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.Queue().Depth(context.Background()); err != nil || n != len(want) {
		t.Errorf("Depth after another Open = %d, %v; want %d", n, err, len(want))
	}
}

// TestIntakeLogThatIsNotOneIsRefused: Open does not overwrite a file at
// the log's path that it did not write.
func TestIntakeLogThatIsNotOneIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	if err := os.WriteFile(path+".intake", []byte("someone else's file, not a log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(path); err == nil {
		db.Close()
		t.Fatal("Open with a foreign file at the intake log's path: nil error")
	}
	if data, _ := os.ReadFile(path + ".intake"); string(data) != "someone else's file, not a log\n" {
		t.Errorf("the file was changed: %q", data)
	}
}

// TestIntakeLogRotates: once everything in the log is in the state file and
// it is past its size, the next batch starts an empty log with another id;
// nothing is lost across that or across a reopen.
func TestIntakeLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	db.intake.rotateAt = 200
	q, ctx := db.Queue(), context.Background()
	logID := func() uint64 {
		db.intake.mu.Lock()
		defer db.intake.mu.Unlock()
		return db.intake.id
	}
	firstID := logID()
	for i := range 10 {
		if err := q.Enqueue(ctx, intakeJob(i)); err != nil {
			t.Fatal(err)
		}
		if err := db.intake.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if logID() == firstID {
		t.Fatal("the log was never replaced")
	}
	if fi, _ := os.Stat(path + ".intake"); fi.Size() > 400 {
		t.Errorf("the log is %d bytes, want it cut back", fi.Size())
	}
	db.Close()
	if db, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q = db.Queue()
	if segs := segments(t, path); len(segs) == 0 {
		t.Fatal("no replaced log was kept, and their jobs are not done")
	}
	claims := claimEach(t, q)
	if len(claims) != 10 {
		t.Fatalf("claimed %d jobs after rotations and a reopen, want 10", len(claims))
	}
	for _, c := range claims {
		if err := q.Done(ctx, c, ResultOK); err != nil {
			t.Fatal(err)
		}
	}
	if segs := segments(t, path); len(segs) != 0 {
		t.Errorf("every job is done and the logs that held them are still there: %v", segs)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 {
		t.Errorf("the state directory holds %v, want the file and its log", entries)
	}
}

// claimEach claims every job there is, checks each payload is its job's
// (intakeJob), and returns the claims.
func claimEach(t *testing.T, q Queue) []*Claim {
	t.Helper()
	all := claims(t, q)
	for _, c := range all {
		var i int
		if _, err := fmt.Sscanf(c.Job.ID, "d-%d", &i); err != nil || string(c.Job.Payload) != string(intakeJob(i).Payload) {
			t.Errorf("job %s has payload %q, want %q", c.Job.ID, c.Job.Payload, intakeJob(i).Payload)
		}
	}
	return all
}

// segments lists the replaced logs kept beside the state file at path.
func segments(t *testing.T, path string) []string {
	t.Helper()
	names, err := filepath.Glob(path + ".intake-*")
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// rotatedQueue opens a state file whose log is replaced every few jobs and
// enqueues n jobs into it, all in the state file when it returns.
func rotatedQueue(t *testing.T, path string, n int) *DB {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.intake.rotateAt = 200
	ctx := context.Background()
	for i := range n {
		if err := db.Queue().Enqueue(ctx, intakeJob(i)); err != nil {
			t.Fatal(err)
		}
		if err := db.intake.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(segments(t, path)) == 0 {
		t.Fatal("no log was replaced")
	}
	return db
}

// copyState copies the state file at path with its logs into dir, as a
// crash leaves them: the original stays open.
func copyState(t *testing.T, path, dir string) string {
	t.Helper()
	names, err := filepath.Glob(path + "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		copyFile(t, name, filepath.Join(dir, filepath.Base(name)))
	}
	return filepath.Join(dir, filepath.Base(path))
}

// TestPayloadsLiveInTheLogAcrossACrash: the state file keeps only where
// each payload is in the intake logs; after a crash (a copy of the files
// while the store is open) every job is claimed with its payload, read
// from the logs replaced since as well as from the current one.
func TestPayloadsLiveInTheLogAcrossACrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	rotatedQueue(t, path, 10)
	crashed := copyState(t, path, t.TempDir())
	db, err := Open(crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.bolt.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(queueBucket).Bucket(payloadsBucket).Stats().KeyN; n != 0 {
			t.Errorf("the state file holds %d payloads, want none (they are in the log)", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if claims := claimEach(t, db.Queue()); len(claims) != 10 {
		t.Errorf("claimed %d jobs after the crash, want 10", len(claims))
	}
}

// TestCrashWhileTheLogIsReplaced: replacing a log that holds jobs not done
// renames it to a segment, then puts the empty one in its place; a crash
// between the two leaves no current log, and Open starts one with every
// job still there.
func TestCrashWhileTheLogIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db := rotatedQueue(t, path, 10)
	crashed := copyState(t, path, t.TempDir())
	db.intake.mu.Lock()
	id := db.intake.id
	db.intake.mu.Unlock()
	if err := os.Rename(crashed+".intake", fmt.Sprintf("%s.intake-%016x", crashed, id)); err != nil {
		t.Fatal(err)
	}
	after, err := Open(crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if claims := claimEach(t, after.Queue()); len(claims) != 10 {
		t.Errorf("claimed %d jobs after the crash, want 10", len(claims))
	}
}

// TestOpenRemovesSegmentsOfDoneJobs: a crash between the Done of a
// replaced log's last job and the log's removal leaves the log behind;
// the next Open removes it, and keeps the ones that hold jobs not done.
func TestOpenRemovesSegmentsOfDoneJobs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nestbot.db")
	db := rotatedQueue(t, path, 10)
	before := segments(t, path)
	saved := t.TempDir()
	for _, name := range before {
		copyFile(t, name, filepath.Join(saved, filepath.Base(name)))
	}
	q, ctx := db.Queue(), context.Background()
	claims := claimEach(t, q)
	for _, c := range claims[:len(claims)-1] { // the newest job stays claimed: it is in the current log
		if err := q.Done(ctx, c, ResultOK); err != nil {
			t.Fatal(err)
		}
	}
	if segs := segments(t, path); len(segs) != 0 {
		t.Fatalf("the jobs of %v are done and they are still there", segs)
	}
	db.Close()
	for _, name := range before { // as the crash left them
		copyFile(t, filepath.Join(saved, filepath.Base(name)), name)
	}
	after, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if segs := segments(t, path); len(segs) != 0 {
		t.Errorf("Open kept %v, whose jobs are all done", segs)
	}
	claims = claimEach(t, after.Queue())
	if len(claims) != 1 || claims[0].Job.ID != intakeJob(9).ID {
		t.Errorf("after the reopen %d jobs are claimed, want only %s (its claim was the old epoch's)", len(claims), intakeJob(9).ID)
	}
}

// TestConcurrentEnqueuesOfOneDeliveryStoreItOnce: a delivery sent many
// times at once is accepted once, whether the others find it in the log
// or in the state file.
func TestConcurrentEnqueuesOfOneDeliveryStoreItOnce(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := db.Queue()
	for round := range 20 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		accepted, dup := 0, 0
		for range 16 {
			wg.Go(func() {
				err := q.Enqueue(context.Background(), intakeJob(round))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					accepted++
				case errors.Is(err, ErrDuplicate):
					dup++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if accepted != 1 || dup != 15 {
			t.Fatalf("round %d: %d accepted, %d duplicates; want 1 and 15", round, accepted, dup)
		}
	}
	if n, err := q.Depth(context.Background()); err != nil || n != 20 {
		t.Errorf("Depth = %d, %v; want 20", n, err)
	}
}

// TestGroupCommitCrashKeepsEveryAnsweredEnqueue: Enqueues that arrive
// while a log write is being synced wait for it and then share one write
// and one sync; a crash after that sync, before the state file has them,
// and with the next batch torn mid-record, keeps every Enqueue that
// returned (the copy of both files then is what the disk holds).
func TestGroupCommitCrashKeepsEveryAnsweredEnqueue(t *testing.T) {
	const n = 32
	dir := t.TempDir()
	path := filepath.Join(dir, "nestbot.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan int)
	release := make(chan struct{})
	applyGate := make(chan struct{})
	db.intake.wrote = func(jobs int) {
		written <- jobs
		<-release
	}
	db.intake.applyHook = func() { <-applyGate }
	defer func() {
		close(applyGate)
		db.Close()
	}()
	q, ctx := db.Queue(), context.Background()

	var mu sync.Mutex
	answered := map[string]bool{}
	var wg sync.WaitGroup
	enqueue := func(i int) {
		wg.Go(func() {
			if err := q.Enqueue(ctx, intakeJob(i)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			answered[intakeJob(i).ID] = true
			mu.Unlock()
		})
	}
	enqueue(0)
	if got := <-written; got != 1 {
		t.Fatalf("the first batch holds %d jobs, want 1", got)
	}
	// The writer is between its write and its sync: the next n wait.
	for i := 1; i <= n; i++ {
		enqueue(i)
	}
	waitUntil(t, "the n Enqueues wait for the log", func() bool {
		db.intake.mu.Lock()
		defer db.intake.mu.Unlock()
		return len(db.intake.waiting) == n
	})
	release <- struct{}{}
	if got := <-written; got != n {
		t.Fatalf("the second batch holds %d jobs, want all %d that waited (one write, one sync)", got, n)
	}
	release <- struct{}{}
	wg.Wait()
	if len(answered) != n+1 {
		t.Fatalf("%d Enqueues returned, want %d", len(answered), n+1)
	}

	// One more, written and not synced: the crash point.
	enqueue(n + 1)
	if got := <-written; got != 1 {
		t.Fatalf("the third batch holds %d jobs, want 1", got)
	}
	crashed := filepath.Join(t.TempDir(), "nestbot.db")
	copyFile(t, path, crashed)
	copyFile(t, path+".intake", crashed+".intake")
	fi, err := os.Stat(crashed + ".intake")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(crashed+".intake", fi.Size()-5); err != nil { // torn: the sync never finished
		t.Fatal(err)
	}
	mu.Lock()
	beforeCrash := maps.Clone(answered)
	mu.Unlock()
	close(release) // the original goes on; its last Enqueue returns
	wg.Wait()

	after, err := Open(crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	got := claimAll(t, after.Queue())
	for id := range beforeCrash {
		if _, ok := got[id]; !ok {
			t.Errorf("%s was answered before the crash and is lost", id)
		}
	}
	if _, ok := got[intakeJob(n+1).ID]; ok || len(got) != n+1 {
		t.Errorf("after the crash the queue holds %d jobs, want the %d answered before it and not the torn %s", len(got), n+1, intakeJob(n+1).ID)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitUntil waits, at most 10 s, for cond.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestClaimPutsTheLogsJobsInOnlyWhenOneCouldBeClaimed: jobs that wait in
// the intake log behind a claimed job of their Key stay there through an
// idle worker's Claim (no commit for it); once the Key's job is done, the
// next Claim puts them into the state file and gets the oldest; and the
// applier puts in what is left within applyDelay with nobody asking.
func TestClaimPutsTheLogsJobsInOnlyWhenOneCouldBeClaimed(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, ctx := db.Queue(), context.Background()
	job := func(i int) Job { j := intakeJob(i); j.Key = "o/r"; return j }
	inStateFile := func(j Job) bool {
		var ok bool
		db.bolt.View(func(tx *bolt.Tx) error {
			ok = tx.Bucket(queueBucket).Bucket(jobsBucket).Get([]byte(j.ID)) != nil
			return nil
		})
		return ok
	}
	if err := q.Enqueue(ctx, job(0)); err != nil {
		t.Fatal(err)
	}
	first, err := q.Claim(ctx, "worker-1", time.Hour)
	if err != nil || first == nil || first.Job.ID != job(0).ID {
		t.Fatalf("Claim = %v, %v; want %s", first, err, job(0).ID)
	}
	setDelay := func(d time.Duration) {
		db.intake.mu.Lock()
		db.intake.delay = d
		db.intake.mu.Unlock()
	}
	setDelay(time.Hour) // only a Claim could put them in
	for i := 1; i <= 2; i++ {
		if err := q.Enqueue(ctx, job(i)); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := q.Claim(ctx, "worker-2", time.Hour); c != nil || err != nil {
		t.Fatalf("Claim while the Key's job is claimed = %v, %v; want none", c, err)
	}
	if inStateFile(job(1)) {
		t.Fatal("an idle worker's Claim put the log's jobs into the state file")
	}
	if err := q.Done(ctx, first, ResultOK); err != nil {
		t.Fatal(err)
	}
	next, err := q.Claim(ctx, "worker-2", time.Hour)
	if err != nil || next == nil || next.Job.ID != job(1).ID || string(next.Job.Payload) != string(job(1).Payload) {
		t.Fatalf("Claim after the Key's job is done = %v, %v; want %s with its payload", next, err, job(1).ID)
	}
	setDelay(time.Millisecond)
	if err := q.Enqueue(ctx, job(3)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the applier puts the last job in on its own", func() bool { return inStateFile(job(3)) })
}
