package rollout

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/reconcile"
)

// Probed is what a host runs.
type Probed struct {
	// Revision is the commit the running system was built from, as far as
	// the host says: the commit nestbot recorded when it confirmed the
	// system that still runs, else nixos-version's configurationRevision
	// (set only by flakes that set system.configurationRevision); "" when
	// neither says.
	Revision string `json:"revision,omitempty"`
	// ConfigurationRevision is nixos-version's configurationRevision.
	ConfigurationRevision string `json:"configuration_revision,omitempty"`
	// NixOSVersion is nixos-version's nixosVersion.
	NixOSVersion string `json:"nixos_version,omitempty"`
	// System is /run/current-system's store path.
	System string `json:"system,omitempty"`
	// Booted is /run/booted-system's store path.
	Booted string `json:"booted,omitempty"`
	// Profile is the system profile's store path: the boot default.
	Profile string `json:"profile,omitempty"`
	// Generation is the system profile's current generation number.
	Generation int `json:"generation,omitempty"`
	// Deployed and DeployedSystem are what nestbot recorded on the host
	// when it last confirmed a rollout: the commit and its toplevel.
	Deployed       string `json:"deployed,omitempty"`
	DeployedSystem string `json:"deployed_system,omitempty"`
	// HostKey is the SSH host key the host offered.
	HostKey ssh.PublicKey `json:"-"`
}

// Boots reports whether the system the host runs is also its boot default.
func (p Probed) Boots() bool { return p.System != "" && p.Profile == p.System }

// HostRun is the probe in the plan's shape.
func (p Probed) HostRun() reconcile.HostRun {
	return reconcile.HostRun{Revision: p.Revision, System: p.System, Profile: p.Profile, Generation: p.Generation, Reachable: true}
}

// DefaultDialTimeout bounds one dial and SSH handshake when none is set.
const DefaultDialTimeout = 10 * time.Second

// Probe connects to a host over the tailnet (checking its pinned host key,
// or learning it) and reads what it runs: nixos-version --json, the
// current system and the system profile's generation. ctx bounds it.
func Probe(ctx context.Context, d Dialer, t Target) (Probed, error) {
	c := newConn(d, t, DefaultDialTimeout, func(string, string, ...any) {})
	defer c.close()
	p, err := probe(ctx, c, nil)
	p.HostKey = c.hostKey()
	if err != nil {
		return p, fmt.Errorf("rollout: %s: %w", t.Name, err)
	}
	return p, nil
}

// probe runs the probe script, with the extra sections asked for, in one
// session, and hands each section its lines.
func probe(ctx context.Context, c *conn, extra []section) (Probed, error) {
	start := time.Now()
	defer func() { c.addTiming(func(t *Timings) { t.Probe += time.Since(start) }) }()
	r, err := c.retry(ctx, probeScript(extra), nil)
	if err != nil {
		return Probed{}, fmt.Errorf("probe: %w", err)
	}
	return parseProbeOutput(r, extra)
}

// parseProbeOutput reads the output of probeScript(extra).
func parseProbeOutput(r result, extra []section) (Probed, error) {
	secs := parseSections(r.Stdout)
	p, err := parseProbe(secs)
	if err != nil {
		return p, fmt.Errorf("probe: %w (%s)", err, r.brief())
	}
	for _, s := range extra {
		s.parse(secs[s.name])
	}
	return p, nil
}

// section is an extra part of a probe: a name, the shell that prints it,
// and what to do with its lines.
type section struct {
	name  string
	shell string
	parse func(lines []string)
}

func probeScript(extra []section) string {
	var b strings.Builder
	b.WriteString("echo @version; nixos-version --json; echo; ")
	b.WriteString("echo @system; readlink " + currentSystemPath + "; ")
	b.WriteString("echo @booted; readlink " + bootedSystemPath + "; ")
	b.WriteString("echo @profile; readlink " + profilePath + "; ")
	b.WriteString("echo @profiletop; readlink -f " + profilePath + "; ")
	b.WriteString("echo @deployed; cat " + deployedFile + " 2>/dev/null; ")
	for _, s := range extra {
		b.WriteString("echo @" + s.name + "; " + s.shell + "; ")
	}
	b.WriteString("echo @end")
	return b.String()
}

// parseSections splits output into the lines under each "@name" line
// (blank lines included: they separate units in systemctl show).
func parseSections(out string) map[string][]string {
	secs := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), outputLimit)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if name, ok := strings.CutPrefix(line, "@"); ok && !strings.ContainsAny(name, " \t") {
			cur = name
			if _, seen := secs[cur]; !seen {
				secs[cur] = nil
			}
			continue
		}
		if cur != "" {
			secs[cur] = append(secs[cur], line)
		}
	}
	return secs
}

