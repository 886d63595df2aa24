#!/usr/bin/env bash
# Installs what the tests need, only when missing (a second run does nothing and takes well
# under a second):
# - the cargo components rustfmt and clippy;
# - Debian's etcd-server (the `etcd` binary), which the high-availability tests start on
#   loopback with a temporary data directory (and stop after);
# - a Python virtual environment with pyarrow, whose interpreter tests use to read checkpoint
#   state files as an outside tool would, ADBC's Flight SQL driver (with pyarrow's Flight
#   client, what the sink-table tests read with), prometheus-client (whose parser checks
#   `/metrics`), and moto, whose server (`moto_server`) is the
#   S3-compatible object store the s3:// checkpoint tests write to. It lives in $SLUICE_VENV
#   (default /var/tmp/sluice-venv, outside the clone so CI runs reuse it); its python is
#   $SLUICE_VENV/bin/python, which ci/test.sh exports as SLUICE_PYTHON. An environment made
#   before a package was added here gets the missing package installed into it;
# - Debian's chromium (/usr/bin/chromium), Node.js and npm (Debian's, when the machine has
#   none), and the npm packages of coordinator/tests/web (playwright-core, as its
#   package-lock.json pins it, installed with `npm ci`), with which the cluster test
#   `dashboard` drives the JobManager's web dashboard in headless Chromium.
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

# Python packages the tests use, pinned to a major version (pip's form), and a module each
# one provides (what the "is it there" check imports).
python_packages=("pyarrow>=26,<27" "moto[server]>=5,<6" "adbc-driver-flightsql>=1,<2" "prometheus-client>=0.20,<1")
python_modules=(pyarrow moto.server adbc_driver_flightsql prometheus_client)
venv="${SLUICE_VENV:-/var/tmp/sluice-venv}"
has_modules() { # every module imports in the environment
  "$venv/bin/python" -c "import sys, importlib; [importlib.import_module(m) for m in sys.argv[1:]]" \
    "${python_modules[@]}" >/dev/null 2>&1
}
if ! has_modules; then
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    # An environment from before a package was added: install what is missing into it.
    echo "adding ${python_packages[*]} to the Python environment $venv"
  else
    python=""
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null; then python="$candidate"; break; fi
    done
    [ -n "$python" ] || { echo "python3 (with venv and pip) is required for the pyarrow, S3 and Flight tests" >&2; exit 1; }
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
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${python_packages[@]}"
  has_modules || { echo "$venv: ${python_modules[*]} still do not import after pip install" >&2; exit 1; }
  "$venv/bin/python" -c 'import pyarrow, moto; print("pyarrow", pyarrow.__version__, "moto", moto.__version__)'
  [ -x "$venv/bin/moto_server" ] || { echo "$venv/bin/moto_server is missing after installing moto[server]" >&2; exit 1; }
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
# sed reads to the end: with head, etcd could die of SIGPIPE and pipefail end the script here.
etcd --version | sed -n 1p

# Headless Chromium, Node.js and playwright-core for the dashboard test.
debian_packages=()
command -v chromium >/dev/null || debian_packages+=(chromium)
command -v node >/dev/null || debian_packages+=(nodejs)
command -v npm >/dev/null || debian_packages+=(npm)
if [ ${#debian_packages[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || {
    echo "the dashboard test needs ${debian_packages[*]} (Debian: apt-get install ${debian_packages[*]})" >&2
    exit 1
  }
  echo "installing ${debian_packages[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${debian_packages[@]}" >/dev/null
fi
web="$(cd "$(dirname "$0")/.." && pwd)/coordinator/tests/web"
# The installed playwright-core's version and the one package-lock.json pins ("" if none).
installed_playwright() {
  node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
    "$web/node_modules/playwright-core/package.json"
}
locked_playwright() {
  node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' \
    "$web/package-lock.json"
}
if [ "$(installed_playwright)" != "$(locked_playwright)" ]; then
  echo "installing the npm packages of $web (npm ci)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  [ "$(installed_playwright)" = "$(locked_playwright)" ] || {
    echo "$web: playwright-core $(locked_playwright) is still missing after npm ci" >&2
    exit 1
  }
fi
echo "chromium $(chromium --version 2>/dev/null | awk '{print $2}'), node $(node --version), playwright-core $(installed_playwright)"
