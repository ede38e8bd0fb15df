package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// errStepTimeout marks a step that ran out of its own time (not the run's).
var errStepTimeout = errors.New("timed out")

// bootTimeout bounds making a confirmed system the boot default.
const bootTimeout = 10 * time.Minute

// roll takes one host through its steps. A failure rolls it back (if
// anything changed on it) and halts the rollout; a cancelled ctx leaves it
// as it is (the journal says where). started, if set, is called once the
// activation has started (or will not).
func (ru *run) roll(ctx context.Context, h *hostRun, started func()) {
	if started == nil {
		started = func() {}
	}
	defer started()
	act := h.dec.act
	if act == actRoll {
		if ru.cfg.BuildOn != BuildLocal {
			if err := ru.ship(ctx, h); err != nil {
				ru.failed(ctx, h, StateShipping, err, false)
				return
			}
		}
		if err := ru.build(ctx, h); err != nil {
			ru.failed(ctx, h, StateBuilding, err, false)
			return
		}
		if h.toplevel == h.found.System {
			// Nothing to activate: it runs this system already (a change
			// that builds the same toplevel, or a hand-run switch).
			act = actBoot
		}
	}
	// From arming on, everything up to the confirmation must be done
	// before the dead-man timer fires. (A resumed host's timer was armed
	// by the earlier run: at worst it fires first, and confirm notices.)
	dctx, cancel := context.WithDeadlineCause(ctx, time.Now().Add(ru.cfg.ConfirmWithin), errStepTimeout)
	defer cancel()
	step := StateActivating
	switch act {
	case actRoll:
		var err error
		step, err = ru.arm(dctx, h)
		started()
		if err != nil {
			if step == StateArmed && ctx.Err() == nil {
				// Nothing activated: take back the timer, if it was armed.
				tctx, cancel := context.WithTimeout(ctx, 2*ru.cfg.DialTimeout)
				h.conn.retry(tctx, h.names.root.ctl+" stop "+h.names.timer()+" >/dev/null 2>&1; true", nil)
				cancel()
			}
			ru.failed(ctx, h, step, ru.explain(ctx, dctx, err), step == StateActivating)
			return
		}
	case actWait:
		ru.set(h, StateActivating, "resumed")
	case actHealth:
		step = StateHealth
	case actBoot:
		step = StateBooting
	}
	started()
	if step == StateActivating {
		if err := ru.waitActivation(dctx, h); err != nil {
			ru.failed(ctx, h, step, ru.explain(ctx, dctx, err), true)
			return
		}
		step = StateHealth
	}
	if step == StateHealth {
		if err := ru.health(dctx, h); err != nil {
			ru.failed(ctx, h, StateHealth, ru.explain(ctx, dctx, err), true)
			return
		}
		if err := ru.confirm(dctx, h); err != nil {
			ru.failed(ctx, h, StateHealth, ru.explain(ctx, dctx, err), true)
			return
		}
	}
	bctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	if err := ru.bootDefault(bctx, h); err != nil {
		ru.failed(ctx, h, StateBooting, err, true)
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

// startShip starts shipping h's commit once, if it is to be rolled and
// built on the host; ship waits for it.
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
			if h.getState().Final() || h.dec.act != actRoll || ru.halted.Load() || ru.cfg.BuildOn == BuildLocal {
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

// shipTimeout bounds shipping the commit to one host.
const shipTimeout = 5 * time.Minute

// doShip sends the commit as a git pack into the host's repository,
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
		go func() { pw.CloseWithError(ru.cfg.Source.WritePack(pw, ru.cfg.Revision)) }()
		return pr, func() { pr.CloseWithError(errShipAbandoned) }
	}
	r, err := h.conn.retry(ctx, h.names.shipScript(), stdin)
	if err != nil {
		return fmt.Errorf("ship the commit: %w", err)
	}
	if r.Status != 0 {
		return fmt.Errorf("ship the commit: storing it in %s on the host failed (exit %d): %s (is git installed there?)", srcRepo, r.Status, r.brief())
	}
	return nil
}

// build builds the host's toplevel, detached and bounded by build_timeout
// (on the host, or where nestbot runs and then copied there), and keeps
// its store path. Nothing on the host changes but its store.
func (ru *run) build(ctx context.Context, h *hostRun) error {
	ru.set(h, StateBuilding, "")
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Build += time.Since(start) }) }()
	ctx, cancel := context.WithTimeout(ctx, ru.cfg.BuildTimeout+time.Minute)
	defer cancel()
	store := ""
	if ru.cfg.BuildOn == BuildLocal {
		var err error
		if store, err = ru.local.build(ctx, h.target.attr()); err != nil {
			return err
		}
		if err := ru.local.copyTo(ctx, h, store); err != nil {
			return err
		}
	}
	r, err := h.conn.retry(ctx, h.names.buildScript(h.target.attr(), store, ru.cfg.BuildTimeout), nil)
	if err != nil {
		return fmt.Errorf("start the build: %w", err)
	}
	if r.Status != 0 {
		return fmt.Errorf("start the build (exit %d): %s", r.Status, r.brief())
	}
	w, err := ru.waitUnit(ctx, h, stepBuild)
	if err != nil {
		return fmt.Errorf("wait for the build: %w", err)
	}
	if w.result != resultOK || w.toplevel == "" {
		return fmt.Errorf("the build of nixosConfigurations.%s failed (%s)%s", h.target.attr(), describeResult(w.result), w.logLines())
	}
	h.toplevel = w.toplevel
	ru.set(h, StateBuilding, "built "+w.toplevel)
	return nil
}

