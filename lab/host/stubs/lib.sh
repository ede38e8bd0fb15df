# lib.sh: shared by the lab host's stub programs; see package host.
# The host writes this file as <root>/lab/lib.sh, after a first line that
# sets R to the host's root directory.
#
# The stubs stand in for NixOS on a machine that runs many lab hosts at
# once, so they keep their cost down: a process (a $(...), a pipe, an
# external program) costs far more than the shell's own builtins, so they
# read files with read, pick strings apart with parameter expansion, and
# hand results back in variables rather than through $(...).

set -u

PROFILES="$R/nix/var/nix/profiles"
PROFILE="$PROFILES/system"
UNITS="$R/run/systemd/transient"
JOURNAL="$R/var/log/journal"
EVENTS="$R/var/log/nest-lab/events.log"
LABRUN="$R/run/lab"
NL='
'
read -r HOST <"$R/etc/hostname"
read -r REALPATH <"$LABRUN/path"

# The stubs see the real filesystem: not the readlink and realpath stubs.
readlink() { PATH=$REALPATH command readlink "$@"; }
realpath() { PATH=$REALPATH command realpath "$@"; }

die() {
	printf '%s\n' "$*" >&2
	exit 1
}

# read_file FILE sets val to FILE's first line ("" if it cannot be read).
read_file() {
	val=
	read -r val 2>/dev/null <"$1" || :
}

# to_host P sets hp to P as a path on the real filesystem: NixOS paths
# under /nix, /run, /etc, /var and /root are this host's, under $R.
to_host() {
	case $1 in
	"$R" | "$R"/*) hp=$1 ;;
	/nix | /nix/* | /run | /run/* | /etc | /etc/* | /var | /var/* | /root | /root/*) hp=$R$1 ;;
	*) hp=$1 ;;
	esac
}

# to_nix P sets np to P as the host sees it (without $R).
to_nix() {
	case $1 in
	"$R"/*) np=${1#"$R"} ;;
	*) np=$1 ;;
	esac
}

# nixpath P prints P as the host sees it (without $R).
nixpath() {
	to_nix "$1"
	printf '%s\n' "$np"
}

# event NAME KEY=VALUE...: one timestamped line in the host's event log,
# written by date(1) itself (one process; a % in the line is doubled).
event() {
	_e=$*
	case $_e in *%*) _e=$(printf '%s\n' "$_e" | sed 's/%/%%/g') ;; esac
	date -u "+%Y-%m-%dT%H:%M:%S.%NZ $_e" >>"$EVENTS"
}

# faults loads the faults in force (LAB_* variables).
faults() {
	. "$LABRUN/faults"
}

# gen_of LINK sets gen to N for a profile link named system-N-link.
gen_of() {
	gen=${1##*/}
	gen=${gen#system-}
	gen=${gen%-link}
}

# current_gen sets gen to the generation the system profile points to.
current_gen() {
	gen_of "$(readlink "$PROFILE")"
}

# generations prints the profile's generation numbers, ascending.
generations() {
	for _l in "$PROFILES"/system-*-link; do
		[ -L "$_l" ] && gen_of "$_l" && printf '%s\n' "$gen"
	done | sort -n
}

# last_gen sets gen to the profile's newest generation ("" if none).
last_gen() {
	_max=
	for _l in "$PROFILES"/system-*-link; do
		[ -L "$_l" ] || continue
		gen_of "$_l"
		case $gen in '' | *[!0-9]*) continue ;; esac
		if [ -z "$_max" ] || [ "$gen" -gt "$_max" ]; then _max=$gen; fi
	done
	gen=$_max
}

# swaplink TARGET LINK atomically points LINK at TARGET.
swaplink() {
	ln -sfn "$1" "$2.new.$$" && mv -T "$2.new.$$" "$2"
}

# set_profile_gen N points the system profile at generation N.
set_profile_gen() {
	swaplink "system-$1-link" "$PROFILE"
}

# add_generation STORE (a host path) makes STORE the newest generation of
# the system profile, as nix-env --set does: a new system-N-link unless the
# newest generation already is STORE. Sets gen to N. It takes the
# profiles' lock (fd 9) for the while.
add_generation() {
	exec 9>"$PROFILES/.lock"
	flock 9
	last_gen
	if [ -z "$gen" ] || ! [ "$PROFILES/system-$gen-link" -ef "$1" ]; then
		gen=$((${gen:-0} + 1))
		ln -sfn "$1" "$PROFILES/system-$gen-link"
	fi
	set_profile_gen "$gen"
	exec 9>&-
}

