package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// errStepTimeout marks a step that ran out of its own time (not the run's).
var errStepTimeout = errors.New("timed out")

// roll takes one host through its steps. A failure rolls it back and halts
// the rollout; a cancelled ctx leaves it as it is (the journal says where).
// started, if set, is called once the switch has started (or will not).
func (ru *run) roll(ctx context.Context, h *hostRun, started func()) {
	if started == nil {
		started = func() {}
	}
	defer started()
	if h.dec.act == actRoll {
		if err := ru.ship(ctx, h); err != nil {
			ru.failed(ctx, h, StateShipping, err, false)
			return
		}
	}
	// From arming on, everything up to the confirmation must be done
	// before the dead-man timer fires. (A resumed host's timer was armed
	// by the earlier run: at worst it fires first, and confirm notices.)
	dctx, cancel := context.WithDeadlineCause(ctx, time.Now().Add(ru.cfg.ConfirmWithin), errStepTimeout)
	defer cancel()
	step := StateSwitching
	switch h.dec.act {
	case actRoll:
		var err error
		step, err = ru.armAndSwitch(dctx, h)
		started()
		if err != nil {
			if step == StateArmed && ctx.Err() == nil {
				// Nothing switched: take back the timer, if it was armed.
				tctx, cancel := context.WithTimeout(ctx, 2*ru.cfg.DialTimeout)
				h.conn.retry(tctx, "systemctl stop "+ru.names.rollbackTimer()+" >/dev/null 2>&1; true", nil)
				cancel()
			}
			ru.failed(ctx, h, step, ru.explain(ctx, dctx, err), step == StateSwitching)
			return
		}
	case actWait:
		ru.set(h, StateSwitching, "resumed")
	case actHealth:
		step = StateHealth
	}
	if step == StateSwitching {
		if err := ru.waitSwitch(dctx, h); err != nil {
			ru.failed(ctx, h, step, ru.explain(ctx, dctx, err), true)
			return
		}
	}
	if err := ru.health(dctx, h); err != nil {
		ru.failed(ctx, h, StateHealth, ru.explain(ctx, dctx, err), true)
		return
	}
	if err := ru.confirm(dctx, h); err != nil {
		ru.failed(ctx, h, StateHealth, ru.explain(ctx, dctx, err), true)
		return
	}
	// Done, and what it runs is known: its connection has nothing more to
	// carry (no keepalives for the rest of the run).
	h.conn.close()
}

// explain rewords a step's error when the step ran out of confirm_within.
func (ru *run) explain(ctx, dctx context.Context, err error) error {
	if ctx.Err() == nil && errors.Is(context.Cause(dctx), errStepTimeout) {
		return fmt.Errorf("not done within confirm_within (%v), so its dead-man timer rolls it back: %w", ru.cfg.ConfirmWithin, err)
	}
	return err
}

// startShip starts shipping h's source once, if it is to be rolled; ship
// waits for it.
func (ru *run) startShip(ctx context.Context, h *hostRun) {
	h.shipOnce.Do(func() {
		ru.bg.Add(1)
		go func() {
			defer ru.bg.Done()
			defer close(h.shipDone)
			select {
			case <-h.ready:
			case <-ctx.Done():
				h.shipErr = ctx.Err()
				return
			}
			if h.getState().Final() || h.dec.act != actRoll || ru.halted.Load() {
				return
			}
			select {
			case ru.shipSem <- struct{}{}:
			case <-ctx.Done():
				h.shipErr = ctx.Err()
				return
			}
			defer func() { <-ru.shipSem }()
			h.shipErr = ru.doShip(ctx, h)
		}()
	})
}

func (ru *run) ship(ctx context.Context, h *hostRun) error {
	ru.startShip(ctx, h)
	select {
	case <-h.shipDone:
		return h.shipErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errShipAbandoned = errors.New("the session ended")

// shipTimeout bounds shipping the source to one host.
const shipTimeout = 5 * time.Minute

// doShip sends the source tree as a tar stream into the source directory,
// unless an earlier attempt left it there.
func (ru *run) doShip(ctx context.Context, h *hostRun) error {
	if h.ins.shipped {
		ru.set(h, StateShipping, "already on the host")
		return nil
	}
	ru.set(h, StateShipping, "")
	ctx, cancel := context.WithTimeout(ctx, shipTimeout)
	defer cancel()
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Ship += time.Since(start) }) }()
	stdin := func() (io.Reader, func()) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTar(pw, ru.cfg.Source, ru.cfg.FlakeDir, ru.cfg.Revision)) }()
		return pr, func() { pr.CloseWithError(errShipAbandoned) }
	}
	r, err := h.conn.retry(ctx, ru.names.shipScript(), stdin)
	if err != nil {
		return fmt.Errorf("ship the source: %w", err)
	}
	if r.Status != 0 {
		return fmt.Errorf("ship the source: unpacking it on the host failed (exit %d): %s", r.Status, r.brief())
	}
	return nil
}

