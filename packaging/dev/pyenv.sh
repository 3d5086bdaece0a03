#!/usr/bin/env bash
# Creates target/pyenv, a Python venv with the gRPC project's own clients
# (grpcio, grpcio-tools, grpcio-reflection, current releases from PyPI) that
# the end-to-end tests use to call netmond as a third-party script would.
# Safe to run again: an existing, working venv is kept. Sourced by test.sh.
set -euo pipefail

NETMON_PYENV="${NETMON_PYENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/pyenv}"
export NETMON_PYENV

if ! "$NETMON_PYENV/bin/python" -c 'import grpc, grpc_tools, grpc_reflection' 2>/dev/null; then
  echo "netmon: creating the Python gRPC client venv in $NETMON_PYENV" >&2
  # Debian's interpreter, not whatever python3 a user's PATH finds first.
  py=/usr/bin/python3
  [ -x "$py" ] || py=python3
  "$py" -m venv --clear "$NETMON_PYENV"
  "$NETMON_PYENV/bin/pip" install --quiet --disable-pip-version-check \
    grpcio grpcio-tools grpcio-reflection
fi
