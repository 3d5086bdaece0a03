#!/usr/bin/env bash
# Memory of a long-running netmond under a stream of short-lived network
# processes (a build server, a CI runner, busy cron jobs).
#
# Makes a private lab (two network namespaces joined by a veth pair on
# 10.233.X.0/24), runs netmond in one with a temporary socket, database and
# config, and forks N short-lived processes there, paced evenly over the run:
# each is named one of K program names, connects to a sink in the peer
# namespace, sends a few kB and exits. Every --every seconds it prints
# netmond's RSS and the per-process table's rows (live, exited, program rows,
# processes folded in); at the end, the programs' credited bytes against what
# the processes sent. Run as root. Traffic never leaves the lab; the lab and
# everything started here are removed on exit.
#
# Usage: sudo packaging/bench/exited-processes.sh [--processes N] [--secs S]
#          [--names K] [--every S] [--tail S] [--keep-secs S] [--keep-max N]
#          [--bin-dir DIR]
set -euo pipefail

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --processes N   processes to start (default 100000)
  --secs S        over this many seconds (default 600)
  --names K       distinct program names (default 20)
  --every S       seconds between samples (default 30)
  --tail S        seconds to keep sampling after the last process (default 60)
  --keep-secs S   daemon.exited_keep_secs (default: netmond's, 600)
  --keep-max N    daemon.exited_keep_max (default: netmond's, 1000)
  --bin-dir DIR   netmond and netmonctl from DIR (default: target/release,
                  built with cargo if missing)
EOF
}

die() {
  echo "exited-processes.sh: error: $*" >&2
  exit 1
}

PROCS=100000
SECS=600
NAMES=20
EVERY=30
TAIL=60
KEEP_SECS=""
KEEP_MAX=""
BIN_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --processes) PROCS=${2:?}; shift 2 ;;
    --secs) SECS=${2:?}; shift 2 ;;
    --names) NAMES=${2:?}; shift 2 ;;
    --every) EVERY=${2:?}; shift 2 ;;
    --tail) TAIL=${2:?}; shift 2 ;;
    --keep-secs) KEEP_SECS=${2:?}; shift 2 ;;
    --keep-max) KEEP_MAX=${2:?}; shift 2 ;;
    --bin-dir) BIN_DIR=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, capture, eBPF)"
for c in ip python3 jq; do
  command -v "$c" >/dev/null || die "'$c' is needed"
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "$BIN_DIR" ]; then
  BIN_DIR=$ROOT/target/release
  if [ ! -x "$BIN_DIR/netmond" ] || [ ! -x "$BIN_DIR/netmonctl" ]; then
    (cd "$ROOT" && cargo build --release --locked -p netmond -p netmonctl)
  fi
fi
[ -x "$BIN_DIR/netmond" ] || die "no netmond in '$BIN_DIR'"

TAG=$$
HOST=nmxh$TAG
PEER=nmxp$TAG
NET=$((TAG % 250 + 1))
HOST_IP=10.233.$NET.1
PEER_IP=10.233.$NET.2
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$HOST" 2>/dev/null || true
  ip netns del "$PEER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$HOST"
ip netns add "$PEER"
ip link add "h$TAG" netns "$HOST" type veth peer name "p$TAG" netns "$PEER"
ip -n "$HOST" addr add "$HOST_IP/24" dev "h$TAG"
ip -n "$PEER" addr add "$PEER_IP/24" dev "p$TAG"
ip -n "$HOST" link set "h$TAG" up
ip -n "$PEER" link set "p$TAG" up
ip -n "$HOST" link set lo up
# Connections closed by the client wait in TIME_WAIT for a minute.
ip netns exec "$HOST" sysctl -qw net.ipv4.ip_local_port_range='10000 65000'

ip netns exec "$PEER" python3 -u -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5801)); s.listen(1024)
def sink(c):
    with c:
        while c.recv(1 << 16): pass
while True:
    c, _ = s.accept()
    threading.Thread(target=sink, args=(c,), daemon=True).start()
' "$PEER_IP" &
PIDS+=($!)

