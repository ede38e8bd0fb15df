package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/store"
)

// effects is the fault suite's job runner, in the server subprocess: the
// effect of a job is one line in a file, written with O_APPEND and
// fsynced before Run returns, so it survives the process:
//
//	run <id> <attempt> <pid>    the delivery's effect, done once
//	skip <id> <attempt> <pid>   the delivery ran again; its effect is not repeated
//
// The queue is at-least-once: a job is recorded done after Run returns, so
// a kill between the two runs the job again in the next process. The
// runner is idempotent by delivery id, as nestbot's handlers are meant to
// be: it remembers the ids whose effect is in the file (read back at
// start) and writes "skip" for them. The test reads the file to tell
// effects from re-runs, and re-runs after a kill from re-runs in one
// process (which would be a bug).
type effects struct {
	f    *os.File
	pid  int
	mu   sync.Mutex
	done map[string]bool
}

func openEffects(path string) (*effects, error) {
	recs, err := readEffects(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	e := &effects{pid: os.Getpid(), done: map[string]bool{}}
	for _, r := range recs {
		if r.kind == "run" {
			e.done[r.id] = true
		}
	}
	if e.f, err = os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *effects) Run(_ context.Context, j store.Job) error {
	e.mu.Lock()
	kind := "run"
	if e.done[j.ID] {
		kind = "skip"
	}
	e.done[j.ID] = true
	e.mu.Unlock()
	// One write(2) per line: with O_APPEND, lines of concurrent jobs do
	// not interleave, and a SIGKILL does not tear a line.
	if _, err := fmt.Fprintf(e.f, "%s %s %d %d\n", kind, j.ID, j.Attempt, e.pid); err != nil {
		return err
	}
	return e.f.Sync()
}

func (e *effects) Close() error { return e.f.Close() }

// effect is one line of the effects file.
type effect struct {
	kind    string // "run" or "skip"
	id      string
	attempt int
	pid     int
}

func readEffects(path string) ([]effect, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []effect
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		var r effect
		var err1, err2 error
		if len(f) == 4 {
			r.kind, r.id = f[0], f[1]
			r.attempt, err1 = strconv.Atoi(f[2])
			r.pid, err2 = strconv.Atoi(f[3])
		}
		if len(f) != 4 || (r.kind != "run" && r.kind != "skip") || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s:%d: %q is not \"run|skip <id> <attempt> <pid>\"", path, n, sc.Text())
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// target is the base URL of the server that runs now; it changes at each
// restart.
type target struct {
	mu      sync.Mutex
	base    string
	changed chan struct{} // closed when base changes
}

func newTarget(base string) *target { return &target{base: base, changed: make(chan struct{})} }

func (tg *target) get() (string, <-chan struct{}) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.base, tg.changed
}

func (tg *target) set(base string) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.base = base
	close(tg.changed)
	tg.changed = make(chan struct{})
}

// faultTally is what the client saw.
type faultTally struct {
	accepted  atomic.Int64 // deliveries whose 2xx was 202
	duplicate atomic.Int64 // deliveries whose 2xx was 200: stored by an attempt whose answer a kill cut off
	answered  atomic.Int64 // deliveries that got their 2xx
	connFail  atomic.Int64 // attempts that got no answer (refused, reset, cut off)
	mu        sync.Mutex
	refused   map[int]int // attempts answered with a status other than 2xx, by status
	final     map[string]int
}