func parseProbe(secs map[string][]string) (Probed, error) {
	var p Probed
	if _, ok := secs["end"]; !ok {
		return p, fmt.Errorf("probe output is incomplete")
	}
	var v struct {
		NixosVersion          string `json:"nixosVersion"`
		ConfigurationRevision string `json:"configurationRevision"`
	}
	ver := strings.Join(secs["version"], "")
	if err := json.Unmarshal([]byte(ver), &v); err != nil || v.NixosVersion == "" {
		return p, fmt.Errorf("nixos-version --json said %q: is this NixOS?", ver)
	}
	p.ConfigurationRevision, p.NixOSVersion = v.ConfigurationRevision, v.NixosVersion
	first := func(sec string) string {
		if l := nonEmpty(secs[sec]); len(l) > 0 {
			return strings.TrimSpace(l[0])
		}
		return ""
	}
	p.System, p.Booted, p.Profile = first("system"), first("booted"), first("profiletop")
	if f := strings.Fields(first("deployed")); len(f) == 2 && validRevision.MatchString(f[0]) {
		p.Deployed, p.DeployedSystem = f[0], f[1]
	}
	p.Revision = p.ConfigurationRevision
	if p.Deployed != "" && p.DeployedSystem == p.System {
		p.Revision = p.Deployed
	}
	prof := nonEmpty(secs["profile"])
	if len(prof) == 0 {
		return p, fmt.Errorf("no system profile at %s", profilePath)
	}
	n, ok := generationOf(prof[0])
	if !ok {
		return p, fmt.Errorf("system profile points to %q, not a system-N-link", prof[0])
	}
	p.Generation = n
	return p, nil
}

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// generationOf parses "system-N-link" (or a path ending in it).
func generationOf(link string) (int, bool) {
	s, ok := strings.CutPrefix(path.Base(link), "system-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "-link")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// unitState is what systemctl show says of a unit.
type unitState struct {
	Active, Sub, Result string
	Status              int // ExecMainStatus
}

func parseUnit(lines []string) unitState {
	var u unitState
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "ActiveState":
			u.Active = v
		case "SubState":
			u.Sub = v
		case "Result":
			u.Result = v
		case "ExecMainStatus":
			u.Status, _ = strconv.Atoi(v)
		}
	}
	return u
}

// loaded reports whether the unit exists (systemd shows an unknown unit
// as inactive).
func (u unitState) loaded() bool { return u.Active != "" && u.Active != "inactive" }

func (u unitState) String() string {
	if !u.loaded() {
		return "not loaded"
	}
	return fmt.Sprintf("%s (%s), result %s, status %d", u.Active, u.Sub, u.Result, u.Status)
}

// active reports whether the unit is starting, running (a timer: waiting)
// or stopping.
func (u unitState) active() bool {
	switch u.Active {
	case "active", "activating", "deactivating", "reloading", "refreshing":
		return true
	}
	return false
}

// unitProps are the properties the bot reads of a unit.
const unitProps = "-p ActiveState,SubState,Result,ExecMainStatus"

// showUnit prints one unit's state. (systemctl show of several units
// separates them by blank lines: one unit per call keeps them apart.)
func showUnit(unit string) string { return "systemctl show " + unit + " " + unitProps }

// inspectSections read, with the probe, what an earlier attempt at the
// revision left on the host: each unit on its own, the results their
// ExecStopPost wrote, the built toplevel, and whether the commit is there.
func (n names) inspectSections(ins *inspection) []section {
	var secs []section
	for _, u := range []struct {
		unit string
		st   *unitState
	}{
		{n.unit(stepBuild), &ins.build}, {n.unit(stepActivate), &ins.activate}, {n.timer(), &ins.timer},
		{n.unit(stepRollback), &ins.rollback}, {n.unit(stepBoot), &ins.boot},
	} {
		secs = append(secs, section{"unit-" + u.unit, showUnit(u.unit), func(l []string) { *u.st = parseUnit(l) }})
	}
	return append(secs,
		section{"results", fmt.Sprintf(`for f in %s/*.result; do [ -e "$f" ] || continue; b=${f##*/}; echo "${b%%.result} $(cat "$f")"; done`, n.run), func(l []string) {
			ins.results = map[string]string{}
			for _, line := range nonEmpty(l) {
				step, res, _ := strings.Cut(strings.TrimSpace(line), " ")
				ins.results[step] = strings.TrimSpace(res)
			}
		}},
		section{"toplevel", "readlink " + n.run + "/toplevel", func(l []string) {
			if t := nonEmpty(l); len(t) > 0 {
				ins.toplevel = strings.TrimSpace(t[0])
			}
		}},
		section{"shipped", fmt.Sprintf(`git -C %s rev-parse -q --verify refs/nest/%s >/dev/null 2>&1 && echo yes`, srcRepo, n.rev), func(l []string) {
			ins.shipped = slices.Contains(l, "yes")
		}},
	)
}
