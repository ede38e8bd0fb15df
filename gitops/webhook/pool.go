package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/store"
)

// Defaults of a Pool.
const (
	DefaultWorkers = 4
	DefaultLease   = time.Minute
	DefaultPoll    = 5 * time.Second
)

// MaxAttempts is Pool.MaxAttempts when zero: how many times a job may be
// claimed. A job claimed again after that many claims (each ended by its
// process dying, not by the job returning) is dead-lettered.
const MaxAttempts = 3

// stopGrace bounds how long Stop waits for jobs to return once their
// context is cancelled.
const stopGrace = 5 * time.Second

// Why a job's context was cancelled.
var (
	errSuperseded = errors.New("webhook: superseded by a newer delivery")
	errLost       = errors.New("webhook: the job's claim was lost")
	errShutdown   = errors.New("webhook: nestbot is shutting down")
)

// Pool is a set of workers that claim jobs from a queue and run them.
//
// A worker claims a job with a lease it extends every Lease/3 while the job
// runs, calls Run, and records the job as done: ok when Run returned nil,
// failed when it returned an error (a redelivery then runs it again).
// Jobs of one Key never run at the same time: the queue does not hand out
// a Key that is claimed.
//
// Notify, called with each job intake stored, wakes a worker at once (the
// workers also poll, every Poll, for jobs other replicas stored), and
// cancels a running job the new one supersedes: its context is cancelled
// and, whatever Run returns, it is recorded as done ok — superseded, not
// failed. A claimed job already superseded by one Notify saw is not run.
//
// When a claim is lost (its lease ran out and another worker took the
// job) or the pool stops before a job returns, the job is not recorded as
// done: another worker, or nestbot after a restart, runs it again.
type Pool struct {
	// Queue is where jobs come from.
	Queue store.Queue
	// Workers is how many jobs run at once; 0 means DefaultWorkers.
	Workers int
	// Run runs one job. It should return soon after ctx is cancelled.
	Run func(ctx context.Context, j store.Job) error
	// Supersedes tells whether newJob, just accepted, makes the running
	// job moot; nil means SupersedesPlan.
	Supersedes func(newJob, running store.Job) bool
	// Lease is a claim's lease; 0 means DefaultLease.
	Lease time.Duration
	// Poll is how often an idle worker looks for jobs it was not told
	// about; 0 means DefaultPoll.
	Poll time.Duration
	// Owner names this process in claims; "" means host name and pid.
	Owner string
	// MaxAttempts bounds the claims of a job; 0 means MaxAttempts. A job
	// claimed once more is not run: it is dead-lettered — DeadLetter is
	// called and it is recorded as failed, so only a redelivery runs it
	// again. A job that returns, with or without an error, is recorded at
	// once; only a job whose process died (it took the process down, say)
	// is claimed again.
	MaxAttempts int
	// DeadLetter, if set, reports a dead-lettered job (on its pull
	// request); it is bounded by a minute.
	DeadLetter func(ctx context.Context, j store.Job) error
	// Metrics, if set, records each job's duration and result.
	Metrics *Metrics
	// Logger receives a record per failed, superseded or lost job, with
	// its delivery id; nil discards.
	Logger *slog.Logger

	mu       sync.Mutex
	started  bool
	running  map[string]*runningJob // by Key
	latest   map[string]store.Job   // by Key: the newest job Notify saw
	wake     chan struct{}
	claims   context.Context // ends when workers must stop claiming
	stop     context.CancelFunc
	jobs     context.Context // parent of the jobs' contexts
	kill     context.CancelCauseFunc
	workers  sync.WaitGroup
	live     atomic.Int32 // workers that have not returned
	stopping atomic.Bool
}

type runningJob struct {
	job    store.Job
	cancel context.CancelCauseFunc
}

// Start starts the workers. A Pool starts once.
func (p *Pool) Start() error {
	if p.Queue == nil || p.Run == nil {
		return errors.New("webhook: a pool needs a Queue and a Run function")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("webhook: the pool was started already")
	}
	p.started = true
	n := p.Workers
	if n <= 0 {
		n = DefaultWorkers
	}
	if p.Owner == "" {
		host, _ := os.Hostname()
		p.Owner = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	p.running = map[string]*runningJob{}
	p.latest = map[string]store.Job{}
	p.wake = make(chan struct{}, n)
	p.claims, p.stop = context.WithCancel(context.Background())
	p.jobs, p.kill = context.WithCancelCause(context.Background())
	for i := range n {
		p.live.Add(1)
		p.workers.Go(func() {
			defer p.live.Add(-1)
			p.work(fmt.Sprintf("%s/w%d", p.Owner, i))
		})
	}
	return nil
}

// Running tells whether the pool was started, is not stopping, and all its
// workers are alive (for /readyz).
func (p *Pool) Running() bool {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	n := p.Workers
	if n <= 0 {
		n = DefaultWorkers
	}
	return started && !p.stopping.Load() && int(p.live.Load()) == n
}

// Notify tells the pool that intake stored j: a worker wakes, and a
// running job that j supersedes is cancelled.
func (p *Pool) Notify(j store.Job) {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return
	}
	p.latest[j.Key] = j
	if r := p.running[j.Key]; r != nil && r.job.ID != j.ID && p.supersedes(j, r.job) {
		p.jobLog(r.job).Info("webhook: job superseded; cancelling it", "by", j.ID)
		r.cancel(errSuperseded)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // every worker has a wake-up waiting already
	}
}

