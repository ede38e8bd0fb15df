package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/store"
)

// TestKilledWhileEnqueueingLosesNothingAnswered runs Enqueue in a process
// of its own, 32 at a time, each printing the id it stored once Enqueue
// returned, and SIGKILLs it mid-stream, four times over one file: every
// id printed is in the queue afterwards (durability before the answer),
// and nothing is in it twice.
func TestKilledWhileEnqueueingLosesNothingAnswered(t *testing.T) {
	if os.Getenv("NESTBOT_STORE_KILL_CHILD") != "" {
		enqueueUntilKilled()
		return
	}
	path := filepath.Join(t.TempDir(), "nestbot.db")
	answered := map[string]bool{}
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWhileEnqueueingLosesNothingAnswered$")
		cmd.Env = append(os.Environ(), "NESTBOT_STORE_KILL_CHILD="+path, fmt.Sprintf("NESTBOT_STORE_KILL_ROUND=%d", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "stored "); ok {
				answered[id] = true
				if n++; n == 300+100*round {
					cmd.Process.Signal(syscall.SIGKILL)
					break
				}
			}
		}
		for sc.Scan() { // what it printed before the signal landed
			if id, ok := strings.CutPrefix(sc.Text(), "stored "); ok {
				answered[id] = true
			}
		}
		if err := cmd.Wait(); err == nil || n < 300+100*round {
			t.Fatalf("round %d: the child was not killed mid-stream (%d answered, %v)", round, n, err)
		}
	}
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seen := map[string]int{}
	for {
		c, err := db.Queue().Claim(context.Background(), "checker", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		seen[c.Job.ID]++
		if err := db.Queue().Done(context.Background(), c, store.ResultOK); err != nil { // its Key is free again
			t.Fatal(err)
		}
	}
	lost := 0
	for id := range answered {
		if seen[id] == 0 {
			lost++
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s claimed %d times", id, n)
		}
	}
	if lost > 0 || len(answered) < 1800 {
		t.Fatalf("%d of %d answered deliveries lost", lost, len(answered))
	}
}

// enqueueUntilKilled is the child: it enqueues new jobs, 32 at a time,
// printing each id once stored, until it is killed.
func enqueueUntilKilled() {
	db, err := store.Open(os.Getenv("NESTBOT_STORE_KILL_CHILD"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	q := db.Queue()
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	payload := []byte(strings.Repeat(`{"ref":"refs/heads/main"}`, 300))
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%s-g%d-%d", os.Getenv("NESTBOT_STORE_KILL_ROUND"), g, i)
				if err := q.Enqueue(context.Background(), store.Job{ID: id, Event: "push", Key: "o/r", Payload: payload}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintln(w, "stored", id)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