{
  echo "[daemon]"
  echo "autostart = true"
  [ -n "$KEEP_SECS" ] && echo "exited_keep_secs = $KEEP_SECS"
  [ -n "$KEEP_MAX" ] && echo "exited_keep_max = $KEEP_MAX"
  echo "[capture]"
  echo "exclude_netns = [\"$PEER\"]"
} >"$WORK/netmond.toml"
SOCK=$WORK/netmond.sock
ip netns exec "$HOST" "$BIN_DIR/netmond" --config "$WORK/netmond.toml" \
  --socket "$SOCK" --db "$WORK/netmon.db" --group root 2>"$WORK/netmond.log" &
PIDS+=($!)
NETMOND=$!
ctl() { "$BIN_DIR/netmonctl" --socket "$SOCK" --json "$@"; }
for _ in $(seq 100); do
  ctl status >/dev/null 2>&1 && break
  sleep 0.1
done
ctl status >/dev/null || die "netmond did not start: $(cat "$WORK/netmond.log")"
sleep 2

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$NETMOND/status"; }
START=$(date +%s)
sample() {
  local st
  st=$(ctl status)
  printf '%6s %9s %6s %7s %8s %9s\n' "$(($(date +%s) - START))" "$(rss)" \
    "$(jq .live_processes <<<"$st")" "$(jq .exited_processes <<<"$st")" \
    "$(jq .folded_programs <<<"$st")" "$(jq .folded_processes <<<"$st")"
}

# Each child is named nmbNN, sends 1000 + 100 * NN bytes and exits; the
# parent keeps the pace (N over S seconds) with at most 64 children at once.
ip netns exec "$HOST" python3 -c '
import os, socket, sys, time
host, total, names, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t0 = time.monotonic(); running = failed = 0
for i in range(total):
    ahead = t0 + i * secs / total - time.monotonic()
    if ahead > 0: time.sleep(ahead)
    while running >= 64:
        _, st = os.wait(); running -= 1; failed += st != 0
    k = i % names
    if os.fork() == 0:
        code = 1
        try:
            open("/proc/self/comm", "w").write("nmb%02d" % k)
            s = socket.create_connection((host, 5801)); s.sendall(b"b" * (1000 + 100 * k)); s.close()
            code = 0
        finally:
            os._exit(code)
    running += 1
    while running:
        pid, st = os.waitpid(-1, os.WNOHANG)
        if pid == 0: break
        running -= 1; failed += st != 0
while running:
    _, st = os.wait(); running -= 1; failed += st != 0
print(failed, flush=True)
' "$PEER_IP" "$PROCS" "$NAMES" "$SECS" >"$WORK/gen.out" &
GEN=$!
PIDS+=($GEN)

echo "netmond RSS over time ($PROCS processes of $NAMES names over $SECS s)"
printf '%6s %9s %6s %7s %8s %9s\n' t_s rss_kib live exited programs folded
sample
while kill -0 "$GEN" 2>/dev/null; do
  sleep "$EVERY"
  sample
done
wait "$GEN" || true
END=$(($(date +%s) + TAIL))
while [ "$(date +%s)" -lt "$END" ]; do
  sleep "$EVERY"
  sample
done
echo "generator: $(($(date +%s) - START - TAIL)) s, $(cat "$WORK/gen.out") children failed"

ctl top --limit 0 | jq -r --argjson names "$NAMES" --argjson n "$PROCS" '
  [.processes[] | select(.name | startswith("nmb"))] as $rows
  | ($rows | map(.name) | unique | length) as $programs
  | "rows for the generator: \($rows | length) (\($programs) programs, " +
    "\($rows | map(.folded_processes) | add) processes folded in)",
    ($rows | group_by(.name)[] | . as $g | ($g[0].name[3:] | tonumber) as $k
     | (($n / $names | floor) + (if $k < ($n % $names) then 1 else 0 end)) as $count
     | "\($g[0].name): credited up \($g | map(.up_bytes) | add) B, " +
       "payload sent \($count * (1000 + 100 * $k)) B by \($count) processes")'
