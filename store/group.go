package store

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit runs the queue's writes in shared transactions. A write
// that finds no commit running starts one (in a goroutine of its own, so
// no caller is held longer than its own commit); every write that arrives
// meanwhile waits for the next, which takes them all. Each caller returns
// once the commit holding its write is on disk.
//
// A write answers with an error of its own (a duplicate, a lost claim) by
// returning a domainError: the others in its transaction are unaffected.
// Any other error rolls the transaction back; the write that failed gets
// its error and the rest are run again without it.
type groupCommit struct {
	db      *DB
	mu      sync.Mutex
	waiting []*groupWrite
	running bool
}

type groupWrite struct {
	apply func(tx *bolt.Tx) error
	size  int // payload bytes, to bound a group
	err   error
	done  chan struct{}
}

// domainError is one write's answer (ErrDuplicate, ErrLost), as opposed to
// a failure that must roll its transaction back.
type domainError struct{ error }

func (e domainError) Unwrap() error { return e.error }

// Bounds on one group: a burst of large payloads is split over commits.
const (
	maxGroupWrites = 512
	maxGroupBytes  = 64 << 20
)

// do runs apply in the next group's transaction and returns once that is
// committed: apply's own error (a domainError), the commit's error, or nil.
// apply may run more than once (when another write of its group fails), so
// it must set what it returns afresh on each run.
func (g *groupCommit) do(size int, apply func(tx *bolt.Tx) error) error {
	w := &groupWrite{apply: apply, size: size, done: make(chan struct{})}
	g.mu.Lock()
	g.waiting = append(g.waiting, w)
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	<-w.done
	return w.err
}

func (g *groupCommit) run() {
	for {
		g.mu.Lock()
		n, size := 0, 0
		for n < len(g.waiting) && n < maxGroupWrites && (n == 0 || size+g.waiting[n].size <= maxGroupBytes) {
			size += g.waiting[n].size
			n++
		}
		if n == 0 {
			g.waiting = nil
			g.running = false
			g.mu.Unlock()
			return
		}
		group := g.waiting[:n:n]
		g.waiting = g.waiting[n:]
		g.mu.Unlock()
		g.commit(group)
	}
}

func (g *groupCommit) commit(group []*groupWrite) {
	for len(group) > 0 {
		failed := -1
		err := g.db.bolt.Update(func(tx *bolt.Tx) error {
			for i, w := range group {
				w.err = w.apply(tx)
				if w.err != nil && !errors.As(w.err, new(domainError)) {
					failed = i
					return w.err
				}
			}
			return nil
		})
		if err == nil || failed < 0 {
			for _, w := range group {
				if err != nil {
					w.err = err
				}
				close(w.done)
			}
			return
		}
		close(group[failed].done)
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}
