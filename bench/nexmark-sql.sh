#!/usr/bin/env bash
# Runs every Nexmark query of examples/nexmark/ through `sluice sql -f` on the embedded local
# mode and prints events/s per query (all events of the three tables, over the wall time of
# the whole script, planning included).
#
#   bench/nexmark-sql.sh EVENTS PARALLELISM [QUERY...]
#
# EVENTS replaces the files' `'events' = '10000000'`; the rate stays the generator's default.
# Queries that do not run yet are reported as FAILED with the first line of their error.
# The `sluice` binary is built in release mode once (CARGO_TARGET_DIR is honoured), unless
# SLUICE_BIN names one to use.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 EVENTS PARALLELISM [QUERY...]" >&2
  exit 2
fi
events=$1
parallelism=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}

if [[ -n ${SLUICE_BIN:-} ]]; then
  sluice=$SLUICE_BIN
else
  cargo build --release -q -p sluice-coordinator --bin sluice --manifest-path "$root/Cargo.toml"
  sluice=$target/release/sluice
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# q13's side input (keys 0..9999, as Flink's runner writes it) and q10's output directory.
mkdir -p /tmp/nexmark
[[ -f /tmp/nexmark/side_input.csv ]] || for k in $(seq 0 9999); do echo "$k,v$k"; done > /tmp/nexmark/side_input.csv

if [[ $# -gt 0 ]]; then
  queries=("$@")
else
  queries=()
  for f in "$root"/examples/nexmark/q*.sql; do queries+=("$(basename "$f" .sql)"); done
  IFS=$'\n' queries=($(printf '%s\n' "${queries[@]}" | sort -V)); unset IFS
fi

printf '%-6s %12s %14s  %s\n' query seconds events/s status
for q in "${queries[@]}"; do
  script=$work/$q.sql
  sed "s/'events' = '10000000'/'events' = '$events'/" "$root/examples/nexmark/$q.sql" > "$script"
  start=$(date +%s.%N)
  if "$sluice" sql -f "$script" --parallelism "$parallelism" --slots "$parallelism" \
      > "$work/$q.out" 2> "$work/$q.err"; then
    end=$(date +%s.%N)
    awk -v q="$q" -v s="$start" -v e="$end" -v n="$events" \
      'BEGIN { t = e - s; printf "%-6s %12.3f %14.0f  ok\n", q, t, n / t }'
  else
    printf '%-6s %12s %14s  FAILED: %s\n' "$q" - - "$(grep -m1 -i error "$work/$q.err" || head -1 "$work/$q.err")"
  fi
done
