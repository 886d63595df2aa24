#!/usr/bin/env bash
# Installs the system packages the tests need, only when missing. Today the Rust toolchain is
# all the tests use; later issues add etcd-server, protobuf-compiler, a Python venv with
# pyarrow and Chromium here.
set -euo pipefail

missing=()
command -v cargo >/dev/null || { echo "cargo is required (rustup toolchain)" >&2; exit 1; }
if ! cargo fmt --version >/dev/null 2>&1; then missing+=(rustfmt); fi
if ! cargo clippy --version >/dev/null 2>&1; then missing+=(clippy); fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v rustup >/dev/null; then
    rustup component add "${missing[@]}"
  else
    echo "missing cargo components: ${missing[*]}" >&2
    exit 1
  fi
fi
