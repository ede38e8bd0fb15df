package rollout

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The command lines the bot runs on a host. Each is safe to run again after
// a connection broke mid-way (the bot cannot know whether it ran), and each
// names paths as NixOS lays them out. Units are systemd transient units:
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
// host: the switch unit, the dead-man timer and its rollback unit, and
// whether the source is there.
func (n names) inspectSections(ins *inspection) []section {
	return []section{
		{"switch", showUnit(n.switchSvc), func(l []string) { ins.switchUnit = parseUnit(l) }},
		{"timer", "systemctl show " + n.rollbackTimer() + " -p ActiveState", func(l []string) { ins.timer = parseUnit(l) }},
		{"rollback", showUnit(n.rollbackSvc()), func(l []string) { ins.rollbackUnit = parseUnit(l) }},
		{"shipped", `test -f "` + n.flakeDir + `/.nest-revision" && echo yes`, func(l []string) { ins.shipped = len(l) > 0 && l[0] == "yes" }},
	}
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

// armScript clears what an earlier attempt at this revision left, reads
// the current generation and arms the dead-man rollback to it. It prints
// "generation=N".
func (n names) armScript(confirmWithin time.Duration) string {
	return strings.Join([]string{
		fmt.Sprintf("systemctl stop %s %s %s >/dev/null 2>&1", n.rollbackTimer(), n.rollbackSvc(), n.switchSvc),
		fmt.Sprintf("systemctl reset-failed %s %s >/dev/null 2>&1", n.rollbackSvc(), n.switchSvc),
		"g=$(readlink " + profilePath + ") || exit 3",
		`g=${g##*/}; g=${g#system-}; g=${g%-link}`,
		`case $g in ''|*[!0-9]*) echo "the system profile does not point to a system-N-link" >&2; exit 3;; esac`,
		n.startRollback(`"$g"`, confirmWithin) + " || exit 4",
		`echo "generation=$g"`,
	}, "\n")
}

// switchScript starts nixos-rebuild switch detached, unless this revision's
// switch unit already exists (an earlier attempt started it).
func (n names) switchScript(host string) string {
	return fmt.Sprintf(`if [ "$(systemctl show %s -p ActiveState --value)" = inactive ]; then systemd-run --unit %s -p RemainAfterExit=yes "--setenv=PATH=$PATH" -- nixos-rebuild switch --flake "%s#%s" || exit 4; fi`,
		n.switchSvc, strings.TrimSuffix(n.switchSvc, ".service"), n.flakeDir, host)
}

// exitFired is confirmScript's exit status when the dead-man timer fired first.
const exitFired = 5

// confirmScript disarms the dead-man timer. It fails (exitFired) if the
// rollback already started. It then clears the finished switch unit.
func (n names) confirmScript() string {
	return strings.Join([]string{
		fmt.Sprintf("if systemctl is-active -q %[1]s; then systemctl stop %[1]s || exit 4; fi", n.rollbackTimer()),
		fmt.Sprintf(`if [ "$(systemctl show %s -p ActiveState --value)" != inactive ]; then echo "the dead-man rollback has already started" >&2; exit %d; fi`, n.rollbackSvc(), exitFired),
		fmt.Sprintf("systemctl stop %s >/dev/null 2>&1; true", n.switchSvc),
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

// shq quotes s for the shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
