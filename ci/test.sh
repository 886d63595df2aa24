#!/usr/bin/env bash
# Installs what the tests need and runs all of them: formatting, clippy, the dependency
# direction check, and every crate's unit, integration and doc tests.
#
# Usage: ci/test.sh            (from anywhere; CI calls it through .ci/run)
# The cargo target dir lives outside the clone so repeated runs are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-ci-target}"
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version
ci/install-deps.sh
# The interpreter of the environment install-deps.sh made: tests that read checkpoint files
# with pyarrow run it, and fail when it is not set.
export SLUICE_PYTHON="${SLUICE_VENV:-/var/tmp/sluice-venv}/bin/python"
"$SLUICE_PYTHON" -c 'import pyarrow; print("python", __import__("sys").version.split()[0], "pyarrow", pyarrow.__version__)'

step "formatting"
cargo fmt --all -- --check

step "dependency direction"
ci/check-deps.sh

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: the sum over every test binary and doc-test run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
