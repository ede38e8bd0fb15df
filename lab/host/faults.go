package host

import (
	"fmt"
	"strconv"
	"time"
)

// faultsFile holds the faults in force, as shell assignments the stubs
// source; relative to the root.
const faultsFile = "run/lab/faults"

// Faults are failures the host injects, on demand, into the next
// `nixos-rebuild switch --flake` (a rollback, or re-activating an existing
// generation, is not affected), and into its SSH server (SSHDown). The
// zero value injects nothing.
type Faults struct {
	// SwitchFails: activation fails. The new generation is added and
	// run/current-system points at it (as when a real activation script
	// fails halfway), then switch-to-configuration, and so nixos-rebuild,
	// exits 4. Re-activating that generation fails again.
	SwitchFails bool

	// HealthFails: the switch succeeds, but the generation it made is
	// unhealthy: while it is current, `systemctl is-system-running` says
	// degraded (exit status 1) and list-units --failed names a failed unit.
	// A configuration asks for the same itself with a line
	// "# lab: degraded" in the flake's hosts/<name>/configuration.nix, so a
	// commit can break a host as a broken service would.
	HealthFails bool

	// SlowSwitch is how long activation takes.
	SlowSwitch time.Duration

	// RestartTailscaled, if positive, makes activation restart tailscaled:
	// the node leaves the tailnet (its open SSH sessions die with it) and
	// comes back, with the same identity, after this long. The switch,
	// running detached, carries on.
	RestartTailscaled time.Duration

	// NeverReturns makes activation stop tailscaled for good: the host
	// finishes its switch but never rejoins the tailnet.
	NeverReturns bool

	// SSHDown: the host's SSH server is down, as on a new instance that
	// joined the tailnet before its sshd started. From the moment
	// SetFaults returns, each new connection to port 22 is closed as it
	// arrives, before the server says a word: the client's SSH handshake
	// fails and it never sees the host key. Sessions already open carry
	// on (as when sshd stops), and the node stays on the tailnet. It holds
	// across restarts of tailscaled; clearing it serves SSH again.
	SSHDown bool
}

// shell renders f as the assignments the stubs source.
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

// seconds renders d for sleep(1); "0" for none.
func seconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// SetFaults sets the faults for the switches that start from now on, and
// makes port 22 refuse or serve SSH, as SSHDown says, before it returns.
func (h *Host) SetFaults(f Faults) error {
	h.mu.Lock()
	err := writeFileAtomic(h.path(faultsFile), []byte(f.shell()), 0o644)
	if err == nil {
		h.faults = f
	}
	h.mu.Unlock()
	if err == nil {
		err = h.syncSSH()
	}
	if err != nil {
		return fmt.Errorf("host %s: set faults: %w", h.cfg.Name, err)
	}
	return nil
}

// Faults returns the faults in force.
func (h *Host) Faults() Faults {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.faults
}
