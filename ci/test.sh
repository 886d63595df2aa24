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

step "formatting"
cargo fmt --all -- --check

step "dependency direction"
ci/check-deps.sh

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked --no-fail-fast
