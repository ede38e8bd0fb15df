package host

import (
	"bufio"
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

// State is what the host's root says it runs.
type State struct {
	Revision    string // configurationRevision of run/current-system ("" if none)
	System      string // run/current-system, as the host sees it (/nix/store/…)
	Generation  int    // generation the system profile points to
	Generations []int  // all generations, ascending
}

// State reads the host's current system and profile from its root.
func (h *Host) State() (State, error) {
	var st State
	cur, err := os.Readlink(h.path("run/current-system"))
	if err != nil {
		return st, fmt.Errorf("host %s: state: %w", h.cfg.Name, err)
	}
	st.System = strings.TrimPrefix(cur, h.root)
	rev, err := os.ReadFile(filepath.Join(cur, "configuration-revision"))
	if err != nil {
		return st, fmt.Errorf("host %s: state: %w", h.cfg.Name, err)
	}
	st.Revision = strings.TrimSpace(string(rev))
	profiles := h.path("nix/var/nix/profiles")
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

// Event is one line of the host's event log: what the stubs did, when,
// by the host's clock.
//
// Names: boot, switch-start, build, generation, activate-start,
// activate-end, activate (boot), tailscaled-restart, tailscaled-stop,
// switch-end, profile (nix-env moved it), unit-start, unit-end, unit-stop,
// timer-start, timer-elapsed.
type Event struct {
	Time   time.Time
	Name   string
	Fields map[string]string // e.g. rev, status, unit, pid
}

// Events reads the host's event log.
func (h *Host) Events() ([]Event, error) {
	f, err := os.Open(h.path(eventsFile))
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
