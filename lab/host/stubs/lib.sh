# lib.sh: shared by the lab host's stub programs; see package host.
# The host writes this file as <root>/lab/lib.sh, after a first line that
# sets R to the host's root directory.

set -u

PROFILES="$R/nix/var/nix/profiles"
PROFILE="$PROFILES/system"
UNITS="$R/run/systemd/transient"
JOURNAL="$R/var/log/journal"
EVENTS="$R/var/log/nest-lab/events.log"
LABRUN="$R/run/lab"
HOST=$(cat "$R/etc/hostname")
REALPATH=$(cat "$LABRUN/path")

# The stubs see the real filesystem: not the readlink and realpath stubs.
readlink() { PATH=$REALPATH command readlink "$@"; }
realpath() { PATH=$REALPATH command realpath "$@"; }

die() {
	printf '%s\n' "$*" >&2
	exit 1
}

# hostpath P prints P as a path on the real filesystem: NixOS paths under
# /nix, /run, /etc, /var and /root are this host's, under $R.
hostpath() {
	case $1 in
	"$R" | "$R"/*) printf '%s\n' "$1" ;;
	/nix | /nix/* | /run | /run/* | /etc | /etc/* | /var | /var/* | /root | /root/*)
		printf '%s%s\n' "$R" "$1" ;;
	*) printf '%s\n' "$1" ;;
	esac
}

# nixpath P prints P as the host sees it (without $R).
nixpath() {
	case $1 in
	"$R"/*) printf '%s\n' "${1#"$R"}" ;;
	*) printf '%s\n' "$1" ;;
	esac
}

now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }

# event NAME KEY=VALUE...: one timestamped line in the host's event log.
event() {
	printf '%s %s\n' "$(now)" "$*" >>"$EVENTS"
}

# locked FILE CMD...: run CMD holding an exclusive lock on FILE.
locked() {
	_lock=$1
	shift
	flock "$_lock" "$@"
}

# faults loads the faults in force (LAB_* variables).
faults() {
	. "$LABRUN/faults"
}

# gen_of LINK prints N for a profile link named system-N-link.
gen_of() {
	_n=${1##*/}
	_n=${_n#system-}
	printf '%s\n' "${_n%-link}"
}

# current_gen prints the generation the system profile points to.
current_gen() {
	gen_of "$(readlink "$PROFILE")"
}

