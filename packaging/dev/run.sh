#!/usr/bin/env bash
# Installs what is missing, builds netmon, creates the netmon group, starts
# netmond (embedded SQLite in ./netmon-dev/) and opens the live view.
# Ctrl-C ends the view and stops the daemon.
set -euo pipefail
cd "$(dirname "$0")/../.."
source packaging/dev/deps.sh
netmon_check_commands cargo cc pkg-config getent groupadd seq ${SUDO:+sudo}

cargo build --release --workspace --bins --locked
getent group netmon >/dev/null || $SUDO groupadd --system netmon

state="$PWD/netmon-dev"
mkdir -p "$state"
sock="$state/run/netmond.sock"
$SUDO ./target/release/netmond --socket "$sock" --db "$state/netmon.db" 2>"$state/netmond.log" &
daemon=$!
trap '$SUDO kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$state/netmond.log" >&2; exit 1; }
echo "netmond is running (log: $state/netmond.log). Live view follows; Ctrl-C to quit." >&2
if [ -x ./target/release/netmon-tui ]; then
  $SUDO ./target/release/netmon-tui --socket "$sock"
else
  $SUDO ./target/release/netmonctl --socket "$sock" watch
fi
