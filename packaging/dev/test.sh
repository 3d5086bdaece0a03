#!/usr/bin/env bash
# Runs every netmon test on a fresh Debian 12 / Ubuntu machine: installs what
# is missing, checks that every command the tests run is there, checks
# formatting and lints, builds, runs unit and end-to-end tests and the .deb
# test. End-to-end tests create network namespaces and users: run as root.
# A failing step does not hide the later ones: every step runs, and the exit
# status is the first failure's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source packaging/dev/deps.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "netmon: the end-to-end tests need root; re-running under sudo" >&2
  # Keep this user's Rust toolchain: sudo would otherwise reset PATH. The
  # sbin directories are root's (useradd, setpriv, ...), not in a user's PATH.
  exec sudo env "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
    "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "$0" "$@"
fi

netmon_check_commands

first_rc=0
failed=()
# Runs one step; remembers its failure and goes on.
step() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "netmon: FAILED (exit $rc): $*" >&2
    failed+=("$* (exit $rc)")
    [ "$first_rc" -ne 0 ] || first_rc=$rc
  fi
}

step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets --locked -- -D warnings
# End-to-end tests run the built binaries of every crate.
step cargo build --workspace --bins --locked
# Third-party gRPC clients (Python grpcio from PyPI) for the API tests.
step source packaging/dev/pyenv.sh
# --no-fail-fast: a failing test binary does not keep the others from running.
step cargo test --workspace --locked --no-fail-fast -- --test-threads="${NETMON_TEST_THREADS:-4}"
# The package test installs and purges the netmon package, so it refuses
# (and this run fails) where netmon is installed for real, unless the skip
# is asked for by name.
if [ "${NETMON_SKIP_DEB_TEST:-0}" = 1 ]; then
  echo "netmon: NETMON_SKIP_DEB_TEST=1: the .deb test was NOT run" >&2
else
  step ./packaging/tests/deb.sh
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "netmon: ${#failed[@]} step(s) failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit "$first_rc"
fi
echo "netmon: every test passed" >&2
