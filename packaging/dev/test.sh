#!/usr/bin/env bash
# Runs every netmon test on a fresh Debian 12 / Ubuntu machine: installs what
# is missing, checks formatting and lints, builds, runs unit and end-to-end
# tests. End-to-end tests create network namespaces and users: run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."
source packaging/dev/deps.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "netmon: the end-to-end tests need root; re-running under sudo" >&2
  # Keep this user's Rust toolchain: sudo would otherwise reset PATH.
  exec sudo env "PATH=$PATH" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
    "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "$0" "$@"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# End-to-end tests run the built binaries of every crate.
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads="${NETMON_TEST_THREADS:-4}"
# The package test installs and purges the netmon package, so it refuses
# (and this run fails) where netmon is installed for real, unless the skip
# is asked for by name.
if [ "${NETMON_SKIP_DEB_TEST:-0}" = 1 ]; then
  echo "netmon: NETMON_SKIP_DEB_TEST=1: the .deb test was NOT run" >&2
else
  ./packaging/tests/deb.sh
fi
