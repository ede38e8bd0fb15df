# Sourced by the bench scripts. summary MEASURE RESULT GOAL VERDICT appends
# one row to $BENCH_SUMMARY (bench/run collects them into one table).
summary() {
  [ -n "${BENCH_SUMMARY:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$BENCH_SUMMARY"
}
# verdict OK: "met" or "NOT met" from an awk condition's 1 or 0.
verdict() { if [ "$1" = 1 ]; then echo met; else echo "NOT met"; fi; }
