package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// errStepTimeout marks a step that ran out of its own time (not the run's).
var errStepTimeout = errors.New("timed out")

// roll takes one host through its steps. A failure rolls it back and halts
// the rollout; a cancelled ctx leaves it as it is (the journal says where).
func (ru *run) roll(ctx context.Context, h *hostRun) {
	var err error
	step := StateShipping
	armed := time.Now()
	switch h.dec.act {
	case actRoll:
		if err = ru.ship(ctx, h); err != nil {
			break
		}
		step = StateArmed
		armed = time.Now()
		if err = ru.arm(ctx, h); err != nil {
			break
		}
		step = StateSwitching
		err = ru.startSwitch(ctx, h)
	case actWait:
		step = StateSwitching
		ru.set(h, StateSwitching, "resumed")
	case actHealth:
		step = StateHealth
	}
	if err != nil {
		if step == StateArmed && ctx.Err() == nil {
			// Nothing switched: take back the timer, if it was armed.
			h.conn.retry(ctx, "systemctl stop "+ru.names.rollbackTimer()+" >/dev/null 2>&1; true", nil)
		}
		ru.failed(ctx, h, step, err, step == StateSwitching)
		return
	}

	// The switch, the health checks and the confirmation must be done
	// before the dead-man timer fires.
	deadline := armed.Add(ru.cfg.ConfirmWithin)
	if h.dec.act != actRoll {
		deadline = time.Now().Add(ru.cfg.ConfirmWithin) // at worst the timer fires first; confirm notices
	}
	dctx, cancel := context.WithDeadlineCause(ctx, deadline, errStepTimeout)
	defer cancel()
	if step == StateSwitching {
		if err = ru.waitSwitch(dctx, h); err != nil {
			ru.failed(ctx, h, step, ru.explain(ctx, dctx, err), true)
			return
		}
		step = StateHealth
	}
	if err = ru.health(dctx, h); err != nil {
		ru.failed(ctx, h, step, ru.explain(ctx, dctx, err), true)
		return
	}
	if err = ru.confirm(dctx, h); err != nil {
		ru.failed(ctx, h, StateHealth, ru.explain(ctx, dctx, err), true)
		return
	}
}

// explain rewords a step's error when the step ran out of confirm_within.
func (ru *run) explain(ctx, dctx context.Context, err error) error {
	if ctx.Err() == nil && errors.Is(context.Cause(dctx), errStepTimeout) {
		return fmt.Errorf("not done within confirm_within (%v), so its dead-man timer rolls it back: %w", ru.cfg.ConfirmWithin, err)
	}
	return err
}

// shipAhead starts shipping the sources of a batch's hosts that will roll.
func (ru *run) shipAhead(ctx context.Context, batch []*hostRun) {
	for _, h := range batch {
		if !h.getState().Final() && h.dec.act == actRoll && !ru.halted.Load() {
			ru.startShip(ctx, h)
		}
	}
}

// startShip starts shipping h's source once; ship waits for it.
func (ru *run) startShip(ctx context.Context, h *hostRun) {
	h.shipOnce.Do(func() {
		go func() {
			defer close(h.shipDone)
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

// doShip sends the source tree as a tar stream into the source directory,
// unless an earlier attempt left it there.
func (ru *run) doShip(ctx context.Context, h *hostRun) error {
	if h.ins.shipped {
		ru.set(h, StateShipping, "already on the host")
		return nil
	}
	ru.set(h, StateShipping, "")
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

// arm records the current generation and arms the dead-man rollback to it.
func (ru *run) arm(ctx context.Context, h *hostRun) error {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Arm += time.Since(start) }) }()
	r, err := h.conn.retry(ctx, ru.names.armScript(ru.cfg.ConfirmWithin), nil)
	if err != nil {
		return fmt.Errorf("arm the rollback: %w", err)
	}
	if r.Status != 0 {
		return fmt.Errorf("arm the rollback (exit %d): %s", r.Status, r.brief())
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(r.Stdout), "generation=")
	gen, err := strconv.Atoi(v)
	if !ok || err != nil || gen <= 0 {
		return fmt.Errorf("arm the rollback: unexpected output %q", r.Stdout)
	}
	h.mu.Lock()
	h.gen = gen
	h.mu.Unlock()
	ru.set(h, StateArmed, fmt.Sprintf("rolls back to generation %d unless confirmed within %v", gen, ru.cfg.ConfirmWithin))
	return nil
}

// startSwitch starts nixos-rebuild switch as a detached unit.
func (ru *run) startSwitch(ctx context.Context, h *hostRun) error {
	ru.set(h, StateSwitching, "")
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Switch += time.Since(start) }) }()
	r, err := h.conn.retry(ctx, ru.names.switchScript(h.target.Name), nil)
	if err != nil {
		return fmt.Errorf("start the switch: %w", err)
	}
	if r.Status != 0 {
		return fmt.Errorf("start the switch (exit %d): %s", r.Status, r.brief())
	}
	return nil
}

// waitSwitch polls the switch unit until it has ended, and checks that it
// succeeded.
func (ru *run) waitSwitch(ctx context.Context, h *hostRun) error {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Switch += time.Since(start) }) }()
	u, err := ru.waitUnit(ctx, h, ru.names.switchSvc)
	if err != nil {
		return fmt.Errorf("wait for the switch: %w", err)
	}
	if !u.succeeded() {
		return fmt.Errorf("nixos-rebuild switch failed: %s (journalctl -u %s on the host)", u, ru.names.switchSvc)
	}
	return nil
}

// waitUnit polls a unit until it is no longer running, reconnecting as
// needed; ctx bounds it.
func (ru *run) waitUnit(ctx context.Context, h *hostRun, unit string) (unitState, error) {
	for {
		r, err := h.conn.retry(ctx, showUnit(unit), nil)
		if err != nil {
			return unitState{}, err
		}
		u := parseUnit(strings.Split(r.Stdout, "\n"))
		if r.Status != 0 || u.Active == "" {
			return u, fmt.Errorf("systemctl show %s (exit %d): %s", unit, r.Status, r.brief())
		}
		if !u.running() {
			return u, nil
		}
		select {
		case <-ctx.Done():
			return u, fmt.Errorf("%s still running: %w", unit, ctx.Err())
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
	p, err := probe(ctx, h.conn, nil)
	if err != nil {
		return err
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

// confirm disarms the dead-man rollback, then reads what the host runs.
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
	ru.set(h, StateConfirmed, "")
	if p, err := probe(ctx, h.conn, nil); err == nil {
		h.setNow(p)
	}
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
	u, err := ru.waitUnit(ctx, h, ru.names.rollbackSvc())
	if err != nil {
		return err
	}
	if !u.succeeded() {
		return fmt.Errorf("%s: %s (journalctl -u %s on the host)", ru.names.rollbackSvc(), u, ru.names.rollbackSvc())
	}
	return nil
}

// afterRollback clears the failed switch unit (so that it leaves the system
// not degraded) and reads what the host runs now.
func (ru *run) afterRollback(ctx context.Context, h *hostRun) {
	if _, err := h.conn.retry(ctx, ru.names.afterRollbackScript(), nil); err != nil {
		ru.logf("rollout: %s: clearing the failed switch unit: %v", h.target.Name, err)
	}
	if p, err := probe(ctx, h.conn, nil); err == nil {
		h.setNow(p)
	}
}
