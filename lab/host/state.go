package host

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// eventsFile is the host's event log, relative to the root.
const eventsFile = "var/log/nest-lab/events.log"

// State is what the host runs.
type State struct {
	Revision string // configurationRevision of /run/current-system ("" if it has none)
	// Deployed is the commit nestbot recorded for the system the host runs
	// (/var/lib/nestbot/deployed names both); "" when it recorded another.
	Deployed    string
	System      string // /run/current-system's store path
	Booted      string // /run/booted-system's store path
	Generation  int    // generation the system profile points to
	Generations []int  // all generations, ascending
	// BootDefault is the generation the boot loader boots next.
	BootDefault int
}

// Commit is the commit the host runs: what nestbot recorded for its
// system, else the system's configurationRevision.
func (s State) Commit() string { return cmp.Or(s.Deployed, s.Revision) }

// State reads the running host's current system and profile.
func (h *Host) State() (State, error) {
	var st State
	root := h.Root()
	if root == "" {
		return st, fmt.Errorf("host %s: state: not running", h.cfg.Name)
	}
	cur, err := os.Readlink(filepath.Join(root, "run/current-system"))
	if err != nil {
		return st, fmt.Errorf("host %s: state: %w", h.cfg.Name, err)
	}
	st.System = cur
	st.Booted, _ = os.Readlink(filepath.Join(root, "run/booted-system"))
	rev, err := os.ReadFile(filepath.Join(root, cur, "configuration-revision"))
	if err == nil {
		st.Revision = strings.TrimSpace(string(rev))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("host %s: state: %w", h.cfg.Name, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/nestbot/deployed")); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 && f[1] == cur {
			st.Deployed = f[0]
		}
	}
	profiles := filepath.Join(h.dir, "upper/nix/var/nix/profiles")
	link, err := os.Readlink(filepath.Join(profiles, "system"))
	if err != nil {
		return st, fmt.Errorf("host %s: state: %w", h.cfg.Name, err)
	}
	st.Generation, _ = generationOf(link)
	ents, err := os.ReadDir(profiles)
	if err != nil {
		return st, fmt.Errorf("host %s: state: %w", h.cfg.Name, err)
	}
	for _, e := range ents {
		if n, ok := generationOf(e.Name()); ok {
			st.Generations = append(st.Generations, n)
		}
	}
	slices.Sort(st.Generations)
	if b, err := os.ReadFile(filepath.Join(h.dir, "upper/boot/loader/loader.conf")); err == nil {
		s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(b)), "default"))
		s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "nixos-generation-"), ".conf")
		st.BootDefault, _ = strconv.Atoi(s)
	}
	return st, nil
}

// generationOf parses "system-N-link".
func generationOf(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "system-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "-link")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// Event is one line of the host's event log: what the stand-ins did,
// when, by the host's clock (the machine's).
//
// The stand-ins write them: boot (stage 2), bootloader, switch-start,
// build, generation, switch-end (nixos-rebuild), activate-start,
// activate-end, units-restart, tailscaled-restart, tailscaled-stop
// (switch-to-configuration).
type Event struct {
	Time   time.Time
	Name   string
	Fields map[string]string // e.g. rev, status, unit, pid
}

// Events reads the host's event log.
func (h *Host) Events() ([]Event, error) {
	f, err := os.Open(filepath.Join(h.dir, "upper", eventsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host %s: events: %w", h.cfg.Name, err)
	}
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		words := strings.Fields(sc.Text())
		if len(words) < 2 {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, words[0])
		if err != nil {
			return nil, fmt.Errorf("host %s: events: %q: %w", h.cfg.Name, sc.Text(), err)
		}
		ev := Event{Time: t, Name: words[1], Fields: map[string]string{}}
		for _, w := range words[2:] {
			if k, v, ok := strings.Cut(w, "="); ok {
				ev.Fields[k] = v
			}
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("host %s: events: %w", h.cfg.Name, err)
	}
	return out, nil
}

// Switch is one nixos-rebuild run on the host, from its event log.
type Switch struct {
	Start, End time.Time // End is zero while it runs
	Action     string    // switch, boot, test, build
	Rollback   bool
	Revision   string // the revision it switched to ("" if none or not known)
	Status     int    // exit status, once ended
}

// Switches pairs the host's switch-start and switch-end events, in start
// order: what the host did and when, for asserting how many hosts switched
// at once.
func (h *Host) Switches() ([]Switch, error) {
	evs, err := h.Events()
	if err != nil {
		return nil, err
	}
	var out []Switch
	open := map[string]int{} // pid -> index in out
	for _, ev := range evs {
		switch ev.Name {
		case "switch-start":
			open[ev.Fields["pid"]] = len(out)
			out = append(out, Switch{Start: ev.Time, Action: ev.Fields["action"], Rollback: ev.Fields["rollback"] == "1"})
		case "switch-end":
			i, ok := open[ev.Fields["pid"]]
			if !ok {
				continue
			}
			delete(open, ev.Fields["pid"])
			out[i].End = ev.Time
			out[i].Status, _ = strconv.Atoi(ev.Fields["status"])
			if rev := ev.Fields["rev"]; rev != "-" {
				out[i].Revision = rev
			}
		}
	}
	return out, nil
}
