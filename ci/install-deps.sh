#!/usr/bin/env bash
# Installs what the tests need, only when missing (a second run does nothing and takes well
# under a second):
# - the cargo components rustfmt and clippy;
# - Debian's etcd-server (the `etcd` binary), which the high-availability tests start on
#   loopback with a temporary data directory (and stop after);
# - a Python virtual environment with pyarrow and ADBC's Flight SQL driver, whose interpreter
#   tests use to read checkpoint
#   state files as an outside tool would. It lives in $SLUICE_VENV (default
#   /var/tmp/sluice-venv, outside the clone so CI runs reuse it); its python is
#   $SLUICE_VENV/bin/python, which ci/test.sh exports as SLUICE_PYTHON.
#
# Usage: ci/install-deps.sh                      (developers run it once; ci/test.sh always does)
#        export SLUICE_PYTHON=/var/tmp/sluice-venv/bin/python   (to run those tests by hand)
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

# Python packages the tests import, pinned to a major version (pip's form).
python_packages=("pyarrow>=26,<27" "adbc-driver-flightsql>=1,<2")
venv="${SLUICE_VENV:-/var/tmp/sluice-venv}"
if ! "$venv/bin/python" -c 'import pyarrow, adbc_driver_flightsql' >/dev/null 2>&1; then
  python=""
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null; then python="$candidate"; break; fi
  done
  [ -n "$python" ] || { echo "python3 (with venv and pip) is required for the pyarrow tests" >&2; exit 1; }
  echo "creating the Python environment $venv with ${python_packages[*]}"
  # A half-made environment from an interrupted run is made again from scratch; a directory
  # that is not a Python environment is left alone.
  if [ -e "$venv" ]; then
    if [ -f "$venv/pyvenv.cfg" ]; then
      rm -rf "$venv"
    else
      echo "SLUICE_VENV=$venv exists and is not a Python environment; choose another path" >&2
      exit 1
    fi
  fi
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${python_packages[@]}"
  "$venv/bin/python" -c 'import pyarrow; print("pyarrow", pyarrow.__version__)'
fi

# The etcd server for the high-availability tests (Debian's etcd-server: etcd 3.4).
if ! command -v etcd >/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "installing etcd-server"
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq etcd-server >/dev/null
    # The package may start a system etcd on the default port; the tests start their own.
    if command -v systemctl >/dev/null; then "${sudo_cmd[@]}" systemctl stop etcd >/dev/null 2>&1 || true; fi
  else
    echo "etcd is required for the high-availability tests (Debian: apt-get install etcd-server)" >&2
    exit 1
  fi
fi
etcd --version | head -1
