package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/store"
)

// run is one Run's state.
type run struct {
	cfg     Rollout
	local   *localBuild // with BuildOn local
	hosts   []*hostRun  // in rollout order
	batches [][]*hostRun
	halted  atomic.Bool // no host starts any more
	stopped atomic.Bool // halted by Stop
	res     *Result

	emitMu sync.Mutex // serializes Events and Logger

	shipSem  chan struct{}
	probeSem chan struct{}
	bg       sync.WaitGroup // preflights and ships
}

// hostRun is one host's part in a run.
type hostRun struct {
	target Target
	batch  int
	conn   *conn
	names  names

	// From preflight, done when ready is closed.
	ready    chan struct{}
	found    Probed
	ins      inspection
	dec      decision
	inFlight bool
	gen      int // the system profile's generation before; 0 while unknown

	toplevel string // the built system, once known

	mu       sync.Mutex
	state    State
	detail   string
	err      error
	now      Probed
	nowFresh bool // now was probed after the host's last step

	shipOnce sync.Once
	shipDone chan struct{}
	shipErr  error
}

func (h *hostRun) setNow(p Probed) {
	h.mu.Lock()
	h.now, h.nowFresh = p, true
	h.mu.Unlock()
}

func (h *hostRun) getState() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// warn logs msg about host, with its attributes.
func (ru *run) warn(host, msg string, args ...any) {
	ru.emitMu.Lock()
	defer ru.emitMu.Unlock()
	logs.Or(ru.cfg.Logger).Warn("rollout: "+msg, append([]any{"host", host}, args...)...)
}

// set moves h to state, telling Events and the journal.
func (ru *run) set(h *hostRun, state State, detail string) {
	h.mu.Lock()
	h.state, h.detail = state, detail
	gen := h.gen
	h.mu.Unlock()
	now := ru.record(h, state, detail)
	if ru.cfg.Events == nil {
		return
	}
	ru.emitMu.Lock()
	defer ru.emitMu.Unlock()
	ru.cfg.Events(Event{Time: now, Revision: ru.cfg.Revision, Host: h.target.Name, Batch: h.batch, State: state, Generation: gen, Detail: detail})
}

// record writes a step of h to the journal, and returns its time.
func (ru *run) record(h *hostRun, state State, detail string) time.Time {
	now := time.Now()
	if j := ru.cfg.Journal; j != nil {
		h.mu.Lock()
		gen := h.gen
		h.mu.Unlock()
		err := j.Record(store.Entry{Rollout: ru.cfg.Revision, Host: h.target.Name, Step: string(state), Time: now, Generation: gen, Detail: detail})
		if err != nil {
			ru.warn(h.target.Name, "journal", "err", err)
		}
	}
	return now
}

// prepare preflights hosts, ProbeParallel at a time across the run, and
// ships the source to those that are to roll. Each host's ready
// channel closes once its preflight is done; with the rollout halted, no
// preflight is done.
func (ru *run) prepare(ctx context.Context, hosts []*hostRun) {
	for _, h := range hosts {
		ru.bg.Add(1)
		go func() {
			defer ru.bg.Done()
			defer close(h.ready)
			if ru.halted.Load() {
				return
			}
			select {
			case ru.probeSem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-ru.probeSem }()
			ru.preflightHost(ctx, h)
		}()
		ru.startShip(ctx, h)
	}
}

// preflightHost reaches and probes a host, and decides what to do with it.
// A host that cannot be reached or offers the wrong key halts the rollout:
// nothing starts after that.
func (ru *run) preflightHost(ctx context.Context, h *hostRun) {
	var hist []store.Entry
	if j := ru.cfg.Journal; j != nil {
		var err error
		if hist, err = j.History(ru.cfg.Revision, h.target.Name); err != nil {
			ru.warn(h.target.Name, "journal", "err", err)
		}
	}
	var last State
	if n := len(hist); n > 0 {
		last = State(hist[n-1].Step)
		h.inFlight = last.inFlight()
	}
	h.mu.Lock()
	h.gen = lastGeneration(hist)
	h.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 2*ru.cfg.DialTimeout)
	defer cancel()
	p, err := probe(pctx, h.conn, h.names.inspectSections(&h.ins))
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		ru.halted.Store(true)
		ru.fail(h, StateQueued, fmt.Errorf("before its turn: %w", err))
		return
	}
	h.found = p
	h.toplevel = h.ins.toplevel
	h.dec = decide(ru.cfg.Revision, p, h.ins, last)
	if h.inFlight {
		ru.noteFound(h.target.Name, h.dec.found)
	}
	switch h.dec.act {
	case actSkip:
		h.setNow(p)
		ru.set(h, StateSkipped, h.dec.detail)
		h.conn.close()
	case actFail:
		ru.halted.Store(true)
		err := errors.New(h.dec.detail)
		if h.dec.rolledBack {
			h.mu.Lock()
			h.err = &HostError{Host: h.target.Name, Step: StateActivating, RolledBack: true, Err: err}
			h.mu.Unlock()
			h.setNow(p)
			ru.set(h, StateRolledBack, h.dec.detail)
			return
		}
		ru.fail(h, StateQueued, err)
	default:
		detail := ""
		if h.found.Revision != "" {
			detail = "on " + shortRev(h.found.Revision)
		}
		if h.inFlight {
			detail = h.dec.found
		}
		ru.set(h, StateQueued, detail)
	}
}