# generations prints the profile's generation numbers, ascending.
generations() {
	for _l in "$PROFILES"/system-*-link; do
		[ -L "$_l" ] && gen_of "$_l"
	done | sort -n
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
# newest generation already is STORE. Prints N.
add_generation() {
	_last=$(generations | tail -n 1)
	if [ -n "$_last" ] && [ "$(readlink "$PROFILES/system-$_last-link")" = "$1" ]; then
		_n=$_last
	else
		_n=$((${_last:-0} + 1))
		ln -sfn "$1" "$PROFILES/system-$_n-link"
	fi
	set_profile_gen "$_n"
	printf '%s\n' "$_n"
}

# build_system REV VARIANT CONFIG [FLAKE]: "builds" a system closure for
# this host and prints its store path (a host path). VARIANT is "",
# activation-fails or degraded, and is baked into the closure. FLAKE (a host
# path) is the flake directory built from: the host's certificates there,
# FLAKE/<pki dir>/derived/<host>/*.crt and *.key.age, are copied into the
# closure's lab-certs/ (as nix copies a flake's source to the store), and
# their content is part of the closure's hash.
build_system() {
	_ver=$(cat "$LABRUN/nixos-version")
	_certs=
	if [ -n "${4:-}" ]; then
		_certs="$4/$(cat "$LABRUN/pki-dir")/derived/$HOST"
		[ -d "$_certs" ] || _certs=
	fi
	_id="$HOST $1 $2 $3"
	if [ -n "$_certs" ]; then
		_id="$_id $(cd "$_certs" && for _f in *.crt *.key.age; do
			[ -f "$_f" ] && printf '%s\n' "$_f" && cat "$_f"
		done | sha256sum | cut -c1-64)"
	fi
	_hash=$(printf '%s' "$_id" | sha256sum | cut -c1-32 | tr e z)
	_store="$R/nix/store/$_hash-nixos-system-$HOST-$_ver"
	if [ ! -d "$_store" ]; then
		mkdir -p "$_store.tmp.$$/bin"
		if [ -n "$_certs" ]; then
			mkdir -p "$_store.tmp.$$/lab-certs"
			for _f in "$_certs"/*.crt "$_certs"/*.key.age; do
				[ -f "$_f" ] && cp "$_f" "$_store.tmp.$$/lab-certs/"
			done
		fi
		printf '%s\n' "$_ver" >"$_store.tmp.$$/nixos-version"
		printf '%s\n' "$1" >"$_store.tmp.$$/configuration-revision"
		printf '%s\n' "$2" >"$_store.tmp.$$/lab-variant"
		printf '%s\n' "$3" >"$_store.tmp.$$/lab-configuration"
		cat >"$_store.tmp.$$/bin/switch-to-configuration" <<-STC
			#!/bin/sh
			exec '$R/lab/bin/lab-activate' '$(nixpath "$_store")' "\$@"
		STC
		chmod 0755 "$_store.tmp.$$/bin/switch-to-configuration"
		mv -T "$_store.tmp.$$" "$_store" 2>/dev/null || rm -rf "$_store.tmp.$$"
	fi
	printf '%s\n' "$_store"
}

# current_system prints the store path (a host path) of run/current-system.
current_system() {
	readlink "$R/run/current-system"
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

# alive PID: whether process PID exists and is not a zombie.
alive() {
	[ -r "/proc/$1/stat" ] || return 1
	_st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$_st" ] && [ "$_st" != Z ] && [ "$_st" != X ]
}

unitname() {
	case $1 in
	*.service | *.timer | *.target | *.socket | *.mount | *.path | *.slice | *.scope) printf '%s\n' "$1" ;;
	*) printf '%s.service\n' "$1" ;;
	esac
}

# unit_get UNIT KEY prints KEY of a transient UNIT's state, or the value
# systemd shows for a unit it does not know.
unit_get() {
	if [ -f "$UNITS/$1" ]; then
		sed -n "s/^$2=//p" "$UNITS/$1" | tail -n 1
		return
	fi
	case $2 in
	Id) printf '%s\n' "$1" ;;
	LoadState) if system_unit_active "$1"; then echo loaded; else echo not-found; fi ;;
	ActiveState) if system_unit_active "$1"; then echo active; else echo inactive; fi ;;
	SubState) if system_unit_active "$1"; then echo running; else echo dead; fi ;;
	Result) echo success ;;
	ExecMainStatus | MainPID | ExecMainPID | ExecMainCode) echo 0 ;;
	*) echo ;;
	esac
}

# unit_set UNIT KEY=VALUE...: update a transient UNIT's state (atomically).
unit_set() {
	_u=$1
	shift
	_f="$UNITS/$_u"
	_t="$UNITS/.$_u.$$"
	[ -f "$_f" ] && cp "$_f" "$_t" || : >"$_t"
	for _kv in "$@"; do
		_k=${_kv%%=*}
		grep -v "^$_k=" "$_t" >"$_t.x" || :
		printf '%s\n' "$_kv" >>"$_t.x"
		mv "$_t.x" "$_t"
	done
	mv "$_t" "$_f"
}

# system_unit_active UNIT: whether UNIT is one of the current generation's
# running system units.
system_unit_active() {
	grep -qx "$1" "$LABRUN/units" 2>/dev/null
}

# degraded: whether the system is degraded (its generation is, or a unit
# has failed).
degraded() {
	_cur=$(current_system)
	[ "$(cat "$_cur/lab-variant" 2>/dev/null)" = degraded ] && return 0
	grep -lqx 'ActiveState=failed' "$UNITS"/*.service 2>/dev/null
}

# span_seconds SPAN converts a systemd time span (120, 120s, 2min, 500ms,
# 1h, "1min 30s") to seconds.
span_seconds() {
	printf '%s\n' "$1" | awk '{
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
	}'
}
