package rollout

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The command lines the bot runs on a host. Each is safe to run again after
// a connection broke mid-way (the bot cannot know how far it got): every
// step that changes the host checks first whether it was done. Everything
// that needs root runs as a systemd transient unit of the system manager
// (so it outlives the session that started it, and a restart of sshd or
// tailscaled cannot kill it), named by the revision's first 12 characters:
//
//	nest-build-<rev>.service     nix build of the toplevel, bounded by build_timeout
//	nest-rollback-<rev>.timer    the dead-man: fires confirm_within after arming unless stopped
//	nest-rollback-<rev>.service  the rollback it (or the bot, at once) starts
//	nest-activate-<rev>.service  <toplevel>/bin/switch-to-configuration test
//	nest-boot-<rev>.service      nix-env --set the system profile, switch-to-configuration boot
//
// Each unit's ExecStopPost writes systemd's $SERVICE_RESULT, $EXIT_CODE and
// $EXIT_STATUS to <run dir>/<step>.result: switch-to-configuration calls
// reset-failed, and --collect unloads a unit as soon as it ends, so the
// unit itself cannot say afterwards how it ended.
//
// On the host, nestbot keeps (StateDir, which the NixOS module creates,
// owned by the deploy user):
//
//	/var/lib/nestbot/src/.git        the shipped commits, a shallow git repository (refs/nest/<rev>)
//	/var/lib/nestbot/deployed        "<commit> <toplevel>": what nestbot confirmed last
//	/var/lib/nestbot/run/<rev>/      one rollout's files: toplevel (the build's out-link),
//	                                 previous (what /run/current-system and the system profile
//	                                 were before), previous-root (a GC root for it),
//	                                 failed-before (units failed before activating), *.result
//
// A login user other than root runs the units' systemd-run and systemctl
// through sudo, by the rules SudoRules gives.

// StateDir is where nestbot keeps its files on a host.
const StateDir = "/var/lib/nestbot"

// Paths on the host, as NixOS lays them out.
const (
	profilePath       = "/nix/var/nix/profiles/system"
	currentSystemPath = "/run/current-system"
	bootedSystemPath  = "/run/booted-system"
	// lockPath is switch-to-configuration's lock: it takes it with
	// flock(LOCK_EX|LOCK_NB) and fails at once when it is held.
	lockPath = "/run/nixos/switch-to-configuration.lock"
	// SudoBinDir holds the programs the sudo rules name (NixOS's system
	// path; sudo compares a command's full path).
	SudoBinDir = "/run/current-system/sw/bin"

	srcRepo      = StateDir + "/src"
	deployedFile = StateDir + "/deployed"
)

