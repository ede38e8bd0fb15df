package rollout

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The command lines the bot runs on a host. Each is safe to run again after
// a connection broke mid-way (the bot cannot know how far it got), or has a
// form for that second attempt (armAndSwitchScript); each names paths as
// NixOS lays them out. Units are systemd transient units, named by the
// revision's first 12 characters:
//
//	nest-switch-<rev>.service    nixos-rebuild switch, detached (RemainAfterExit=yes)
//	nest-rollback-<rev>.timer    the dead-man: fires after confirm_within unless stopped
//	nest-rollback-<rev>.service  the rollback it (or the bot, at once) starts:
//	                             nix-env --switch-generation N, then switch-to-configuration switch

var (
	validRevision = regexp.MustCompile(`^[A-Za-z0-9._+-]{1,128}$`)
	validHostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	validFlakeDir = regexp.MustCompile(`^[A-Za-z0-9._+/-]+$`)
	unitUnsafe    = regexp.MustCompile(`[^A-Za-z0-9_.-]`)
)

// names are the host-side names one rollout uses.
type names struct {
	rev       string
	switchSvc string // nest-switch-<short>.service
	rollback  string // nest-rollback-<short> (.timer, .service)
	srcDir    string // "$HOME/.nest/src/<rev>", for the shell
	flakeDir  string // srcDir + "/" + flake dir, for the shell
}

func newNames(rev, flakeDir string) names {
	short := unitUnsafe.ReplaceAllString(shortRev(rev), "_")
	n := names{
		rev:       rev,
		switchSvc: "nest-switch-" + short + ".service",
		rollback:  "nest-rollback-" + short,
		srcDir:    "$HOME/.nest/src/" + rev,
	}
	n.flakeDir = n.srcDir
	if flakeDir != "." && flakeDir != "" {
		n.flakeDir += "/" + flakeDir
	}
	return n
}

func (n names) rollbackSvc() string   { return n.rollback + ".service" }
func (n names) rollbackTimer() string { return n.rollback + ".timer" }

// shortRev is the revision as unit names and messages show it.
func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// unitProps are the properties the bot reads of a unit.
const unitProps = "-p ActiveState,SubState,Result,ExecMainStatus"

// showUnit prints a unit's state.
func showUnit(unit string) string { return "systemctl show " + unit + " " + unitProps }

// inspectSections read, with the probe, what an earlier run left on the
// host: the switch unit, the dead-man timer and its rollback unit (in one
// systemctl call), and whether the source is there.
func (n names) inspectSections(ins *inspection) []section {
	return []section{
		{"units", "systemctl show " + n.switchSvc + " " + n.rollbackTimer() + " " + n.rollbackSvc() + " " + unitProps, func(l []string) {
			u := parseUnits(l, 3)
			ins.switchUnit, ins.timer, ins.rollbackUnit = u[0], u[1], u[2]
		}},
		{"shipped", `test -f "` + n.flakeDir + `/.nest-revision" && echo yes`, func(l []string) { ins.shipped = slices.Contains(l, "yes") }},
	}
}

// leftovers reports whether an earlier attempt left units to clear.
func (ins inspection) leftovers() bool {
	return ins.switchUnit.loaded() || ins.timer.loaded() || ins.rollbackUnit.loaded()
}

// inspection is what the probe found of an earlier run.
type inspection struct {
	switchUnit, timer, rollbackUnit unitState
	shipped                         bool
}

// shipScript unpacks the tar stream on stdin into the source directory,
// atomically: a directory that exists is complete.
func (n names) shipScript() string {
	return fmt.Sprintf(`set -e; d="%s"; mkdir -p "$HOME/.nest/src"; rm -rf "$d.part"; mkdir -p "$d.part"; tar -x -f - -C "$d.part"; rm -rf "$d"; mv "$d.part" "$d"`, n.srcDir)
}

// rollbackScript is what nest-rollback-<rev>.service runs, with the
// generation as $1: stop the switch if it still runs, point the system
// profile at the generation, activate it.
func (n names) rollbackScript() string {
	return fmt.Sprintf(`if [ "$(systemctl show %[1]s -p SubState --value)" = running ]; then systemctl stop %[1]s; fi; nix-env -p %[2]s --switch-generation "$1" && exec %[3]s switch`,
		n.switchSvc, profilePath, switchToConfigPath)
}

// startRollback starts the rollback unit with generation gen; with after
// > 0, as a timer that fires after that long.
func (n names) startRollback(gen string, after time.Duration) string {
	timer := ""
	if after > 0 {
		timer = fmt.Sprintf(" --on-active=%dms", after.Milliseconds())
	}
	return fmt.Sprintf(`systemd-run --unit %s%s -p RemainAfterExit=yes "--setenv=PATH=$PATH" -- /bin/sh -c '%s' nest-rollback %s`,
		n.rollback, timer, n.rollbackScript(), gen)
}

// Exit statuses of armAndSwitchScript.
const (
	exitArmFailed    = 3 // nothing armed, nothing switched
	exitSwitchFailed = 5 // armed, the switch did not start
)

