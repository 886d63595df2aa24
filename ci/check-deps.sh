#!/usr/bin/env bash
# Fails when a crate depends against the one-way order of the workspace:
#   coordinator -> flight -> engine -> datasets;  bench -> all.
# and when the engine pulls in network or HA crates (tonic, etcd-client, axum): the engine
# declares seams as traits, other crates implement them.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
deps_of() { # crate name -> its normal dependencies (direct), one per line
  cargo tree -p "$1" --edges normal --depth 1 --prefix none --format '{p}' 2>/dev/null \
    | tail -n +2 | awk '{print $1}' | sort -u
}
forbid() { # crate, forbidden dependency
  if deps_of "$1" | grep -qx "$2"; then
    echo "dependency direction: $1 must not depend on $2" >&2
    fail=1
  fi
}
forbid sluice-datasets sluice-engine
forbid sluice-datasets sluice-flight
forbid sluice-datasets sluice-coordinator
forbid sluice-engine sluice-flight
forbid sluice-engine sluice-coordinator
forbid sluice-engine sluice-bench
forbid sluice-flight sluice-coordinator
forbid sluice-flight sluice-bench
forbid sluice-coordinator sluice-bench
for net in tonic etcd-client axum hyper; do
  if cargo tree -p sluice-engine --edges normal --prefix none --format '{p}' | awk '{print $1}' | grep -qx "$net"; then
    echo "dependency direction: sluice-engine must not depend on $net (declare a trait seam instead)" >&2
    fail=1
  fi
done
[ "$fail" -eq 0 ] && echo "dependency direction ok"
exit "$fail"
