package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// faultsFile holds the faults in force, as shell assignments the stand-in
// switch-to-configuration reads (in the host's /run: gone at a restart,
// written again at each start).
const faultsFile = "run/nestlab/faults"

// Faults are failures the host injects, on demand, into the activation of
// the next configuration nixos-rebuild builds from a flake (a rollback, or
// re-activating an existing generation, is not affected), and into its SSH
// servers (SSHDown). The zero value injects nothing.
type Faults struct {
	// SwitchFails: activation completes (the new generation is current)
	// but switch-to-configuration exits 4, as when a unit fails.
	SwitchFails bool

	// HealthFails: the switch succeeds, then a service of the new
	// configuration fails (a real failed unit, nest-lab-broken.service):
	// the system reads as degraded until a later switch resets it.
	HealthFails bool

	// SlowSwitch is how long activation takes.
	SlowSwitch time.Duration

	// RestartTailscaled, if positive: activation stops tailscaled and
	// starts it again after this long (the bot's sessions over the
	// tailnet die with it).
	RestartTailscaled time.Duration

	// NeverReturns: activation stops tailscaled for good.
	NeverReturns bool

	// SSHDown: the host's SSH servers are down, as on a new instance that
	// joined the tailnet before its sshd started: sshd is stopped and
	// Tailscale SSH turned off (tailscale set --ssh=false), so a
	// connection to port 22 is refused. Clearing it starts them again.
	SSHDown bool
}

func (f Faults) shell() string {
	return fmt.Sprintf("LAB_SWITCH_FAILS=%s\nLAB_HEALTH_FAILS=%s\nLAB_SLOW_SWITCH=%s\nLAB_RESTART_TAILSCALED=%s\nLAB_NEVER_RETURN=%s\n",
		bit(f.SwitchFails), bit(f.HealthFails), seconds(f.SlowSwitch), seconds(f.RestartTailscaled), bit(f.NeverReturns))
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func seconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// SetFaults sets the faults for the switches that start from now on, and
// takes the SSH servers down or up as SSHDown says, before it returns.
func (h *Host) SetFaults(f Faults) error {
	h.mu.Lock()
	old := h.faults
	h.faults = f
	h.mu.Unlock()
	if !h.Up() {
		return nil
	}
	if err := h.writeFaults(); err != nil {
		return err
	}
	if f.SSHDown == old.SSHDown {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.syncSSH(ctx, f.SSHDown); err != nil {
		return fmt.Errorf("host %s: set faults: %w", h.cfg.Name, err)
	}
	return nil
}

// syncSSH stops or starts sshd and Tailscale SSH.
func (h *Host) syncSSH(ctx context.Context, down bool) error {
	ssh := "--ssh=" + strconv.FormatBool(!down && h.cfg.Login == LoginTailscale)
	steps := [][]string{{"systemctl", "start", "sshd.service"}, {"tailscale", "set", ssh}}
	if down {
		steps = [][]string{{"tailscale", "set", ssh}, {"systemctl", "stop", "sshd.service"}}
	}
	for _, s := range steps {
		if out, err := h.Run(ctx, s...); err != nil {
			return fmt.Errorf("%v: %v: %s", s, err, out)
		}
	}
	return nil
}

// writeFaults writes the faults into the running host's /run.
func (h *Host) writeFaults() error {
	root := h.Root()
	if root == "" {
		return nil
	}
	p := filepath.Join(root, faultsFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(p, []byte(h.Faults().shell()), 0o644); err != nil {
		return fmt.Errorf("set faults: %w", err)
	}
	if h.Faults().SSHDown {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := h.Run(ctx, "systemctl", "stop", "sshd.service")
		if err != nil {
			return fmt.Errorf("stop sshd: %v: %s", err, out)
		}
	}
	return nil
}

// Faults returns the faults in force.
func (h *Host) Faults() Faults {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.faults
}