// describeResult words a unit's recorded result.
func describeResult(res string) string {
	f := strings.Fields(res)
	switch {
	case len(f) == 0:
		return "it recorded no result"
	case f[0] == "timeout":
		return "it ran out of its time and was stopped"
	case len(f) == 3 && f[1] == "exited":
		return "exit status " + f[2]
	case len(f) == 3 && f[1] == "killed":
		return "killed by signal " + f[2]
	}
	return res
}

// arm records what the host runs, arms the dead-man rollback to it, and
// starts the trial activation, in one session. It returns the step it got
// to.
func (ru *run) arm(ctx context.Context, h *hostRun) (State, error) {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Arm += time.Since(start) }) }()
	gen := h.found.Generation
	h.mu.Lock()
	h.gen = gen
	h.mu.Unlock()
	// The journal knows the host is in flight before anything is armed.
	ru.record(h, StateArmed, fmt.Sprintf("arming: rolls back to %s", h.found.System))
	r, err := h.conn.run(ctx, h.names.armScript(ru.cfg.ConfirmWithin, false), nil)
	if err != nil && retryable(err) && ctx.Err() == nil {
		r, err = h.conn.retry(ctx, h.names.armScript(ru.cfg.ConfirmWithin, true), nil)
	}
	if err != nil {
		// How far it got is not known: treat it as activated.
		return StateActivating, fmt.Errorf("arm the rollback and start the activation: %w", err)
	}
	if strings.Contains(r.Stdout, "armed") {
		ru.set(h, StateArmed, fmt.Sprintf("rolls back to %s unless confirmed within %v", h.found.System, ru.cfg.ConfirmWithin))
	}
	switch {
	case r.Status == exitArmFailed:
		return StateArmed, fmt.Errorf("arm the rollback (exit %d): %s", r.Status, r.brief())
	case r.Status == exitFiredAlready:
		return StateActivating, fmt.Errorf("arm the rollback: %s", r.brief())
	case r.Status != 0:
		return StateActivating, fmt.Errorf("start the activation (exit %d): %s", r.Status, r.brief())
	case !strings.Contains(r.Stdout, "started"):
		return StateActivating, fmt.Errorf("start the activation: unexpected output %q", r.Stdout)
	}
	ru.set(h, StateActivating, "switch-to-configuration test")
	return StateActivating, nil
}

// waitActivation waits until the activation unit has ended and checks that
// it succeeded.
func (ru *run) waitActivation(ctx context.Context, h *hostRun) error {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Activate += time.Since(start) }) }()
	w, err := ru.waitUnit(ctx, h, stepActivate)
	if err != nil {
		return fmt.Errorf("wait for the activation: %w", err)
	}
	if w.result != resultOK {
		return fmt.Errorf("switch-to-configuration test failed (%s)%s", describeResult(w.result), w.logLines())
	}
	if w.toplevel != "" {
		h.toplevel = w.toplevel
	}
	h.setNow(w.probed)
	return nil
}

// waited is what waitUnit found once the unit had ended.
type waited struct {
	unit     unitState
	result   string // what its ExecStopPost recorded
	toplevel string
	previous string // the system the rollback returns to
	log      []string
	probed   Probed
}

func (w waited) logLines() string {
	if len(w.log) == 0 {
		return ""
	}
	return ":\n  " + strings.Join(w.log, "\n  ")
}