// armAndSwitch records the generation to roll back to, arms the dead-man
// rollback to it, and starts the switch, in one session. It returns the
// step it got to.
func (ru *run) armAndSwitch(ctx context.Context, h *hostRun) (State, error) {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Arm += time.Since(start) }) }()
	gen := h.found.Generation
	h.mu.Lock()
	h.gen = gen
	h.mu.Unlock()
	// The journal knows the generation before anything is armed.
	ru.record(h, StateArmed, fmt.Sprintf("arming: rolls back to generation %d", gen))
	script := func(again bool) string {
		return ru.names.armAndSwitchScript(h.target.Name, gen, ru.cfg.ConfirmWithin, h.ins.leftovers(), again)
	}
	r, err := h.conn.run(ctx, script(false), nil)
	if err != nil && retryable(err) && ctx.Err() == nil {
		r, err = h.conn.retry(ctx, script(true), nil)
	}
	if err != nil {
		// How far it got is not known: treat it as switched.
		return StateSwitching, fmt.Errorf("arm the rollback and start the switch: %w", err)
	}
	if strings.Contains(r.Stdout, "armed") {
		ru.set(h, StateArmed, fmt.Sprintf("rolls back to generation %d unless confirmed within %v", gen, ru.cfg.ConfirmWithin))
	}
	switch {
	case r.Status == exitArmFailed:
		return StateArmed, fmt.Errorf("arm the rollback (exit %d): %s", r.Status, r.brief())
	case r.Status != 0:
		return StateSwitching, fmt.Errorf("start the switch (exit %d): %s", r.Status, r.brief())
	case !strings.Contains(r.Stdout, "started"):
		return StateSwitching, fmt.Errorf("start the switch: unexpected output %q", r.Stdout)
	}
	ru.set(h, StateSwitching, "")
	return StateSwitching, nil
}

// waitSwitch waits until the switch unit has ended, checks that it
// succeeded, and keeps the probe taken right after.
func (ru *run) waitSwitch(ctx context.Context, h *hostRun) error {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Switch += time.Since(start) }) }()
	u, p, err := ru.waitUnit(ctx, h, ru.names.switchSvc)
	if err != nil {
		return fmt.Errorf("wait for the switch: %w", err)
	}
	if !u.succeeded() {
		return fmt.Errorf("nixos-rebuild switch failed: %s (journalctl -u %s on the host)", u, ru.names.switchSvc)
	}
	h.setNow(p)
	return nil
}

// waitUnit waits until a unit is no longer running, reconnecting as
// needed, and probes the host once it is; ctx bounds it.
func (ru *run) waitUnit(ctx context.Context, h *hostRun, unit string) (unitState, Probed, error) {
	var u unitState
	script, secs := waitScript(unit, &u)
	for {
		u = unitState{}
		r, err := h.conn.retry(ctx, script, nil)
		if err != nil {
			return u, Probed{}, err
		}
		p, perr := parseProbeOutput(r, secs)
		if r.Status != 0 || u.Active == "" {
			return u, p, fmt.Errorf("systemctl show %s (exit %d): %s", unit, r.Status, r.brief())
		}
		if !u.running() {
			return u, p, perr
		}
		// Its main process is gone but the unit is not done yet.
		select {
		case <-ctx.Done():
			return u, p, fmt.Errorf("%s still running: %w", unit, ctx.Err())
		case <-time.After(ru.cfg.PollInterval):
		}
	}
}

