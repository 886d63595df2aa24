#!/usr/bin/env bash
# Events/s of a Nexmark hopping-window aggregation (bids per auction, HOP 2 s / 10 s, COUNT and
# MAX into a blackhole sink) on a session cluster of real processes on loopback: one
# JobManager and TASKMANAGERS TaskManagers sharing PARALLELISM slots, against the same script
# on the embedded local mode. The cluster's time is the job's RUNNING → FINISHED span from the
# REST API (`/jobs/{id}` timestamps), so process start and registration are not counted.
#
#   bench/cluster-hop.sh EVENTS PARALLELISM TASKMANAGERS [TASKMANAGERS...]
#
# e.g. `bench/cluster-hop.sh 20000000 2 1 2` compares 1 TaskManager with 2 slots, 2 with one
# each, and local mode, at parallelism 2. The `sluice` binary is built in release mode once
# (CARGO_TARGET_DIR is honoured), unless SLUICE_BIN names one. Needs curl and jq.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 EVENTS PARALLELISM TASKMANAGERS [TASKMANAGERS...]" >&2
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
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

script=$work/hop.sql
cat > "$script" <<SQL
SET 'parallelism.default' = '$parallelism';
CREATE TABLE bid (
    auction  BIGINT,
    bidder  BIGINT,
    price  BIGINT,
    channel  VARCHAR,
    url  VARCHAR,
    dateTime  TIMESTAMP(3),
    extra  VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '$events');
CREATE TABLE hot (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
    bids BIGINT, max_price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO hot
SELECT auction, window_start, window_end, COUNT(*), MAX(price)
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
SQL

# Starts `sluice ARGS...` in the background; prints the address after "$2 listening on".
start() {
  local name=$1 prefix=$2
  shift 2
  "$sluice" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  for _ in $(seq 200); do
    local line
    line=$(grep -m1 "^$prefix listening on " "$work/$name.out" || true)
    if [[ -n $line ]]; then echo "${line#"$prefix listening on "}"; return; fi
    sleep 0.05
  done
  echo "$name did not start: $(cat "$work/$name.err")" >&2
  exit 1
}

printf '%-22s %10s %14s\n' setup seconds events/s
start_s=$(date +%s.%N)
"$sluice" sql -f "$script" --slots "$parallelism" > /dev/null 2> "$work/local.err"
end_s=$(date +%s.%N)
awk -v s="$start_s" -v e="$end_s" -v n="$events" -v p="$parallelism" \
  'BEGIN { t = e - s; printf "%-22s %10.3f %14.0f\n", "local p=" p, t, n / t }'

for tms in "$@"; do
  if (( parallelism % tms != 0 )); then
    echo "PARALLELISM ($parallelism) must divide among $tms TaskManagers" >&2
    exit 2
  fi
  pids=()
  rpc=$(start "jm-$tms" rpc jobmanager --rpc-port 0 --rest-port 0)
  rest=$(grep -m1 '^rest listening on ' "$work/jm-$tms.out" | sed 's/^rest listening on //')
  for _ in $(seq 100); do [[ -n $rest ]] && break; sleep 0.05
    rest=$(grep -m1 '^rest listening on ' "$work/jm-$tms.out" | sed 's/^rest listening on //'); done
  for i in $(seq "$tms"); do
    start "tm-$tms-$i" rpc taskmanager --jobmanager "$rpc" --slots $((parallelism / tms)) \
      --rpc-port 0 --data-port 0 > /dev/null
  done
  until [[ $(curl -s "http://$rest/overview" | jq '.["slots-total"]') == "$parallelism" ]]; do sleep 0.05; done
  id=$("$sluice" submit "$script" --jobmanager "http://$rest")
  while :; do
    state=$(curl -s "http://$rest/jobs/$id" | jq -r .state)
    case $state in
      FINISHED) break ;;
      FAILED|CANCELED) echo "job $state: $(curl -s "http://$rest/jobs/$id" | jq -r '.["failure-cause"]')" >&2; exit 1 ;;
    esac
    sleep 0.05
  done
  curl -s "http://$rest/jobs/$id" | jq -r --arg n "$events" --arg tms "$tms" --arg p "$parallelism" \
    '((.timestamps.FINISHED - .timestamps.RUNNING) / 1000) as $t
     | "\("cluster p=\($p), \($tms) TM")\t\($t)\t\(($n | tonumber) / $t | floor)"' \
    | awk -F'\t' '{ printf "%-22s %10.3f %14d\n", $1, $2, $3 }'
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
done