// waitUnit waits until step's unit is no longer running, reconnecting as
// needed, and probes the host once it has; ctx bounds it.
func (ru *run) waitUnit(ctx context.Context, h *hostRun, step string) (waited, error) {
	var w waited
	n := h.names
	wait := fmt.Sprintf(`i=0; while %s && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.2; done`, unitActive(n.unit(step)))
	secs := []section{
		{"unit", showUnit(n.unit(step)), func(l []string) { w.unit = parseUnit(l) }},
		{"result", "cat " + n.result(step) + " 2>/dev/null", func(l []string) {
			if r := nonEmpty(l); len(r) > 0 {
				w.result = strings.TrimSpace(r[0])
			}
		}},
		{"toplevel", "readlink " + n.run + "/toplevel", func(l []string) {
			if r := nonEmpty(l); len(r) > 0 {
				w.toplevel = strings.TrimSpace(r[0])
			}
		}},
		{"previous", "head -n 1 " + n.run + "/previous 2>/dev/null", func(l []string) {
			if r := nonEmpty(l); len(r) > 0 {
				w.previous = strings.TrimSpace(r[0])
			}
		}},
		{"log", fmt.Sprintf(`[ "$(cat %s 2>/dev/null)" = %q ] || %s`, n.result(step), resultOK, journalTail(n.unit(step))), func(l []string) { w.log = nonEmpty(l) }},
	}
	script := wait + "; " + probeScript(secs)
	for {
		w = waited{}
		r, err := h.conn.retry(ctx, script, nil)
		if err != nil {
			return w, err
		}
		p, perr := parseProbeOutput(r, secs)
		if r.Status != 0 || w.unit.Active == "" {
			return w, fmt.Errorf("systemctl show %s (exit %d): %s", n.unit(step), r.Status, r.brief())
		}
		w.probed = p
		if !w.unit.active() {
			if perr == nil && w.result == "" {
				return w, fmt.Errorf("%s ended without recording its result in %s%s", n.unit(step), n.result(step), w.logLines())
			}
			return w, perr
		}
		if ctx.Err() != nil {
			return w, fmt.Errorf("%s still running: %w", n.unit(step), ctx.Err())
		}
	}
}

// health checks that the host runs the built system, that no unit failed
// that had not failed before the activation (nor waits to restart), and
// runs the health commands.
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
	if p.System != h.toplevel {
		return fmt.Errorf("after the activation the host runs %s, not the built %s", p.System, h.toplevel)
	}
	if err := ru.checkUnits(ctx, h); err != nil {
		return err
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
	if len(ru.cfg.Health) > 0 {
		// A unit that crash-loops may have been up a moment ago.
		return ru.checkUnits(ctx, h)
	}
	return nil
}

// checkUnits waits until systemd has no jobs left, then fails on the units
// that failed, or wait to restart, and had not failed before the
// activation.
func (ru *run) checkUnits(ctx context.Context, h *hostRun) error {
	for {
		r, err := h.conn.retry(ctx, h.names.healthScript(ru.cfg.HealthSettle), nil)
		if err != nil {
			return fmt.Errorf("check the units: %w", err)
		}
		secs := parseSections(r.Stdout)
		if _, ok := secs["end"]; !ok || r.Status != 0 {
			return fmt.Errorf("check the units (exit %d): %s", r.Status, r.brief())
		}
		if jobs := nonEmpty(secs["jobs"]); len(jobs) > 0 {
			if ctx.Err() != nil {
				return fmt.Errorf("systemd still has %d jobs to do: %w", len(jobs), ctx.Err())
			}
			continue
		}
		before := unitNames(secs["before"])
		var bad []string
		for _, u := range unitNames(secs["failed"]) {
			if !slices.Contains(before, u) && !nestbotsUnit(u) && !loginUnit(u) {
				bad = append(bad, u+" failed")
			}
		}
		for _, u := range unitNames(secs["restarting"]) {
			if !slices.Contains(before, u) {
				bad = append(bad, u+" keeps restarting")
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%s after the activation, and had not failed before (journalctl -u %s on the host)",
				strings.Join(bad, ", "), strings.Fields(bad[0])[0])
		}
		return nil
	}
}

// loginUnit reports whether a unit is a login's rather than the system's:
// logind starts and stops user@UID.service, user-runtime-dir@UID.service
// and session-N.scope as logins come and go, nestbot's own sessions among
// them, and one that fails as its login ends says nothing of the new
// system (real systemd on the lab's hosts showed user-runtime-dir@0.service
// failing so during a rollout).
func loginUnit(u string) bool {
	return strings.HasPrefix(u, "user@") || strings.HasPrefix(u, "user-runtime-dir@") ||
		strings.HasPrefix(u, "session-") && strings.HasSuffix(u, ".scope")
}

// nestbotsUnit reports whether a unit is one of those nestbot's rollouts
// start (whose failures are the steps' own).
func nestbotsUnit(u string) bool {
	for _, step := range []string{stepBuild, stepActivate, stepRollback, stepBoot, "setup"} {
		if strings.HasPrefix(u, "nest-"+step+"-") {
			return true
		}
	}
	return false
}

// unitNames reads the unit column of systemctl list-units --plain (a
// failed unit's line starts with a "●" even so).
func unitNames(lines []string) []string {
	var out []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == "●" || f[0] == "*") {
			f = f[1:]
		}
		if len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// confirm disarms the dead-man rollback.