// resumes reports whether h is a host an earlier run left activated or
// activating, which is seen through even when the rollout halts.
func resumes(h *hostRun) bool {
	return h.dec.act == actWait || h.dec.act == actHealth || h.dec.act == actBoot
}

func (ru *run) noteFound(host, found string) {
	ru.emitMu.Lock()
	defer ru.emitMu.Unlock()
	for i := range ru.res.Interrupted {
		if ru.res.Interrupted[i].Host == host {
			ru.res.Interrupted[i].Found = found
		}
	}
}

// parallel runs f for each host, ProbeParallel at a time.
func (ru *run) parallel(ctx context.Context, hosts []*hostRun, f func(*hostRun)) {
	sem := make(chan struct{}, ru.cfg.ProbeParallel)
	var wg sync.WaitGroup
	for _, h := range hosts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(h)
		}()
	}
	wg.Wait()
}

// rollBatches rolls batch after batch, in order, until a host fails. A
// batch starts once the one before has finished; within it, MaxParallel
// hosts roll at once, the next one starting as soon as one is done.
//
// Hosts are prepared (reached, probed, their source shipped) MaxParallel
// ahead of their turn, in rollout order: the first MaxParallel at the
// start, then one more each time a host starts switching (or is passed
// over). So the preparing is done while hosts switch and the bot mostly
// waits, spread out rather than all at once, and a freed slot finds the
// next host ready.
func (ru *run) rollBatches(ctx context.Context) {
	ahead := ru.cfg.MaxParallel
	var mu sync.Mutex
	prepared := 0 // ru.hosts[:prepared] are being prepared
	prepareTo := func(n int) {
		mu.Lock()
		defer mu.Unlock()
		if n = min(n, len(ru.hosts)); n > prepared {
			ru.prepare(ctx, ru.hosts[prepared:n])
			prepared = n
		}
	}
	prepareTo(ahead)
	k := 0 // the host's place in ru.hosts
	for _, batch := range ru.batches {
		sem := make(chan struct{}, ru.cfg.MaxParallel)
		var wg sync.WaitGroup
		for _, h := range batch {
			prepareTo(k + 1) // however this host's turn came
			k++
			upTo := k + ahead
			next := sync.OnceFunc(func() { prepareTo(upTo) }) // once it switches
			select {
			case <-h.ready:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			if h.getState().Final() {
				next()
				continue
			}
			if ru.halted.Load() && !resumes(h) {
				ru.set(h, StateSkipped, ru.notStarted())
				next()
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			if ru.halted.Load() && !resumes(h) {
				<-sem
				ru.set(h, StateSkipped, ru.notStarted())
				next()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ru.roll(ctx, h, next)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
	}
}

// ErrStopped is matched (errors.Is) by the error of a rollout wound down
// by Rollout.Stop.
var ErrStopped = errors.New("stopped before every host was rolled")

// notStarted is why a host was skipped once the rollout halted.
func (ru *run) notStarted() string {
	if ru.stopped.Load() {
		return "not started: the rollout was stopped"
	}
	return "not started: the rollout halted"
}

// reprobe probes, once more, the hosts whose last probe is older than
// their last step, so that the result says what each one runs.
func (ru *run) reprobe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*ru.cfg.DialTimeout)
	defer cancel()
	var stale []*hostRun
	for _, h := range ru.hosts {
		h.mu.Lock()
		fresh := h.nowFresh
		h.mu.Unlock()
		if !fresh {
			stale = append(stale, h)
		}
	}
	ru.parallel(ctx, stale, func(h *hostRun) {
		if p, err := probe(ctx, h.conn, nil); err == nil {
			h.setNow(p)
		} else {
			ru.warn(h.target.Name, "final probe", "err", err)
		}
	})
}

// finish assembles the result.
func (ru *run) finish(ctx context.Context) (*Result, error) {
	res := ru.res
	res.Finished = time.Now()
	var first error
	for _, h := range ru.hosts {
		h.mu.Lock()
		hr := HostResult{
			Name:       h.target.Name,
			Batch:      h.batch,
			State:      h.state,
			Detail:     h.detail,
			From:       h.found.Revision,
			Now:        h.now,
			Reachable:  h.nowFresh,
			Reconnects: h.conn.reconnects(),
			Timings:    h.conn.getTimings(),
		}
		if first == nil && h.err != nil {
			first = h.err
		}
		h.mu.Unlock()
		if k := h.conn.hostKey(); k != nil {
			hr.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
			hr.Now.HostKey = k
		}
		res.Hosts = append(res.Hosts, hr)
	}
	res.Halted, res.Stopped = ru.halted.Load(), ru.stopped.Load()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("rollout %s: stopped: %w (hosts in flight roll themselves back unless a new run resumes them)", shortRev(ru.cfg.Revision), err)
	}
	if first != nil {
		return res, first
	}
	if ru.stopped.Load() {
		return res, fmt.Errorf("rollout %s: %w: the hosts in flight were seen through; run it again to roll the rest", shortRev(ru.cfg.Revision), ErrStopped)
	}
	if res.Halted {
		return res, fmt.Errorf("rollout %s: halted", shortRev(ru.cfg.Revision))
	}
	return res, nil
}