// health checks that the host runs the revision, then runs the health
// commands.
func (ru *run) health(ctx context.Context, h *hostRun) error {
	ru.set(h, StateHealth, "")
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Health += time.Since(start) }) }()
	h.mu.Lock()
	p, fresh := h.now, h.nowFresh
	h.mu.Unlock()
	if !fresh {
		var err error
		if p, err = probe(ctx, h.conn, nil); err != nil {
			return err
		}
		h.setNow(p)
	}
	if p.Revision != ru.cfg.Revision {
		return fmt.Errorf("after the switch the host runs revision %q, not %s: does the flake set system.configurationRevision from %s?",
			p.Revision, shortRev(ru.cfg.Revision), revisionFile)
	}
	for _, cmd := range ru.cfg.Health {
		r, err := h.conn.retry(ctx, cmd, nil)
		if err != nil {
			return fmt.Errorf("health check %q: %w", cmd, err)
		}
		if r.Status != 0 {
			return fmt.Errorf("health check %q failed (exit %d): %s", cmd, r.Status, r.brief())
		}
	}
	return nil
}

// confirm disarms the dead-man rollback.
func (ru *run) confirm(ctx context.Context, h *hostRun) error {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Confirm += time.Since(start) }) }()
	r, err := h.conn.retry(ctx, ru.names.confirmScript(), nil)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	switch {
	case r.Status == exitFired:
		return errors.New("confirm: too late: the dead-man timer already fired")
	case r.Status != 0:
		return fmt.Errorf("confirm (exit %d): %s", r.Status, r.brief())
	}
	// What the host runs was probed after the switch; disarming the
	// timer changes none of it.
	ru.set(h, StateConfirmed, "")
	return nil
}

// failed records a host's failure, halts the rollout and, if the host may
// have switched, rolls it back. A cancelled run leaves the host as it is.
func (ru *run) failed(ctx context.Context, h *hostRun, step State, err error, rollback bool) {
	if ctx.Err() != nil {
		return
	}
	ru.halted.Store(true)
	he := &HostError{Host: h.target.Name, Step: step, Err: err}
	h.mu.Lock()
	h.err = he
	gen := h.gen
	h.mu.Unlock()
	ru.set(h, StateFailed, err.Error())
	if !rollback {
		return
	}
	if gen == 0 {
		ru.set(h, StateFailed, err.Error()+"; the generation to roll back to is not known: its dead-man timer rolls it back")
		return
	}
	rctx, cancel := context.WithTimeout(ctx, ru.cfg.RollbackTimeout)
	defer cancel()
	if rerr := ru.rollbackNow(rctx, h, gen); rerr != nil {
		if ctx.Err() != nil {
			return
		}
		ru.set(h, StateFailed, fmt.Sprintf("%v; rolling back to generation %d failed too: %v", err, gen, rerr))
		return
	}
	h.mu.Lock()
	he.RolledBack = true
	h.mu.Unlock()
	ru.set(h, StateRolledBack, fmt.Sprintf("back on generation %d after: %v", gen, err))
	ru.afterRollback(rctx, h)
}

// fail records a failure before anything ran on the host.
func (ru *run) fail(h *hostRun, step State, err error) {
	h.mu.Lock()
	h.err = &HostError{Host: h.target.Name, Step: step, Err: err}
	h.mu.Unlock()
	ru.set(h, StateFailed, err.Error())
}

// rollbackNow switches the host back to generation gen at once, as the
// dead-man timer would, and waits for it.
func (ru *run) rollbackNow(ctx context.Context, h *hostRun, gen int) error {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Rollback += time.Since(start) }) }()
	r, err := h.conn.retry(ctx, ru.names.rollbackNowScript(gen), nil)
	if err != nil {
		return err
	}
	if r.Status != 0 {
		return fmt.Errorf("start the rollback (exit %d): %s", r.Status, r.brief())
	}
	u, p, err := ru.waitUnit(ctx, h, ru.names.rollbackSvc())
	if err != nil {
		return err
	}
	h.setNow(p)
	if !u.succeeded() {
		return fmt.Errorf("%s: %s (journalctl -u %s on the host)", ru.names.rollbackSvc(), u, ru.names.rollbackSvc())
	}
	return nil
}

// afterRollback clears the failed switch unit, so that it leaves the
// system not degraded.
func (ru *run) afterRollback(ctx context.Context, h *hostRun) {
	if _, err := h.conn.retry(ctx, ru.names.afterRollbackScript(), nil); err != nil {
		ru.logf("rollout: %s: clearing the failed switch unit: %v", h.target.Name, err)
	}
}
