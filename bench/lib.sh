# Sourced by the bench scripts. summary MEASURE RESULT GOAL VERDICT appends
# one row to $BENCH_SUMMARY (bench/run collects them into one table).
summary() {
  [ -n "${BENCH_SUMMARY:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$BENCH_SUMMARY"
}
# verdict OK: "met" or "NOT met" from an awk condition's 1 or 0.
verdict() { if [ "$1" = 1 ]; then echo met; else echo "NOT met"; fi; }
# need COMMAND:PACKAGE...: installs (Debian) the packages of the commands missing.
need() {
  local missing=() c
  for c in "$@"; do command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c#*:}"); done
  ((${#missing[@]})) || return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