func (ru *run) confirm(ctx context.Context, h *hostRun) error {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Confirm += time.Since(start) }) }()
	r, err := h.conn.retry(ctx, h.names.confirmScript(), nil)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	switch {
	case r.Status == exitFired:
		return errors.New("confirm: too late: the dead-man timer already fired")
	case r.Status != 0:
		return fmt.Errorf("confirm (exit %d): %s", r.Status, r.brief())
	}
	return nil
}

// bootDefault makes the confirmed system the boot default (as nixos-rebuild
// switch does: nix-env --set, switch-to-configuration boot), records the
// commit on the host, and confirms the host.
func (ru *run) bootDefault(ctx context.Context, h *hostRun) error {
	ru.set(h, StateBooting, "nix-env --set; switch-to-configuration boot")
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Boot += time.Since(start) }) }()
	r, err := h.conn.retry(ctx, h.names.bootScript(), nil)
	if err != nil {
		return fmt.Errorf("make it the boot default: %w", err)
	}
	if r.Status != 0 {
		return fmt.Errorf("make it the boot default (exit %d): %s", r.Status, r.brief())
	}
	w, err := ru.waitUnit(ctx, h, stepBoot)
	if err != nil {
		return fmt.Errorf("wait for it to become the boot default: %w", err)
	}
	if w.result != resultOK {
		return fmt.Errorf("making it the boot default failed (%s)%s", describeResult(w.result), w.logLines())
	}
	if r, err = h.conn.retry(ctx, h.names.recordScript(), nil); err != nil || r.Status != 0 {
		return fmt.Errorf("record the deployed commit in %s (exit %d): %v %s", deployedFile, r.Status, err, r.brief())
	}
	p, err := probe(ctx, h.conn, nil)
	if err != nil {
		return err
	}
	h.setNow(p)
	if p.Revision != ru.cfg.Revision || !p.Boots() {
		return fmt.Errorf("after the rollout the host runs %s (%s) and boots %s, not the built %s", p.System, shortRev(p.Revision), p.Profile, h.toplevel)
	}
	ru.set(h, StateConfirmed, "")
	return nil
}

// failed records a host's failure, halts the rollout and, if the host may
// have changed, rolls it back. A cancelled run leaves the host as it is.
func (ru *run) failed(ctx context.Context, h *hostRun, step State, err error, rollback bool) {
	if ctx.Err() != nil {
		return
	}
	ru.halted.Store(true)
	he := &HostError{Host: h.target.Name, Step: step, Err: err}
	h.mu.Lock()
	h.err = he
	h.mu.Unlock()
	ru.set(h, StateFailed, err.Error())
	if !rollback {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, ru.cfg.RollbackTimeout)
	defer cancel()
	back, rerr := ru.rollbackNow(rctx, h)
	if rerr != nil {
		if ctx.Err() != nil {
			return
		}
		ru.set(h, StateFailed, fmt.Sprintf("%v; rolling back failed too: %v", err, rerr))
		return
	}
	h.mu.Lock()
	he.RolledBack = true
	h.mu.Unlock()
	ru.set(h, StateRolledBack, fmt.Sprintf("back on %s after: %v", back, err))
}

// fail records a failure before anything ran on the host.
func (ru *run) fail(h *hostRun, step State, err error) {
	h.mu.Lock()
	h.err = &HostError{Host: h.target.Name, Step: step, Err: err}
	h.mu.Unlock()
	ru.set(h, StateFailed, err.Error())
}

// rollbackNow returns the host at once to the system it ran before the
// activation, as the dead-man timer would, and waits for it: the rollback
// waits for an activation still running rather than stop it.
func (ru *run) rollbackNow(ctx context.Context, h *hostRun) (string, error) {
	start := time.Now()
	defer func() { h.conn.addTiming(func(t *Timings) { t.Rollback += time.Since(start) }) }()
	r, err := h.conn.retry(ctx, h.names.rollbackNowScript(), nil)
	if err != nil {
		return "", err
	}
	if r.Status != 0 {
		return "", fmt.Errorf("start the rollback (exit %d): %s", r.Status, r.brief())
	}
	w, err := ru.waitUnit(ctx, h, stepRollback)
	if err != nil {
		return "", err
	}
	h.setNow(w.probed)
	if w.result != resultOK {
		return "", fmt.Errorf("%s failed (%s)%s", h.names.unit(stepRollback), describeResult(w.result), w.logLines())
	}
	if w.probed.System != w.previous {
		return "", fmt.Errorf("after the rollback the host runs %s, not %s, which it ran before", w.probed.System, w.previous)
	}
	return w.previous, nil
}
