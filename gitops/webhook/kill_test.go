package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/store"
)

// TestMain lets the test binary run as a webhook server in a process of its
// own (NESTBOT_WEBHOOK_TEST_SERVER=1), so a test can kill it.
func TestMain(m *testing.M) {
	if os.Getenv("NESTBOT_WEBHOOK_TEST_SERVER") == "1" {
		if err := serveForTest(); err != nil {
			fmt.Fprintln(os.Stderr, "test server:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// serveForTest is the subprocess: a Server on the bbolt file TEST_DB whose
// jobs append "started <id> <attempt>" to TEST_RUNS, then, unless
// TEST_BLOCK is set (then they never return), "done <id>". With
// TEST_EFFECTS set, its jobs are the fault suite's idempotent runner
// instead (see effects), and TEST_WORKERS sets the number of workers. It
// writes its address to TEST_ADDR and runs until SIGTERM.
func serveForTest() error {
	db, err := store.Open(os.Getenv("TEST_DB"))
	if err != nil {
		return err
	}
	defer db.Close()
	workers := 2
	if s := os.Getenv("TEST_WORKERS"); s != "" {
		if workers, err = strconv.Atoi(s); err != nil {
			return fmt.Errorf("TEST_WORKERS: %w", err)
		}
	}
	record := func(line string) error {
		f, err := os.OpenFile(os.Getenv("TEST_RUNS"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.WriteString(line + "\n"); err != nil {
			return err
		}
		return f.Sync()
	}
	block := os.Getenv("TEST_BLOCK") != ""
	run := func(ctx context.Context, j store.Job) error {
		if err := record(fmt.Sprintf("started %s %d", j.ID, j.Attempt)); err != nil {
			return err
		}
		if block {
			select {} // killed while it runs
		}
		return record("done " + j.ID)
	}
	if path := os.Getenv("TEST_EFFECTS"); path != "" {
		e, err := openEffects(path)
		if err != nil {
			return err
		}
		defer e.Close()
		run = e.Run
	}
	secrets, err := webhook.ParseSecrets(os.Getenv("NESTBOT_WEBHOOK_SECRET"))
	if err != nil {
		return err
	}
	srv, err := webhook.New(webhook.Config{
		Secrets: secrets, Queue: db.Queue(), Workers: workers, Run: run,
		DeadLetter: func(_ context.Context, j store.Job) error { return record(fmt.Sprintf("dead %s %d", j.ID, j.Attempt)) },
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := os.Getenv("TEST_ADDR")
	if err := os.WriteFile(addr+".tmp", []byte(ln.Addr().String()), 0o600); err != nil {
		return err
	}
	if err := os.Rename(addr+".tmp", addr); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	return srv.Run(ctx, ln)
}

// startTestServer starts the test binary as a server, its environment
// extended by env ("TEST_BLOCK=1", ...), and returns it with its base URL.
func startTestServer(t *testing.T, dir string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	addr := filepath.Join(dir, fmt.Sprintf("addr-%d", time.Now().UnixNano()))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"NESTBOT_WEBHOOK_TEST_SERVER=1",
		"NESTBOT_WEBHOOK_SECRET="+secret,
		"TEST_DB="+filepath.Join(dir, "nestbot.db"),
		"TEST_RUNS="+filepath.Join(dir, "runs"),
		"TEST_ADDR="+addr,
	)
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("the server's log holds the webhook secret")
		}
		t.Logf("server %d log:\n%s", cmd.Process.Pid, stderr.String())
	})
	var base string
	testkit.WaitFor(t, "the server's address", 15*time.Second, func() bool {
		b, err := os.ReadFile(addr)
		base = "http://" + string(b)
		return err == nil
	})
	return cmd, base
}

func runsFile(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "runs"))
	return string(b)
}

func TestJobAcceptedBeforeSIGKILLRunsAfterRestart(t *testing.T) {
	dir := t.TempDir()
	first, base := startTestServer(t, dir, "TEST_BLOCK=1")
	id := newDelivery()
	if status, body := send(t, base+"/webhook", "push", id, pushTo("o/r", "a1")); status != http.StatusAccepted {
		t.Fatalf("status %d %q, want 202", status, body)
	}
	// The worker took the job and is inside it; kill -9 before it finishes.
	testkit.WaitFor(t, "the first process started the job", 15*time.Second, func() bool {
		return strings.Contains(runsFile(dir), "started "+id+" 1\n")
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the first process ended with %v, want killed", err)
	}
	if strings.Contains(runsFile(dir), "done "+id) {
		t.Fatal("the job finished before the kill; the test proves nothing")
	}

	second, base := startTestServer(t, dir)
	testkit.WaitFor(t, "the second process ran the job to completion", 15*time.Second, func() bool {
		return strings.Contains(runsFile(dir), "done "+id+"\n")
	})
	if runs := runsFile(dir); !strings.Contains(runs, "started "+id+" 2\n") || strings.Count(runs, "done ") != 1 {
		t.Errorf("runs:\n%s\nwant the job started twice (attempt 2 after the restart) and done once", runs)
	}
	// The same delivery again, while the second process runs: one effect.
	if status, _ := send(t, base+"/webhook", "push", id, pushTo("o/r", "a1")); status != http.StatusOK {
		t.Errorf("the delivery again: status %d, want 200 duplicate", status)
	}
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("the second process, stopped by SIGTERM: %v, want a clean exit", err)
	}
	// The job is recorded done ok: nothing waits, and the id is spent.
	db := openDB2(t, filepath.Join(dir, "nestbot.db"))
	if n := depth(t, db.Queue()); n != 0 {
		t.Errorf("depth %d after the restart ran the job, want 0", n)
	}
	err := db.Queue().Enqueue(context.Background(), store.Job{ID: id, Event: "push", Key: "o/r"})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("enqueue of the delivery after it ran: %v, want ErrDuplicate (done ok)", err)
	}
	if runs := runsFile(dir); strings.Count(runs, "done ") != 1 {
		t.Errorf("runs:\n%s\nwant the job done once", runs)
	}
}