var (
	validRevision = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	validHostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	validAttr     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_'-]{0,252}$`)
	validFlakeDir = regexp.MustCompile(`^[A-Za-z0-9._+/-]+$`)
	validUser     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

// SudoRules are the sudoers lines that let user run, without a password,
// what nestbot runs as root: systemd-run and systemctl, for units whose
// names start with nest-, and nix-store --serve --write (the remote end of
// nix copy, for build_on local). These amount to root on the host (a transient
// unit runs any command), as any deploy tool's rules do; what they buy is
// that every root command nestbot runs is a unit named nest-*, in the
// journal. The NixOS module (nix/module.nix) writes the same rules, from
// nix/sudo-commands.json, which go test ./nix -update-sudo writes from
// SudoCommands.
func SudoRules(user string) []string {
	var rules []string
	for _, c := range SudoCommands() {
		rules = append(rules, fmt.Sprintf("%s ALL=(root) NOPASSWD: %s", user, c))
	}
	return rules
}

// SudoCommands are the commands (with sudo's wildcards) of SudoRules.
func SudoCommands() []string {
	return []string{
		SudoBinDir + "/systemd-run --unit=nest-*",
		SudoBinDir + "/systemctl stop nest-*",
		SudoBinDir + "/systemctl reset-failed nest-*",
		// build_on local: nix copy's remote end (the ssh:// store's).
		SudoBinDir + "/nix-store --serve --write",
	}
}

// names are the host-side names one rollout uses.
type names struct {
	rev      string
	short    string // the unit names' revision part
	run      string // the run directory
	flakeDir string // the flake's directory in the repository ("." for the root)
	root     rootCmds
}

// rootCmds are the command prefixes that run systemd-run and systemctl as
// root: directly, or through sudo.
type rootCmds struct{ run, ctl string }

func newRootCmds(user string) rootCmds {
	if user == "" || user == "root" {
		return rootCmds{run: "systemd-run", ctl: "systemctl"}
	}
	return rootCmds{run: "sudo -n " + SudoBinDir + "/systemd-run", ctl: "sudo -n " + SudoBinDir + "/systemctl"}
}

func newNames(rev, flakeDir, user string) names {
	short := shortRev(rev)
	return names{rev: rev, short: short, run: StateDir + "/run/" + short, flakeDir: flakeDir, root: newRootCmds(user)}
}

// Steps that run as units.
const (
	stepBuild    = "build"
	stepActivate = "activate"
	stepRollback = "rollback"
	stepBoot     = "boot"
)

func (n names) unit(step string) string   { return "nest-" + step + "-" + n.short + ".service" }
func (n names) timer() string             { return "nest-" + stepRollback + "-" + n.short + ".timer" }
func (n names) result(step string) string { return n.run + "/" + step + ".result" }

// shortRev is the revision as unit names and messages show it.
func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// shq quotes s for the POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// startUnit is the systemd-run command line that starts step's unit with
// argv, its result recorded by ExecStopPost. opts are more systemd-run
// options. The unit gets the login shell's PATH (nix, git and the NixOS
// tools are on it).
//
// No command line given to systemd-run may hold a "$": systemd writes a
// transient unit into a file, escaping "$" as "\$", which it does not read
// back as "$" when a daemon-reload (every switch-to-configuration does
// one) loads the file again. So what needs the shell runs from the helper
// scripts (helpers), with its arguments expanded before systemd-run sees
// them.
func (n names) startUnit(step string, opts []string, argv ...string) string {
	record := "-pExecStopPost=/bin/sh " + n.run + "/record.sh " + step
	parts := []string{n.root.run, "--unit=" + n.unit(step), "--collect", "--quiet", shq(record), `"--setenv=PATH=$PATH"`}
	parts = append(parts, opts...)
	parts = append(parts, "--", "/bin/sh", n.run+"/run.sh", step)
	parts = append(parts, argv...)
	return strings.Join(parts, " ")
}

// helpers writes the scripts the units run into the run directory:
//
//	run.sh STEP CMD  the unit's command: runs CMD, writes how it exited to STEP.result
//	record.sh STEP   ExecStopPost: systemd's $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS to STEP.result
//	                 (what systemd saw, a timeout or a signal too), after run.sh
//	keep.sh PATH     a GC root for the system that ran before
//	rollback.sh P G  the rollback (rollbackScript)
//	boot.sh T        nix-env --set the system profile to T, switch-to-configuration boot
func (n names) helpers() string {
	files := []struct{ name, body string }{
		{"record.sh", fmt.Sprintf(`echo "$SERVICE_RESULT $EXIT_CODE $EXIT_STATUS" >"%[1]s/$1.result.part" && mv "%[1]s/$1.result.part" "%[1]s/$1.result"`, n.run)},
		// The unit's own command, which records its exit status too: under
		// load, systemd in a container can fail to start ExecStopPost's
		// process (status 219/CGROUP), and then only this says how it ended.
		{"run.sh", fmt.Sprintf(`step=$1; shift; "$@"; st=$?; r=exit-code; [ $st = 0 ] && r=success; echo "$r exited $st" >"%[1]s/$step.result.part" && mv "%[1]s/$step.result.part" "%[1]s/$step.result"; exit $st`, n.run)},
		{"keep.sh", fmt.Sprintf(`exec nix-store --add-root %s/previous-root --realise "$1" >/dev/null`, n.run)},
		{"rollback.sh", n.rollbackScript()},
		{"boot.sh", fmt.Sprintf(`nix-env -p %s --set "$1" && exec "$1/bin/switch-to-configuration" boot`, profilePath)},
	}
	lines := []string{"mkdir -p " + n.run}
	for _, f := range files {
		p := n.run + "/" + f.name
		lines = append(lines, fmt.Sprintf("cat >%s.part <<'NESTBOT_EOF'\n%s\nNESTBOT_EOF\nmv %s.part %s", p, f.body, p, p))
	}
	return strings.Join(lines, "\n")
}

// unitActive is a shell test: the unit is starting, running or stopping.
func unitActive(unit string) string {
	return fmt.Sprintf(`case $(systemctl show -p ActiveState --value %s) in active|activating|deactivating|reloading|refreshing) true;; *) false;; esac`, unit)
}

// flakeRef is the shipped commit as nix fetches it: the git repository on
// the host, at the revision (so the flake's self.rev is the commit), with
// the flake in dir. The repository is shallow (each shipped commit without
// its history), which nix must be told.
func (n names) flakeRef(repo string) string {
	ref := "git+file://" + repo + "?rev=" + n.rev + "&shallow=1"
	if n.flakeDir != "." {
		ref += "&dir=" + n.flakeDir
	}
	return ref
}

// toplevelAttr is the flake output a host's system is.
func toplevelAttr(attr string) string {
	return `nixosConfigurations."` + attr + `".config.system.build.toplevel`
}

// nixFlags are the flags every nix command line gets: flakes and the nix
// command are experimental in the nix releases NixOS still ships.
const nixFlags = "--extra-experimental-features 'nix-command flakes'"

// shipScript receives the commit as a git pack on stdin into the host's
// repository, marks it shallow and names it refs/nest/<rev>. The ref is
// written last: a commit whose ref exists is complete. It also drops the
// run directories of all but the newest rollouts.
func (n names) shipScript() string {
	return strings.Join([]string{
		"set -e",
		// The NixOS module makes StateDir the deploy user's; without it,
		// nestbot makes it so itself, through a unit.
		fmt.Sprintf(`[ -w %[1]s ] || { [ -e %[1]s ] && [ "$(id -u)" = 0 ]; } || %[2]s --unit=nest-setup-%[3]s --wait --quiet -- install -d -m 0755 -o "$(id -un)" %[1]s %[1]s/run`, StateDir, n.root.run, n.short),
		fmt.Sprintf("r=%s; mkdir -p %s/run %s", srcRepo, StateDir, n.run),
		`[ -d "$r/.git" ] || git init -q "$r"`,
		`git -C "$r" unpack-objects -q`,
		fmt.Sprintf(`grep -qx %[1]s "$r/.git/shallow" 2>/dev/null || echo %[1]s >>"$r/.git/shallow"`, n.rev),
		fmt.Sprintf(`git -C "$r" update-ref refs/nest/%[1]s %[1]s`, n.rev),
		fmt.Sprintf(`git -C "$r" update-ref refs/heads/nest %s`, n.rev),
		`git -C "$r" symbolic-ref HEAD refs/heads/nest`,
		fmt.Sprintf(`cd %s/run && ls -1t | tail -n +6 | while read -r old; do [ "$old" = %s ] || rm -rf -- "$old"; done`, StateDir, n.short),
	}, "\n")
}

// buildScript starts the build of the host's toplevel, detached, bounded
// by timeout, unless it is running or has succeeded. With store set (a
// system built where nestbot runs and copied here), it only registers
// that path: the out-link makes it a GC root.
//
// The build runs as root and reads the repository the deploy user owns:
// git refuses a repository of another user unless it is a safe.directory
// (given through GIT_CONFIG_*, which counts as command-line configuration).
func (n names) buildScript(attr, store string, timeout time.Duration) string {
	what := shq(n.flakeRef(srcRepo) + "#" + toplevelAttr(attr))
	if store != "" {
		what = shq(store)
	}
	opts := []string{"--service-type=exec", fmt.Sprintf("-pRuntimeMaxSec=%dms", timeout.Milliseconds()),
		"--setenv=GIT_CONFIG_COUNT=1", "--setenv=GIT_CONFIG_KEY_0=safe.directory", "--setenv=GIT_CONFIG_VALUE_0=" + srcRepo}
	return strings.Join([]string{
		n.helpers(),
		fmt.Sprintf(`if %s; then exit 0; fi`, unitActive(n.unit(stepBuild))),
		fmt.Sprintf(`if [ "$(cat %s 2>/dev/null)" = "success exited 0" ] && [ -e %s/toplevel ]; then exit 0; fi`, n.result(stepBuild), n.run),
		fmt.Sprintf("rm -f %s %s/toplevel", n.result(stepBuild), n.run),
		n.startUnit(stepBuild, opts, "nix", nixFlags, "build", "--out-link", n.run+"/toplevel", what) + " || exit 4",
	}, "\n")
}

// Exit statuses of armScript.
const (
	exitArmFailed    = 3 // nothing armed, nothing activated
	exitActivateFail = 5 // armed; the activation did not start
	exitFiredAlready = 6 // the dead-man rollback already ran for this attempt
)

// armScript arms the dead-man rollback to what the host runs now, then,
// only if that worked, starts the trial activation of the built toplevel
// (switch-to-configuration test: the boot default stays what it was). It
// prints "armed" and "started" as it goes.
//
// The first attempt (again false) clears what an earlier attempt at this
// revision left. A later one (again true: the connection broke and the bot
// cannot know how far the first got) arms and starts only what is not
// there yet, looking at each unit on its own, and keeps the rollback
// target the first attempt recorded.
func (n names) armScript(confirmWithin time.Duration, again bool) string {
	r := n.root
	var lines []string
	lines = append(lines, "set -u", "d="+n.run,
		fmt.Sprintf(`T=$(readlink "$d/toplevel") || { echo "no built system in $d/toplevel" >&2; exit %d; }`, exitArmFailed),
		// One attempt at a time: a later attempt waits for an earlier one
		// that may still run (its session died, not it), then looks.
		fmt.Sprintf(`exec 8>>"$d/arm.lock" && flock 8 || exit %d`, exitArmFailed),
		n.helpers())
	if !again {
		lines = append(lines,
			fmt.Sprintf("%s stop %s %s >/dev/null 2>&1", r.ctl, n.timer(), n.unit(stepRollback)),
			fmt.Sprintf("%s reset-failed %s %s %s >/dev/null 2>&1", r.ctl, n.unit(stepRollback), n.unit(stepActivate), n.unit(stepBoot)),
			`rm -f "$d/previous" "$d/failed-before" "$d/running-before" "$d/activate.result" "$d/rollback.result" "$d/boot.result"`)
	}
	lines = append(lines,
		// Someone else's activation (a hand-run nixos-rebuild) holds the lock:
		// wait for it, so that what runs now is what it left.
		fmt.Sprintf(`if [ -e %[1]s ] && ! flock -w 60 %[1]s true; then echo "another activation holds %[1]s" >&2; exit %[2]d; fi`, lockPath, exitArmFailed),
		`if [ ! -s "$d/previous" ]; then`,
		fmt.Sprintf(`  P=$(readlink %s) && G=$(readlink %s) || exit %d`, currentSystemPath, profilePath, exitArmFailed),
		`  systemctl list-units --state=failed --plain --no-legend --no-pager >"$d/failed-before.part" && mv "$d/failed-before.part" "$d/failed-before"`,
		`  { `+runningServices+`; } >"$d/running-before.part" && mv "$d/running-before.part" "$d/running-before"`,
		`  printf '%s\n%s\n' "$P" "$G" >"$d/previous.part" && mv "$d/previous.part" "$d/previous" || exit `+fmt.Sprint(exitArmFailed),
		`fi`,
		`{ read -r P; read -r G; } <"$d/previous"`,
		fmt.Sprintf(`if [ -e "$d/rollback.result" ]; then echo "the dead-man rollback already ran" >&2; exit %d; fi`, exitFiredAlready),
		fmt.Sprintf(`if ! %s && ! %s; then`, unitActive(n.timer()), unitActive(n.unit(stepRollback))),
		"  "+n.startUnit(stepRollback, []string{fmt.Sprintf("--on-active=%dms", confirmWithin.Milliseconds()), "--timer-property=AccuracySec=100ms"},
			"/bin/sh", n.run+"/rollback.sh", `"$P"`, `"$G"`)+fmt.Sprintf(" || exit %d", exitArmFailed),
		"fi",
		"echo armed",
		fmt.Sprintf(`if ! %s && [ ! -e "$d/activate.result" ]; then`, unitActive(n.unit(stepActivate))),
		// The system that ran before is kept from the garbage collector
		// (it may be in no generation: a hand-run nixos-rebuild test).
		"  "+n.startUnit(stepActivate, []string{"--service-type=exec", `"-pExecStartPre=/bin/sh $d/keep.sh $P"`},
			`"$T/bin/switch-to-configuration"`, "test")+fmt.Sprintf(" || exit %d", exitActivateFail),
		"fi",
		"echo started")
	return strings.Join(lines, "\n")
}

// rollbackScript is what nest-rollback-<rev>.service runs, as root, with
// the system that ran before as $1 and the system profile's link then
// (system-N-link) as $2. It never stops an activation: it waits for the
// trial activation's unit to end, and for the activation lock, then puts
// the system profile back if it moved (and the boot default with it), and
// activates the system that ran before.
func (n names) rollbackScript() string {
	return strings.Join([]string{
		`P=$1 G=$2 i=0`,
		fmt.Sprintf(`while %s && [ $i -lt 3600 ]; do i=$((i+1)); sleep 1; done`, unitActive(n.unit(stepActivate))),
		fmt.Sprintf(`if [ "$(readlink %[1]s)" != "$G" ]; then g=${G#system-}; nix-env -p %[1]s --switch-generation "${g%%-link}" && %[1]s/bin/switch-to-configuration boot || exit 1; fi`, profilePath),
		`mkdir -p /run/nixos; t=0`,
		fmt.Sprintf(`until flock -w 600 %s true && "$P/bin/switch-to-configuration" test; do t=$((t+1)); [ $t -lt 3 ] || exit 1; done`, lockPath),
	}, "\n")
}

// rollbackNowScript rolls back at once: it stops the timer and starts the
// rollback unit itself, unless the timer already did.
func (n names) rollbackNowScript() string {
	return strings.Join([]string{
		"d=" + n.run,
		n.helpers(),
		`{ read -r P; read -r G; } <"$d/previous" || { echo "no rollback target in $d/previous" >&2; exit 4; }`,
		fmt.Sprintf("%s stop %s >/dev/null 2>&1", n.root.ctl, n.timer()),
		fmt.Sprintf(`if %s || [ -e "$d/rollback.result" ]; then exit 0; fi`, unitActive(n.unit(stepRollback))),
		n.startUnit(stepRollback, nil, "/bin/sh", n.run+"/rollback.sh", `"$P"`, `"$G"`) + " || exit 4",
	}, "\n")
}

// exitFired is confirmScript's exit status when the dead-man timer fired first.
const exitFired = 5

// confirmScript disarms the dead-man timer. It fails (exitFired) if the
// rollback has already started.
func (n names) confirmScript() string {
	return strings.Join([]string{
		fmt.Sprintf("%s stop %s >/dev/null 2>&1", n.root.ctl, n.timer()),
		fmt.Sprintf(`if %s || [ -e %s ]; then echo "the dead-man rollback has already started" >&2; exit %d; fi`, unitActive(n.unit(stepRollback)), n.result(stepRollback), exitFired),
	}, "\n")
}

// bootScript makes the built toplevel the boot default, as nixos-rebuild
// switch does after activating: nix-env --set the system profile, then
// switch-to-configuration boot, in a unit; unless that already succeeded.
func (n names) bootScript() string {
	return strings.Join([]string{
		"d=" + n.run,
		n.helpers(),
		`T=$(readlink "$d/toplevel") || exit 4`,
		fmt.Sprintf(`if %s || [ "$(cat %s 2>/dev/null)" = "success exited 0" ]; then exit 0; fi`, unitActive(n.unit(stepBoot)), n.result(stepBoot)),
		fmt.Sprintf("rm -f %s", n.result(stepBoot)),
		n.startUnit(stepBoot, []string{"--service-type=exec"}, "/bin/sh", n.run+"/boot.sh", `"$T"`) + " || exit 4",
	}, "\n")
}

// recordScript writes what the host now runs and boots, and the commit it
// was built from, to the deployed file.
func (n names) recordScript() string {
	return fmt.Sprintf(`T=$(readlink %s/toplevel) && printf '%%s %%s\n' %s "$T" >%s.part && mv %s.part %s`, n.run, n.rev, deployedFile, deployedFile, deployedFile)
}

// runningServices prints a line for each service that runs, is starting,
// stopping or waiting to restart (nestbot's own and the logins' left out),
// with when it last started: a service started again since prints another
// line. The arm step keeps them as running-before.
const runningServices = `u=$(systemctl list-units --type=service --state=running,activating,reloading,deactivating,auto-restart --plain --no-legend --no-pager | ` +
	`awk '{ u = $1; if (u == "●" || u == "*") u = $2; print u }' | grep -Ev '^(user@|user-runtime-dir@|nest-(build|activate|rollback|boot|setup)-)'); ` +
	`[ -z "$u" ] || systemctl show --no-pager -p Id -p InactiveExitTimestampMonotonic $u | awk 'BEGIN { RS = "" } { $1 = $1; print }'`

// healthScript waits (for at most about 20 s) until systemd has no jobs
// left, then, if a service runs that was not running before the
// activation or started again since (a service that starts and fails a
// moment later, or crash-loops, shows by then), for settle; then lists
// the units that failed or are waiting to restart, and those that had
// failed before the activation. Where nothing was started, nothing can
// fail a moment after its start, and there is nothing to wait for; where
// running-before is missing (armed by an older nestbot), it waits.
func (n names) healthScript(settle time.Duration) string {
	return strings.Join([]string{
		`i=0; while [ -n "$(systemctl list-jobs --no-legend --no-pager 2>/dev/null)" ] && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.2; done`,
		fmt.Sprintf(`if [ -r %s/running-before ]; then started=$(`+runningServices+` | grep -vxF -f %s/running-before); else started=unknown; fi`, n.run, n.run),
		fmt.Sprintf(`[ -n "$(systemctl list-jobs --no-legend --no-pager 2>/dev/null)" ] || [ -z "$started" ] || sleep %.1f`, settle.Seconds()),
		`echo @started; printf '%s\n' "$started"`,
		`echo @jobs; systemctl list-jobs --no-legend --no-pager`,
		`echo @failed; systemctl list-units --state=failed --plain --no-legend --no-pager`,
		`echo @restarting; systemctl list-units --state=auto-restart --plain --no-legend --no-pager`,
		fmt.Sprintf(`echo @before; cat %s/failed-before 2>/dev/null`, n.run),
		`echo @end`,
	}, "\n")
}

// journalTail prints the last lines a unit logged, if the login user may
// read the system journal (the NixOS module puts it in systemd-journal).
func journalTail(unit string) string {
	return fmt.Sprintf("journalctl -u %s -n 15 --no-pager -o cat 2>/dev/null | tail -n 15", unit)
}