// Stop stops claiming, waits until ctx ends for running jobs to return,
// then cancels those still running (they are not recorded as done, so they
// run again after a restart) and waits a little longer for them. It
// returns an error naming any job still running then.
func (p *Pool) Stop(ctx context.Context) error {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started {
		return nil
	}
	p.stopping.Store(true)
	p.stop()
	done := make(chan struct{})
	go func() { p.workers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.kill(errShutdown)
	select {
	case <-done:
		return nil
	case <-time.After(stopGrace):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for _, r := range p.running {
		ids = append(ids, r.job.ID)
	}
	sort.Strings(ids)
	return fmt.Errorf("webhook: jobs %v still running %s after their context was cancelled", ids, stopGrace)
}

func (p *Pool) work(owner string) {
	poll := p.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	lease := p.lease()
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for p.claims.Err() == nil {
		c, err := p.Queue.Claim(p.claims, owner, lease)
		if err != nil && p.claims.Err() == nil {
			logs.Or(p.Logger).Error("webhook: claim a job", "worker", owner, "err", err)
		}
		if c != nil {
			p.runClaim(c)
			continue
		}
		timer.Reset(poll)
		select {
		case <-p.claims.Done():
		case <-p.wake:
		case <-timer.C:
		}
	}
}

func (p *Pool) lease() time.Duration {
	if p.Lease > 0 {
		return p.Lease
	}
	return DefaultLease
}

// runClaim runs c's job and records how it ended.
func (p *Pool) runClaim(c *store.Claim) {
	j := c.Job
	if max := cmp.Or(p.MaxAttempts, MaxAttempts); j.Attempt > max {
		p.deadLetter(c, max)
		return
	}
	ctx, cancel := context.WithCancelCause(p.jobs)
	defer cancel(nil)
	r := &runningJob{job: j, cancel: cancel}

	p.mu.Lock()
	newer, ok := p.latest[j.Key]
	skip := ok && newer.ID != j.ID && newer.Received.After(j.Received) && p.supersedes(newer, j)
	if !skip {
		p.running[j.Key] = r
	}
	p.mu.Unlock()

	start := time.Now()
	var err error
	if skip {
		cancel(errSuperseded)
		p.jobLog(j).Info("webhook: job superseded before it ran", "by", newer.ID)
	} else {
		keeping := p.keepLease(ctx, c, cancel)
		err = p.call(ctx, j)
		cancel(nil) // the lease keeper stops; a cause set earlier stays
		<-keeping
	}
	took := time.Since(start)

	p.mu.Lock()
	if p.running[j.Key] == r {
		delete(p.running, j.Key)
	}
	if p.latest[j.Key].ID == j.ID {
		delete(p.latest, j.Key)
	}
	p.mu.Unlock()

	result := store.ResultOK
	label := "ok"
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errSuperseded):
		label = "superseded"
	case errors.Is(cause, errLost), errors.Is(cause, errShutdown):
		p.Metrics.Job(j.Event, "abandoned", took)
		p.jobLog(j).Warn("webhook: job left undone", "cause", cause)
		return
	case err != nil:
		result, label = store.ResultFailed, "failed"
		p.jobLog(j).Error("webhook: job failed", "attempt", j.Attempt, "err", err)
	}
	p.Metrics.Job(j.Event, label, took)
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	if err := p.Queue.Done(dctx, c, result); err != nil {
		p.jobLog(j).Error("webhook: record the job's result", "result", result, "err", err)
	}
}

// deadLetter records c's job as failed without running it, after it was
// claimed max times, and reports it.
func (p *Pool) deadLetter(c *store.Claim, max int) {
	j := c.Job
	p.jobLog(j).Error("webhook: job dead-lettered: each claim ended without the job returning (its process died); it is not run again unless redelivered", "claims", max)
	p.Metrics.Job(j.Event, "dead_lettered", 0)
	if p.DeadLetter != nil {
		rctx, cancel := context.WithTimeout(p.jobs, time.Minute)
		err := p.DeadLetter(rctx, j)
		cancel()
		if err != nil {
			p.jobLog(j).Error("webhook: report the dead letter", "err", err)
		}
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	if err := p.Queue.Done(dctx, c, store.ResultFailed); err != nil {
		p.jobLog(j).Error("webhook: record the dead letter", "err", err)
	}
}

// keepLease extends c every Lease/3 until ctx ends; when the claim is
// lost, it cancels the job with errLost. The returned channel closes when
// it has stopped.
func (p *Pool) keepLease(ctx context.Context, c *store.Claim, cancel context.CancelCauseFunc) <-chan struct{} {
	done := make(chan struct{})
	lease := p.lease()
	go func() {
		defer close(done)
		tick := time.NewTicker(lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			ectx, ecancel := context.WithTimeout(ctx, lease/3)
			err := p.Queue.Extend(ectx, c, lease)
			ecancel()
			switch {
			case errors.Is(err, store.ErrLost):
				cancel(errLost)
				return
			case err != nil && ctx.Err() == nil:
				p.jobLog(c.Job).Warn("webhook: extend the job's claim", "err", err)
			}
		}
	}()
	return done
}

// call runs Run, turning a panic into an error.
func (p *Pool) call(ctx context.Context, j store.Job) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
			p.jobLog(j).Error("webhook: job panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	return p.Run(ctx, j)
}

func (p *Pool) supersedes(newJob, running store.Job) bool {
	if p.Supersedes != nil {
		return p.Supersedes(newJob, running)
	}
	return SupersedesPlan(newJob, running)
}

// jobLog is the pool's logger with j's delivery id, event and key.
func (p *Pool) jobLog(j store.Job) *slog.Logger {
	return logs.Or(p.Logger).With("delivery", j.ID, "event", j.Event, "key", j.Key)
}