// TestFaultDeliveriesAcrossKills sends signed deliveries at a server
// subprocess from many clients at once, each delivery sent again until it
// gets a 2xx (as a person redelivers), while the server is killed with
// SIGKILL and restarted on the same bbolt file several times. Then it
// waits for the queue to drain and checks that every delivery that got a
// 202 or 200 had its effect exactly once, and that a job run again did so
// only after a kill cut it off between its effect and its Done.
//
// NESTBOT_FAULT_SEED replays the kill moments of an earlier run.
func TestFaultDeliveriesAcrossKills(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a server under load for several seconds")
	}
	const (
		sent        = 2000
		concurrency = 24
		kills       = 5
		keys        = 8
		workers     = 4
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("NESTBOT_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("NESTBOT_FAULT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (NESTBOT_FAULT_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	start := time.Now()

	dir := t.TempDir()
	effectsPath := filepath.Join(dir, "effects")
	env := []string{"TEST_EFFECTS=" + effectsPath, fmt.Sprintf("TEST_WORKERS=%d", workers)}
	server, base := startTestServer(t, dir, env...)
	tg := newTarget(base)

	ids := make([]string, sent)
	for i := range ids {
		ids[i] = fmt.Sprintf("fault-%d-%06d", seed%1000000, i)
	}
	tally := &faultTally{refused: map[int]int{}, final: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	client := &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, DisableCompression: true},
	}
	defer client.CloseIdleConnections()

	var next atomic.Int64
	var clients sync.WaitGroup
	clientErrs := make(chan error, concurrency)
	for range concurrency {
		clients.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= sent {
					return
				}
				body := pushTo(fmt.Sprintf("o/r%d", i%keys), fmt.Sprintf("%040x", i))
				if err := deliverUntil2xx(ctx, client, tg, tally, ids[i], body); err != nil {
					clientErrs <- err
					cancel()
					return
				}
			}
		})
	}

	// kill -9 when the clients have had a random share of the deliveries
	// answered, so that every kill lands under load; restart at once.
	var moments []int
	for range kills {
		moments = append(moments, sent/10+rng.IntN(sent*8/10))
	}
	slices.Sort(moments)
	var downtime []time.Duration
	for k, m := range moments {
		testkit.WaitFor(t, fmt.Sprintf("kill %d: %d deliveries answered", k+1, m), 40*time.Second, func() bool {
			return tally.answered.Load() >= int64(m) || ctx.Err() != nil
		})
		if ctx.Err() != nil {
			break
		}
		killed := time.Now()
		if err := server.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := server.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("kill %d: the server ended with %v, want killed", k+1, err)
		}
		server, base = startTestServer(t, dir, env...)
		tg.set(base)
		downtime = append(downtime, time.Since(killed))
		t.Logf("kill %d after %d answered; back in %s", k+1, m, downtime[len(downtime)-1].Round(time.Millisecond))
	}
	clients.Wait()
	close(clientErrs)
	for err := range clientErrs {
		t.Fatal(err)
	}
	if len(downtime) != kills {
		t.Fatalf("%d kills of %d: the load ended first", len(downtime), kills)
	}
	loadDone := time.Since(start)

	// The queue drains: every job the kills left queued or claimed runs.
	drainStart := time.Now()
	var lastDepth int
	testkit.WaitFor(t, "the queue drained", 40*time.Second, func() bool {
		d, err := queueDepth(base)
		lastDepth = d
		return err == nil && d == 0
	})
	drained := time.Since(drainStart)

	// A redelivery of a processed delivery is a duplicate and runs nothing.
	redelivered, redeliveredDup := 0, 0
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer rcancel()
	for i := 0; i < sent; i += sent / 50 {
		status, err := post(rctx, client, base, ids[i], pushTo(fmt.Sprintf("o/r%d", i%keys), fmt.Sprintf("%040x", i)))
		if err != nil {
			t.Fatalf("redelivery of %s: %v", ids[i], err)
		}
		redelivered++
		if status == http.StatusOK {
			redeliveredDup++
		}
	}
	if err := server.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := server.Wait(); err != nil {
		t.Errorf("the last server, stopped by SIGTERM: %v, want a clean exit", err)
	}
	wall := time.Since(start)
	db := openDB2(t, filepath.Join(dir, "nestbot.db"))
	if n := depth(t, db.Queue()); n != 0 {
		t.Errorf("depth %d in the file after the drain, want 0 (the metric said %d)", n, lastDepth)
	}

	recs, err := readEffects(effectsPath)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string][]effect{}
	for _, r := range recs {
		byID[r.id] = append(byID[r.id], r)
	}
	var processed, twice, lost, rerunAfterKill, reclaimed, rerunInProcess, unknown int
	for id, rs := range byID {
		if _, ok := tally.final[id]; !ok {
			unknown++
			t.Errorf("delivery %s had an effect but was never answered 2xx", id)
		}
		var first *effect
		for i, r := range rs {
			switch {
			case r.kind == "run" && first == nil:
				first = &rs[i]
				processed++
				if r.attempt > 1 {
					reclaimed++ // claimed by a process that died before the effect
				}
			case r.kind == "run":
				twice++
				t.Errorf("delivery %s had its effect twice: %+v", id, rs)
			case first == nil:
				t.Errorf("delivery %s: a skip before its effect: %+v", id, rs)
			case r.pid != first.pid && r.attempt > first.attempt:
				rerunAfterKill++
			default:
				rerunInProcess++
				t.Errorf("delivery %s ran again in the process that ran it (pid %d): %+v", id, r.pid, rs)
			}
		}
	}
	for _, id := range ids {
		if _, ok := tally.final[id]; ok && !slices.ContainsFunc(byID[id], func(r effect) bool { return r.kind == "run" }) {
			lost++
			if lost <= 10 {
				t.Errorf("delivery %s was answered %d but never processed", id, tally.final[id])
			}
		}
	}
	if redeliveredDup != redelivered {
		t.Errorf("redeliveries of processed deliveries: %d of %d answered 200 duplicate", redeliveredDup, redelivered)
	}
	var refused []string
	for status, n := range tally.refused {
		refused = append(refused, fmt.Sprintf("%d×%d", n, status))
		if status < 500 {
			t.Errorf("%d attempts were answered %d", n, status)
		}
	}
	slices.Sort(refused)
	var maxDown time.Duration
	for _, d := range downtime {
		maxDown = max(maxDown, d)
	}

	const f = "FIGURE: webhook SIGKILL under load: %s: %v"
	t.Logf(f, "deliveries sent", sent)
	t.Logf(f, "concurrent clients", concurrency)
	t.Logf(f, "accepted (202)", tally.accepted.Load())
	t.Logf(f, "duplicate (200, stored before a kill cut the answer off)", tally.duplicate.Load())
	t.Logf(f, "attempts without an answer (refused, reset during kills)", tally.connFail.Load())
	if len(refused) == 0 {
		refused = []string{"0"}
	}
	t.Logf(f, "attempts answered non-2xx", strings.Join(refused, " "))
	t.Logf(f, "processed (effect once)", processed)
	t.Logf(f, "processed twice", twice)
	t.Logf(f, "lost (answered 2xx, never processed)", lost)
	t.Logf(f, "re-run after a kill between processing and done (idempotent skip)", rerunAfterKill)
	t.Logf(f, "re-claimed after a kill before processing", reclaimed)
	t.Logf(f, "re-run within one process", rerunInProcess)
	t.Logf(f, "redeliveries after the drain answered 200 duplicate", fmt.Sprintf("%d of %d", redeliveredDup, redelivered))
	t.Logf(f, "kills", len(downtime))
	t.Logf(f, "longest restart (kill to listening)", maxDown.Round(time.Millisecond))
	t.Logf(f, "load phase", loadDone.Round(time.Millisecond))
	t.Logf(f, "drain after the load", drained.Round(time.Millisecond))
	t.Logf(f, "wall time", wall.Round(time.Millisecond))

	if got := tally.accepted.Load() + tally.duplicate.Load(); got != sent {
		t.Errorf("%d deliveries answered 2xx, want all %d", got, sent)
	}
	if tally.duplicate.Load() > tally.connFail.Load() {
		t.Errorf("%d deliveries answered 200 duplicate, but only %d attempts went unanswered: a first attempt was a duplicate",
			tally.duplicate.Load(), tally.connFail.Load())
	}
	if processed != sent || unknown != 0 {
		t.Errorf("%d deliveries processed (%d unknown), want %d", processed, unknown, sent)
	}
}