# replace_e S sets val to S with every e made a z (nix's base-32 hashes
# have no e).
replace_e() {
	val=
	_s=$1
	while :; do
		case $_s in
		*e*) val=$val${_s%%e*}z; _s=${_s#*e} ;;
		*) val=$val$_s; return ;;
		esac
	done
}

# build_system REV VARIANT CONFIG [FLAKE]: "builds" a system closure for
# this host and sets store to its store path (a host path). VARIANT is "",
# activation-fails or degraded, and is baked into the closure. FLAKE (a host
# path) is the flake directory built from: the host's certificates there,
# FLAKE/<pki dir>/derived/<host>/*.crt and *.key.age, are copied into the
# closure's lab-certs/ (as nix copies a flake's source to the store), and
# their content is part of the closure's hash.
build_system() {
	read_file "$LABRUN/nixos-version"
	_ver=$val
	_certs=
	if [ -n "${4:-}" ]; then
		read_file "$LABRUN/pki-dir"
		_certs="$4/$val/derived/$HOST"
		[ -d "$_certs" ] || _certs=
	fi
	_id="$HOST $1 $2 $3"
	if [ -n "$_certs" ]; then
		_sum=$(cd "$_certs" && for _f in *.crt *.key.age; do
			[ -f "$_f" ] && printf '%s\n' "$_f" && cat "$_f"
		done | sha256sum)
		_id="$_id ${_sum%% *}"
	fi
	_sum=$(printf '%s' "$_id" | sha256sum)
	_sum=${_sum%% *}
	replace_e "${_sum%????????????????????????????????}"
	store="$R/nix/store/$val-nixos-system-$HOST-$_ver"
	if [ ! -d "$store" ]; then
		_tmp="$store.tmp.$$"
		mkdir -p "$_tmp/bin"
		if [ -n "$_certs" ]; then
			mkdir "$_tmp/lab-certs"
			for _f in "$_certs"/*.crt "$_certs"/*.key.age; do
				[ -f "$_f" ] && cp "$_f" "$_tmp/lab-certs/"
			done
		fi
		printf '%s\n' "$_ver" >"$_tmp/nixos-version"
		printf '%s\n' "$1" >"$_tmp/configuration-revision"
		printf '%s\n' "$2" >"$_tmp/lab-variant"
		printf '%s\n' "$3" >"$_tmp/lab-configuration"
		to_nix "$store"
		printf '#!/bin/sh\nexec %s %s "$@"\n' "'$R/lab/bin/lab-activate'" "'$np'" >"$_tmp/bin/switch-to-configuration"
		chmod 0755 "$_tmp/bin/switch-to-configuration"
		mv -T "$_tmp" "$store" 2>/dev/null || rm -rf "$_tmp"
	fi
}

# request_tailscaled WHAT asks the host to "restart SECS" or "stop" its
# tailscaled, and waits (at most 10 s) until it has gone down.
request_tailscaled() {
	printf '%s\n' "$1" >"$LABRUN/tailscaled.request.tmp.$$"
	mv "$LABRUN/tailscaled.request.tmp.$$" "$LABRUN/tailscaled.request"
	_i=0
	while [ -e "$LABRUN/tailscaled.request" ] && [ "$_i" -lt 200 ]; do
		sleep 0.05
		_i=$((_i + 1))
	done
}

# --- units (systemd-run, systemctl) ---

# lock_units and unlock_units take and release the lock on the units'
# state (fd 8). Closing the descriptor releases it: no process for that.
lock_units() {
	exec 8>"$UNITS/.lock"
	flock 8
}
unlock_units() {
	exec 8>&-
}

# alive PID: whether process PID exists and is not a zombie.
alive() {
	_st=
	read -r _st 2>/dev/null <"/proc/$1/stat" || :
	_st=${_st##*) }
	case $_st in '' | Z* | X*) return 1 ;; esac
}

# to_unit NAME sets unit to NAME with a unit type (.service by default).
to_unit() {
	case $1 in
	*.service | *.timer | *.target | *.socket | *.mount | *.path | *.slice | *.scope) unit=$1 ;;
	*) unit=$1.service ;;
	esac
}

# unit_read UNIT reads a unit's state: a transient unit's file into
# unit_state (its KEY=VALUE lines, each after a newline), or, for a unit
# systemd-run did not start, unit_state empty and unit_system whether it
# is one of the current generation's running system units.
unit_read() {
	unit_name=$1 unit_state='' unit_system=0
	if [ -f "$UNITS/$1" ]; then
		while IFS= read -r _l; do
			unit_state=$unit_state$NL$_l
		done 2>/dev/null <"$UNITS/$1"
	fi
	[ -n "$unit_state" ] || ! system_unit_active "$1" || unit_system=1
}

# unit_val KEY sets val to KEY of the unit unit_read read: its last value
# in a transient unit's state, or what systemd shows for a unit it does
# not know.
unit_val() {
	if [ -n "$unit_state" ]; then
		case $unit_state in
		*"$NL$1="*)
			val=${unit_state##*"$NL$1="}
			val=${val%%"$NL"*} ;;
		*) val= ;;
		esac
		return
	fi
	case $1 in
	Id) val=$unit_name ;;
	LoadState) if [ "$unit_system" = 1 ]; then val=loaded; else val=not-found; fi ;;
	ActiveState) if [ "$unit_system" = 1 ]; then val=active; else val=inactive; fi ;;
	SubState) if [ "$unit_system" = 1 ]; then val=running; else val=dead; fi ;;
	Result) val=success ;;
	ExecMainStatus | MainPID | ExecMainPID | ExecMainCode) val=0 ;;
	*) val= ;;
	esac
}

# unit_get UNIT KEY sets val to KEY of UNIT (see unit_val).
unit_get() {
	unit_read "$1"
	unit_val "$2"
}

# unit_set UNIT KEY=VALUE...: update a transient UNIT's state (atomically:
# written aside, then renamed).
unit_set() {
	_u=$1
	shift
	_t="$UNITS/.$_u.$$"
	{
		if [ -f "$UNITS/$_u" ]; then
			while IFS= read -r _l; do
				for _kv in "$@"; do
					[ "${_l%%=*}" != "${_kv%%=*}" ] || continue 2
				done
				printf '%s\n' "$_l"
			done 2>/dev/null <"$UNITS/$_u"
		fi
		printf '%s\n' "$@"
	} >"$_t"
	mv "$_t" "$UNITS/$_u"
}

# system_unit_active UNIT: whether UNIT is one of the current generation's
# running system units.
system_unit_active() {
	while IFS= read -r _s; do
		[ "$_s" != "$1" ] || return 0
	done 2>/dev/null <"$LABRUN/units"
	return 1
}

# unit_failed FILE: whether the transient unit state in FILE is failed.
unit_failed() {
	while IFS= read -r _l; do
		[ "$_l" != ActiveState=failed ] || return 0
	done 2>/dev/null <"$1"
	return 1
}

# degraded: whether the system is degraded (its generation is, or a unit
# has failed).
degraded() {
	read_file "$R/run/current-system/lab-variant"
	[ "$val" != degraded ] || return 0
	for _f in "$UNITS"/*.service; do
		[ -f "$_f" ] && unit_failed "$_f" && return 0
	done
	return 1
}

# span_seconds SPAN sets secs to a systemd time span (120, 120s, 2min,
# 500ms, 1h, "1min 30s") in seconds, with three decimals ("bad" if it is
# not one). Whole seconds and milliseconds need no process.
span_seconds() {
	case $1 in
	'' | *[!0-9]*) ;;
	*) secs=$1.000; return ;;
	esac
	case $1 in
	*[!0-9]*s | s) ;;
	*s) secs=${1%s}.000; return ;;
	esac
	case $1 in
	*[!0-9]*ms | ms) ;;
	*ms)
		_ms=${1%ms}
		_ms=${_ms#"${_ms%%[!0]*}"}
		_ms=${_ms:-0}
		_frac=$((_ms % 1000))
		case $_frac in ? ) _frac=00$_frac ;; ?? ) _frac=0$_frac ;; esac
		secs=$((_ms / 1000)).$_frac
		return ;;
	esac
	secs=$(printf '%s\n' "$1" | awk '{
		total = 0
		s = $0
		while (match(s, /[0-9.]+[ ]*[a-z]*/)) {
			tok = substr(s, RSTART, RLENGTH)
			s = substr(s, RSTART + RLENGTH)
			n = tok; sub(/[ ]*[a-z]*$/, "", n)
			u = tok; sub(/^[0-9.]+[ ]*/, "", u)
			if (u == "" || u == "s" || u == "sec" || u == "second" || u == "seconds") m = 1
			else if (u == "ms" || u == "msec") m = 0.001
			else if (u == "us" || u == "usec") m = 0.000001
			else if (u == "m" || u == "min" || u == "minute" || u == "minutes") m = 60
			else if (u == "h" || u == "hr" || u == "hour" || u == "hours") m = 3600
			else if (u == "d" || u == "day" || u == "days") m = 86400
			else { print "bad"; exit 1 }
			total += n * m
		}
		printf "%.3f\n", total
	}')
}