// armAndSwitchScript arms the dead-man rollback to generation gen (the one
// the host's system profile must still point to), then, only if that
// worked, starts nixos-rebuild switch detached. It prints "armed" and
// "started" as it goes.
//
// The first attempt (again false) clears first what an earlier attempt at
// this revision left, if clear is set. A later attempt (again true: the
// connection broke and the bot cannot know how far the first one got)
// arms and starts only what is not there yet.
func (n names) armAndSwitchScript(host string, gen int, confirmWithin time.Duration, clear, again bool) string {
	var lines []string
	if clear && !again {
		lines = append(lines,
			fmt.Sprintf("systemctl stop %s %s %s >/dev/null 2>&1", n.rollbackTimer(), n.rollbackSvc(), n.switchSvc),
			fmt.Sprintf("systemctl reset-failed %s %s >/dev/null 2>&1", n.rollbackSvc(), n.switchSvc))
	}
	arm := strings.Join([]string{
		fmt.Sprintf("g=$(readlink %s) || exit %d", profilePath, exitArmFailed),
		fmt.Sprintf(`if [ "${g##*/}" != system-%d-link ]; then echo "the system profile moved to $g since the probe (generation %d)" >&2; exit %d; fi`, gen, gen, exitArmFailed),
		n.startRollback(fmt.Sprint(gen), confirmWithin) + fmt.Sprintf(" || exit %d", exitArmFailed),
	}, "\n")
	start := fmt.Sprintf(`systemd-run --unit %s -p RemainAfterExit=yes "--setenv=PATH=$PATH" -- nixos-rebuild switch --flake "%s#%s" || exit %d`,
		strings.TrimSuffix(n.switchSvc, ".service"), n.flakeDir, host, exitSwitchFailed)
	if again {
		arm = fmt.Sprintf(`if [ "$(systemctl show %s %s -p ActiveState --value | sort -u)" = inactive ]; then %s; fi`,
			n.rollbackTimer(), n.rollbackSvc(), strings.ReplaceAll(arm, "\n", "; "))
		start = fmt.Sprintf(`if [ "$(systemctl show %s -p ActiveState --value)" = inactive ]; then %s; fi`, n.switchSvc, start)
	}
	return strings.Join(append(lines, arm, "echo armed", start, "echo started"), "\n")
}

// waitScript waits, on the host, until the unit's main process has exited
// (a zombie counts as exited: its reaper may be slow), then prints the
// unit's state and the probe. A unit with no main process is not waited
// for.
//
// The wait blocks rather than polls: tail --pid checks the process every
// 20 ms from one sleeping process (no process started per check), for at
// most a second at a time, after which /proc says whether it is gone or a
// zombie. Without timeout or tail it falls back to checking every 100 ms.
func waitScript(unit string, ins *unitState) (string, []section) {
	wait := fmt.Sprintf(`pid=$(systemctl show %s -p MainPID --value); case $pid in ''|0|*[!0-9]*) ;; *) while read -r st 2>/dev/null </proc/$pid/stat; do case ${st##*) } in Z*|X*) break;; esac; timeout 1 tail --pid=$pid -s 0.02 -f /dev/null 2>/dev/null; case $? in 0|124) ;; *) sleep 0.1;; esac; done;; esac`, unit)
	secs := []section{{"unit", showUnit(unit), func(l []string) { *ins = parseUnit(l) }}}
	return wait + "; " + probeScript(secs), secs
}

// exitFired is confirmScript's exit status when the dead-man timer fired first.
const exitFired = 5

// confirmScript disarms the dead-man timer, and clears the finished switch
// unit. It fails (exitFired) if the rollback has already started.
func (n names) confirmScript() string {
	return strings.Join([]string{
		fmt.Sprintf("systemctl stop %s %s >/dev/null 2>&1", n.rollbackTimer(), n.switchSvc),
		fmt.Sprintf(`if [ "$(systemctl show %s -p ActiveState --value)" != inactive ]; then echo "the dead-man rollback has already started" >&2; exit %d; fi`, n.rollbackSvc(), exitFired),
	}, "\n")
}

// rollbackNowScript rolls back at once: it stops the timer and starts the
// rollback unit itself, unless the timer already did.
func (n names) rollbackNowScript(gen int) string {
	return strings.Join([]string{
		fmt.Sprintf("systemctl stop %s >/dev/null 2>&1", n.rollbackTimer()),
		fmt.Sprintf(`if [ "$(systemctl show %s -p ActiveState --value)" = inactive ]; then %s || exit 4; fi`, n.rollbackSvc(), n.startRollback(fmt.Sprint(gen), 0)),
	}, "\n")
}

// afterRollbackScript clears the failed switch unit, so that it does not
// leave the system degraded.
func (n names) afterRollbackScript() string {
	return fmt.Sprintf("systemctl reset-failed %s >/dev/null 2>&1; true", n.switchSvc)
}