// deliverUntil2xx posts one delivery until it is answered 2xx, to
// whichever server runs: an attempt without an answer waits for the next
// server (or 100 ms, when no kill caused it). It records the outcome in
// tally.
func deliverUntil2xx(ctx context.Context, client *http.Client, tg *target, tally *faultTally, id string, body []byte) error {
	for {
		base, changed := tg.get()
		status, err := post(ctx, client, base, id, body)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("delivery %s: no 2xx in time: %w", id, ctx.Err())
		case errors.Is(err, errSecretInResponse):
			return err
		case err != nil:
			tally.connFail.Add(1)
			select {
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		case status == http.StatusAccepted:
			tally.accepted.Add(1)
		case status == http.StatusOK:
			tally.duplicate.Add(1)
		default:
			tally.mu.Lock()
			tally.refused[status]++
			tally.mu.Unlock()
			if status < 500 {
				return fmt.Errorf("delivery %s: answered %d", id, status)
			}
			continue
		}
		tally.mu.Lock()
		tally.final[id] = status
		tally.mu.Unlock()
		tally.answered.Add(1)
		return nil
	}
}

var errSecretInResponse = errors.New("the response holds the webhook secret")

// post sends one signed push delivery to base and returns the status.
func post(ctx context.Context, client *http.Client, base, id string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/webhook", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderEvent, "push")
	req.Header.Set(webhook.HeaderDelivery, id)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte(secret), body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if bytes.Contains(b, []byte(secret)) {
		return 0, fmt.Errorf("delivery %s: %w", id, errSecretInResponse)
	}
	return resp.StatusCode, nil
}

// queueDepth reads nestbot_queue_depth from the server's /metrics.
func queueDepth(base string) (int, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "nestbot_queue_depth "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, errors.New("/metrics has no nestbot_queue_depth")
}
