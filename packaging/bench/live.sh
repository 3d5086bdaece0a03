#!/usr/bin/env bash
# Live benchmark of netmond against bandwhich and nethogs (issue 3, Benchmarks).
#
# Builds netmond + netmonctl in release, makes a private lab (two network
# namespaces joined by a veth pair on 10.232.X.0/24) and measures, on the same
# run and the same link:
#   1. iperf3 alone (10 s TCP, monitored namespace -> peer)
#   2. iperf3 with netmond (eBPF and socket-lookup attribution) / bandwhich /
#      nethogs on the veth: throughput, slowdown, bytes counted vs the link's
#      own counters, bytes credited to the iperf3 pid, CPU s per GB of the
#      monitor and of the whole machine (marginal over iperf3 alone), peak RSS
#   3. short-lived attribution: 200 curl runs, 2,000 short TCP connections
#   4. netmond attribution latency p50/p99
#   5. netmond memory with 10k live flows and under a 1M distinct-flow flood
# and prints a table (and JSON with --out FILE). Run as root. Traffic never
# leaves the lab; the lab and everything started here are removed on exit.
#
# Usage: sudo packaging/bench/live.sh [--out FILE] [--raw-dir DIR] [--no-build]
#          [--skip netmond|bandwhich|nethogs]... [--iperf-secs N] [--max-flows N]
#          [--netmond-modes ebpf,socket-lookup]
set -euo pipefail

usage() {
  sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --out FILE         also write the results as JSON to FILE
  --raw-dir DIR      keep every raw measurement (iperf3 JSON, status snapshots,
                     tool logs) in DIR; default: a temp dir removed at exit
  --no-build         use the release binaries already built
  --skip TOOL        leave out netmond, bandwhich or nethogs (repeatable)
  --iperf-secs N     iperf3 duration (default 10)
  --max-flows N      run netmond with capture.max_flows = N (default: netmond's
                     own default) in its generated --config file
  --netmond-modes M  comma-separated attribution modes netmond is measured in,
                     each a tool of its own: ebpf, socket-lookup (default
                     both, eBPF first); the memory phase runs in the first
EOF
}

die() {
  echo "live.sh: error: $*" >&2
  exit 1
}
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

OUT=""
RAW_DIR=""
NO_BUILD=0
IPERF_SECS=10
MAX_FLOWS=""
NETMOND_MODES="ebpf,socket-lookup"
declare -A SKIP=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a file}; shift 2 ;;
    --raw-dir) RAW_DIR=${2:?--raw-dir needs a directory}; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    --skip)
      case "${2:-}" in
        netmond | bandwhich | nethogs) SKIP[$2]=1 ;;
        *) die "--skip takes netmond, bandwhich or nethogs" ;;
      esac
      shift 2 ;;
    --iperf-secs) IPERF_SECS=${2:?}; shift 2 ;;
    --max-flows) MAX_FLOWS=${2:?}; shift 2 ;;
    --netmond-modes) NETMOND_MODES=${2:?--netmond-modes needs a list}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $IPERF_SECS =~ ^[0-9]+$ ]] || die "--iperf-secs must be a whole number"
[[ -z $MAX_FLOWS || $MAX_FLOWS =~ ^[0-9]+$ ]] || die "--max-flows must be a whole number"
MODES=()
IFS=, read -r -a mode_list <<<"$NETMOND_MODES"
for m in "${mode_list[@]}"; do
  case "$m" in
    ebpf | socket-lookup) ;;
    *) die "--netmond-modes takes ebpf and/or socket-lookup, comma-separated (got '$m')" ;;
  esac
  [[ " ${MODES[*]} " == *" $m "* ]] || MODES+=("$m")
done
[ "${#MODES[@]}" -gt 0 ] || die "--netmond-modes needs at least one mode"

[ "$(id -u)" -eq 0 ] || die "run as root: the lab needs network namespaces, pcap and groupadd (try: sudo $0)"
# The same packages as the tests (and the command -> package table).
source "$(dirname "${BASH_SOURCE[0]}")/../dev/deps.sh"
netmon_check_commands ip iperf3 curl python3 groupadd groupdel getconf timeout ss ping ||
  die "a command the benchmark runs is missing (see above)"

# The helpers run from the source tree: leave no __pycache__ in it.
export PYTHONDONTWRITEBYTECODE=1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB="$HERE/benchlib.py"
REPORT="$HERE/report.py"
# Tools we install (bandwhich) live here, never in the repository.
CACHE=/var/cache/netmon-bench

# Unique names per run: two runs (or other engineers' lab tests) never share a
# namespace, an interface or a group. Interface names stay <= 15 characters.
ID=$$
NS_MON="nmb${ID}-mon"
NS_PEER="nmb${ID}-peer"
IF_MON="nmb${ID}m"
IF_PEER="nmb${ID}p"
NET="10.232.$((ID % 200 + 20))"
MON_IP="$NET.1"
PEER_IP="$NET.2"
# Fixed, locally administered MACs whose first nibble is 0: bandwhich guesses
# "raw IP or Ethernet" from the first byte of a frame and loses frames whose
# destination MAC starts with hex 4 or 6 (design.md §6). A random MAC would
# make its figures depend on luck; this keeps the comparison fair.
MAC_MON="02:00:00:00:00:01"
MAC_PEER="02:00:00:00:00:02"
GROUP="nmbench${ID}"
IPERF_PORT=5201
HTTP_PORT=8080
RR_PORT=8081
SINK_PORT=9999
CURL_RUNS=200
FILE_SIZE=204800 # 200 KiB
RR_CONNS=2000
RR_REQ=100
RR_RESP=1000
RR_RATE=200 # connections/s: 2,000 within ~10 s, as in issue 3
FLOWS_LIVE=10000
FLOOD_PACKETS=1000000
FLOOD_SECS=60

PIDS=()        # every background process started here, killed by id at exit
GROUP_MADE=0
WORK_IS_TEMP=0
WORK=""

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  # Anything still running inside our own namespaces was started by us.
  for ns in "$NS_MON" "$NS_PEER"; do
    if ip netns list 2>/dev/null | grep -qx "$ns\( (id: [0-9]*)\)\{0,1\}"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null || warn "could not delete namespace $ns"
    fi
  done
  [ "$GROUP_MADE" -eq 1 ] && { groupdel "$GROUP" 2>/dev/null || warn "could not delete group $GROUP"; }
  [ "$WORK_IS_TEMP" -eq 1 ] && [ -n "$WORK" ] && rm -rf "$WORK"
  [ "$rc" -ne 0 ] && echo "live.sh: failed (exit $rc); the lab was torn down" >&2
  exit "$rc"
}
trap cleanup EXIT
# A signal must still run cleanup: turn it into a normal exit.
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Wait for PID at most SECS seconds; kill it if it overstays. Returns its
# exit status (124 when it had to be killed).
wait_bounded() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget_pid "$pid"
    return 124
  fi
  local rc=0
  wait "$pid" || rc=$?
  forget_pid "$pid"
  return "$rc"
}

# Stop a process politely with signal SIG, forcefully after 10 s.
stop_proc() { # pid sig
  kill "-$2" "$1" 2>/dev/null || true
  wait_bounded "$1" 10 || true
}

# Foreground only: a function run with & is a bash subshell, so background
# jobs call `ip netns exec` directly (it execs, and $! is the program's pid).
in_mon() { ip netns exec "$NS_MON" "$@"; }
in_peer() { ip netns exec "$NS_PEER" "$@"; }

# ------------------------------------------------------------------ tools

ensure_nethogs() {
  command -v nethogs >/dev/null && return 0
  log "installing nethogs (apt)"
  { apt-get install -y nethogs >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y nethogs >/dev/null 2>&1; }; } ||
    return 1
  command -v nethogs >/dev/null
}

BANDWHICH=""
ensure_bandwhich() {
  local c
  for c in "$(command -v bandwhich || true)" "$CACHE/bin/bandwhich" "${HOME:-/root}/.cargo/bin/bandwhich"; do
    if [ -n "$c" ] && [ -x "$c" ]; then BANDWHICH=$c; return 0; fi
  done
  command -v cargo >/dev/null || return 1
  log "installing bandwhich into $CACHE (cargo install --locked; takes a few minutes)"
  mkdir -p "$CACHE"
  CARGO_TARGET_DIR="$CACHE/target" cargo install bandwhich --locked --root "$CACHE" \
    >"$CACHE/install.log" 2>&1 || { warn "cargo install bandwhich failed, see $CACHE/install.log"; return 1; }
  BANDWHICH="$CACHE/bin/bandwhich"
}

# netmond is one tool per attribution mode: "netmond-ebpf",
# "netmond-socket-lookup" (directories and report rows carry the name).
TOOLS=()
for t in netmond bandwhich nethogs; do
  [ -n "${SKIP[$t]:-}" ] && continue
  case $t in
    netmond) for m in "${MODES[@]}"; do TOOLS+=("netmond-$m"); done; continue ;;
    nethogs) ensure_nethogs || { warn "nethogs unavailable; it is left out"; continue; } ;;
    bandwhich) ensure_bandwhich || { warn "bandwhich unavailable; it is left out"; continue; } ;;
  esac
  TOOLS+=("$t")
done
[ "${#TOOLS[@]}" -gt 0 ] || die "every tool was skipped or unavailable: nothing to measure"

# ------------------------------------------------------------------ build

if [ -n "${SKIP[netmond]:-}" ]; then
  NETMOND="" NETMONCTL=""
else
  if [ "$NO_BUILD" -eq 0 ]; then
    command -v cargo >/dev/null || die "cargo not found (install Rust, or pass --no-build with built binaries)"
    log "building netmond and netmonctl (release)"
    (cd "$ROOT" && cargo build --release -p netmond -p netmonctl) ||
      die "cargo build --release -p netmond -p netmonctl failed"
  fi
  TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  NETMOND="$TARGET_DIR/release/netmond"
  NETMONCTL="$TARGET_DIR/release/netmonctl"
  { [ -x "$NETMOND" ] && [ -x "$NETMONCTL" ]; } ||
    die "no release binaries in $TARGET_DIR/release (build first or drop --no-build)"
  groupadd --system "$GROUP" || die "groupadd --system $GROUP failed"
  GROUP_MADE=1
fi

# ------------------------------------------------------------------ work dir

if [ -n "$RAW_DIR" ]; then
  mkdir -p "$RAW_DIR"
  WORK=$(cd "$RAW_DIR" && pwd)
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/netmon-bench.XXXXXX")
  WORK_IS_TEMP=1
fi
chmod 755 "$WORK"
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------------ lab

log "lab: $NS_MON ($IF_MON $MON_IP) <-> $NS_PEER ($IF_PEER $PEER_IP)"
for ns in "$NS_MON" "$NS_PEER"; do
  ip netns add "$ns" || die "ip netns add $ns failed"
  ip -n "$ns" link set lo up
  # No IPv6 on the lab link: its neighbour discovery chatter is not part of
  # what we measure and would only blur the counter comparisons.
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
# Created directly inside the namespaces: the interfaces never appear in the
# host namespace, where a running netmond or test could pick them up.
ip -n "$NS_MON" link add "$IF_MON" address "$MAC_MON" type veth \
  peer name "$IF_PEER" address "$MAC_PEER" netns "$NS_PEER" || die "creating the veth pair failed"
ip -n "$NS_MON" addr add "$MON_IP/24" dev "$IF_MON"
ip -n "$NS_PEER" addr add "$PEER_IP/24" dev "$IF_PEER"
ip -n "$NS_MON" link set "$IF_MON" up
ip -n "$NS_PEER" link set "$IF_PEER" up
# The flood goes to every address of the peer /24; without neighbour entries
# the kernel would queue those datagrams for ARP and drop them before the
# wire. The peer (forwarding off) silently discards what is not for it.
{
  for h in $(seq 3 252); do
    echo "neigh replace $NET.$h lladdr $MAC_PEER dev $IF_MON nud permanent"
  done
} | ip -n "$NS_MON" -batch - || die "adding neighbour entries failed"
in_mon ping -c 1 -W 2 "$PEER_IP" >/dev/null || die "the lab link does not work (ping $PEER_IP from $NS_MON)"

# Peer-side servers, all bound to the peer address only.
WWW="$WORK/www"
mkdir -p "$WWW"
head -c "$FILE_SIZE" /dev/urandom >"$WWW/f.bin"
ip netns exec "$NS_PEER" iperf3 -s -B "$PEER_IP" -p "$IPERF_PORT" >"$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_PEER" python3 -m http.server "$HTTP_PORT" --bind "$PEER_IP" --directory "$WWW" >"$WORK/http.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_PEER" python3 "$LIB" rr-server --bind "$PEER_IP" --port "$RR_PORT" --req "$RR_REQ" --resp "$RR_RESP" \
  --secs 3600 >"$WORK/rr-server.log" 2>&1 &
PIDS+=($!)
for port in "$IPERF_PORT" "$HTTP_PORT" "$RR_PORT"; do
  for ((i = 0; i < 100; i++)); do
    [ -n "$(in_peer ss -Hltn "sport = :$port")" ] && break
    sleep 0.1
  done
  [ -n "$(in_peer ss -Hltn "sport = :$port")" ] || die "the lab server on port $port did not start (see $WORK/*.log)"
done

# ------------------------------------------------------------------ measuring

# Raw counters are saved as files; report.py turns them into figures, so the
# raw data of a surprising result can be read afterwards (--raw-dir).
link_snap() { in_mon ip -s -j link show dev "$IF_MON" >"$1"; }
cpu_snap() {
  # utime + stime in clock ticks: fields 14 and 15 of /proc/PID/stat, counted
  # after the ") " that closes the command name.
  local out=$2 stat rest
  stat=$(<"/proc/$1/stat")
  rest=${stat##*) }
  # shellcheck disable=SC2086 # splitting the fields is the point
  set -- $rest
  echo $((${12} + ${13})) >"$out"
}
# The whole machine's CPU time: the "cpu" line of /proc/stat (clock ticks,
# all CPUs). In eBPF mode netmond's cost is mostly in the kernel, in the
# context of the sender (cgroup_skb programs), so its own utime+stime is not
# the whole cost; the machine's non-idle time, against the paired
# iperf3-alone run, is.
stat_snap() { grep -m1 '^cpu ' /proc/stat >"$1"; }
is_netmond() { [[ $1 == netmond-* ]]; }
status_snap() {
  "$NETMONCTL" --socket "$SOCK" --json status >"$1" || die "netmonctl status failed (netmond log: $(dirname "$1")/tool.log)"
}

MON_PID=""
MON_TOOL=""
SOCK=""
# Seconds to wait after a monitor starts and after the traffic ends before
# reading its output: netmond publishes per 1 s tick, nethogs refreshes every
# second, bandwhich needs its 5 s averaging window to drain.
settle_secs() { if [ "$1" = bandwhich ]; then echo 6; else echo 2; fi; }

start_monitor() { # tool dir
  local tool=$1 dir=$2 i
  MON_TOOL=$tool
  case $tool in
    netmond-*)
      local mode=${tool#netmond-} got
      mkdir -p "$dir/netmond"
      SOCK="$dir/netmond/netmond.sock"
      # The attribution mode is asked for explicitly (never "auto"), and the
      # peer namespace is excluded: eBPF accounting sees the sockets of every
      # namespace, and the lab's servers are not this host's.
      {
        echo "[capture]"
        echo "attribution = \"$mode\""
        echo "exclude_netns = [\"$NS_PEER\"]"
        [ -n "$MAX_FLOWS" ] && echo "max_flows = $MAX_FLOWS"
      } >"$dir/netmond/netmond.toml"
      # Started as a user would, in the monitored namespace; ip netns exec
      # execs, so $! is netmond's own pid.
      ip netns exec "$NS_MON" "$NETMOND" --config "$dir/netmond/netmond.toml" --socket "$SOCK" \
        --db "$dir/netmond/netmon.db" --group "$GROUP" >"$dir/tool.log" 2>&1 &
      MON_PID=$!
      PIDS+=("$MON_PID")
      for ((i = 0; i < 300; i++)); do
        kill -0 "$MON_PID" 2>/dev/null || die "netmond exited at start: $(tail -n 20 "$dir/tool.log")"
        if "$NETMONCTL" --socket "$SOCK" --json status >"$dir/status_start.json" 2>/dev/null &&
          python3 "$LIB" iface-capturing "$dir/status_start.json" "$IF_MON"; then
          break
        fi
        sleep 0.1
      done
      python3 "$LIB" iface-capturing "$dir/status_start.json" "$IF_MON" ||
        die "netmond did not report $IF_MON capturing within 30 s: $(tail -n 20 "$dir/tool.log")"
      # A figure filed under the wrong mode is worse than no figure.
      got=$(python3 "$LIB" get "$dir/status_start.json" attribution)
      [ "$got" = "$mode" ] ||
        die "netmond was asked for attribution '$mode' but status says '$got' ($(python3 "$LIB" get "$dir/status_start.json" attribution_reason))"
      ;;
    bandwhich)
      ip netns exec "$NS_MON" "$BANDWHICH" --raw --no-resolve -i "$IF_MON" >"$dir/tool.log" 2>&1 &
      MON_PID=$!
      PIDS+=("$MON_PID")
      ;;
    nethogs)
      # -t: trace mode (text); -v 2: cumulative bytes per process instead of
      # KB/s, so totals can be read off exactly; -d 1: one refresh a second.
      ip netns exec "$NS_MON" nethogs -t -v 2 -d 1 "$IF_MON" >"$dir/tool.log" 2>&1 &
      MON_PID=$!
      PIDS+=("$MON_PID")
      ;;
  esac
  echo "$MON_PID" >"$dir/monitor.pid"
  # Let it open its capture and settle (bandwhich and nethogs have no
  # readiness signal; 2 s covers their start-up scans of /proc). bandwhich
  # prints a 5-sample moving average: 6 idle seconds fill its window, so the
  # printed values of the run add up to the bytes it saw (report.py).
  sleep "$(settle_secs "$tool")"
  kill -0 "$MON_PID" 2>/dev/null || die "$tool exited at start: $(tail -n 20 "$dir/tool.log")"
}

stop_monitor() { # dir
  cp "/proc/$MON_PID/status" "$1/proc_status" 2>/dev/null || true
  # eBPF maps and programs live in kernel memory, outside RSS: their
  # memlock (from the fdinfo of netmond's bpf descriptors) is kept apart.
  if is_netmond "$MON_TOOL"; then
    local f
    for f in /proc/"$MON_PID"/fdinfo/*; do
      grep -qE '^(map_type|prog_type):' "$f" 2>/dev/null && grep -E '^(map_type|prog_type|memlock):' "$f"
    done >"$1/bpf_fdinfo" 2>/dev/null || true
  fi
  # nethogs flushes its buffered trace output on SIGINT; bandwhich --raw
  # ignores SIGINT (and prints line by line); netmond closes its session on
  # SIGTERM.
  if [ "$MON_TOOL" = nethogs ]; then stop_proc "$MON_PID" INT; else stop_proc "$MON_PID" TERM; fi
  MON_PID=""
}

run_iperf() { # dir
  local dir=$1 rc=0
  ip netns exec "$NS_MON" iperf3 -c "$PEER_IP" -p "$IPERF_PORT" -t "$IPERF_SECS" -J >"$dir/iperf.json" 2>"$dir/iperf.err" &
  local pid=$!
  PIDS+=("$pid")
  echo "$pid" >"$dir/iperf.pid"
  wait_bounded "$pid" $((IPERF_SECS + 30)) || rc=$?
  [ "$rc" -eq 0 ] || die "iperf3 failed (exit $rc): $(head -c 400 "$dir/iperf.err") $(head -c 400 "$dir/iperf.json")"
}

gbps() { python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))' "$1"; }

bulk_phase() { # tool
  local tool=$1
  local alone="$WORK/alone-$tool" dir="$WORK/bulk-$tool"
  mkdir -p "$alone" "$dir"
  # A paired "alone" run right before each monitored run: on a machine whose
  # speed drifts, each slowdown is measured against its own neighbour.
  log "iperf3 alone (${IPERF_SECS} s, paired with $tool)"
  # The same window as the monitored run below (start to 1 s after), so the
  # machine's CPU per GB of the two can be subtracted.
  link_snap "$alone/link_before.json"
  stat_snap "$alone/stat_before"
  run_iperf "$alone"
  sleep 1
  link_snap "$alone/link_after.json"
  stat_snap "$alone/stat_after"
  log "  -> $(gbps "$alone/iperf.json") Gbit/s"
  log "iperf3 with $tool"
  start_monitor "$tool" "$dir"
  is_netmond "$tool" && status_snap "$dir/status_before.json"
  link_snap "$dir/link_before.json"
  cpu_snap "$MON_PID" "$dir/cpu_before"
  stat_snap "$dir/stat_before"
  run_iperf "$dir"
  # CPU counted up to 1 s after the traffic: what the monitor spends catching
  # up belongs to the run, its idle ticks afterwards do not.
  sleep 1
  link_snap "$dir/link_after.json"
  cpu_snap "$MON_PID" "$dir/cpu_after"
  stat_snap "$dir/stat_after"
  sleep "$(settle_secs "$tool")"
  if is_netmond "$tool"; then
    status_snap "$dir/status_after.json"
    "$NETMONCTL" --socket "$SOCK" --json top --limit 0 >"$dir/top.json" || die "netmonctl top failed"
  fi
  stop_monitor "$dir"
  log "  -> $(gbps "$dir/iperf.json") Gbit/s"
}

short_phase() { # tool
  local tool=$1
  local dir="$WORK/short-$tool" rc=0
  mkdir -p "$dir"
  log "short-lived: $CURL_RUNS curl + $RR_CONNS short TCP connections with $tool"
  start_monitor "$tool" "$dir"
  link_snap "$dir/link_0.json"
  cpu_snap "$MON_PID" "$dir/cpu_0"
  stat_snap "$dir/stat_0"
  # One curl at a time, each bounded to 5 s, the whole loop to 3 min.
  # shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
  in_mon timeout 180 bash -c '
    for ((i = 0; i < $1; i++)); do
      curl -s -o /dev/null --max-time 5 -w "%{http_code} %{size_download}\n" "$2" || echo "fail 0"
    done' _ "$CURL_RUNS" "http://$PEER_IP:$HTTP_PORT/f.bin" >"$dir/curl.txt" || rc=$?
  [ "$rc" -eq 0 ] || die "the curl loop failed or overran 180 s (exit $rc)"
  sleep 2
  link_snap "$dir/link_1.json"
  in_mon timeout 90 python3 "$LIB" rr-client --dst "$PEER_IP" --port "$RR_PORT" --conns "$RR_CONNS" \
    --req "$RR_REQ" --resp "$RR_RESP" --rate "$RR_RATE" --secs 60 >"$dir/rr.json" || die "rr-client failed"
  sleep 1
  link_snap "$dir/link_2.json"
  cpu_snap "$MON_PID" "$dir/cpu_2"
  stat_snap "$dir/stat_2"
  sleep "$(settle_secs "$tool")"
  if is_netmond "$tool"; then
    status_snap "$dir/status.json"
    "$NETMONCTL" --socket "$SOCK" --json top --limit 0 >"$dir/top.json" || die "netmonctl top failed"
  fi
  stop_monitor "$dir"
}

memory_phase() { # netmond tool (netmond-MODE)
  local dir="$WORK/memory" i n
  mkdir -p "$dir"
  log "memory ($1): $FLOWS_LIVE live flows, then a flood of $FLOOD_PACKETS distinct flows"
  start_monitor "$1" "$dir"
  status_snap "$dir/status_idle.json"
  cp "/proc/$MON_PID/status" "$dir/proc_idle"
  # A sink on the peer so it sends no ICMP port-unreachable (extra flows).
  ip netns exec "$NS_PEER" timeout 300 python3 "$LIB" udp-sink --bind "$PEER_IP" --port "$SINK_PORT" --secs 240 \
    >"$dir/sink.json" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  ip netns exec "$NS_MON" timeout 120 python3 "$LIB" udp-flows --src "$MON_IP" --dst "$PEER_IP" --port "$SINK_PORT" \
    --count "$FLOWS_LIVE" --hold 90 >"$dir/flows10k.json" 2>"$dir/flows10k.err" &
  local fpid=$!
  PIDS+=("$fpid")
  # Wait (bounded) until netmond holds the flows; they stay live while the
  # sockets stay open and idle (flow_idle_secs is 120 s).
  for ((i = 0; i < 60; i++)); do
    status_snap "$dir/status_10k.json"
    n=$(python3 "$LIB" get "$dir/status_10k.json" flows_active)
    [ "$n" -ge "$FLOWS_LIVE" ] && break
    sleep 0.5
  done
  [ "$n" -ge "$FLOWS_LIVE" ] || warn "netmond shows $n flows, not $FLOWS_LIVE, after 30 s"
  sleep 2
  status_snap "$dir/status_10k.json"
  cp "/proc/$MON_PID/status" "$dir/proc_10k"
  kill -TERM "$fpid" 2>/dev/null || true
  wait_bounded "$fpid" 10 || true

  # Responsiveness probe during the flood: netmonctl status every 0.5 s, each
  # bounded to 2 s (longer counts as a failure); also samples VmRSS.
  : >"$dir/probe.txt"
  (
    for ((i = 0; i < 300; i++)); do
      [ -e "$dir/probe.stop" ] && break
      t0=$(date +%s%N)
      prc=0
      timeout 2 "$NETMONCTL" --socket "$SOCK" --json status >/dev/null 2>&1 || prc=$?
      t1=$(date +%s%N)
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$MON_PID/status" 2>/dev/null || echo 0)
      echo "$(((t1 - t0) / 1000000)) $prc ${rss:-0}" >>"$dir/probe.txt"
      sleep 0.5
    done
  ) &
  local probe=$!
  PIDS+=("$probe")
  sleep 1
  in_mon timeout $((FLOOD_SECS + 30)) python3 "$LIB" flood --src "$MON_IP" --net "$NET" \
    --packets "$FLOOD_PACKETS" --secs "$FLOOD_SECS" >"$dir/flood.json" || die "the flood generator failed"
  # netmond takes the flood in faster than it files the new flows (hand-offs
  # are deferred, see status handoff_dropped): wait, still probing, until
  # every flow is in the table or evicted, or the total stops moving, at most
  # 60 s; the time taken is reported.
  local t0 seen last=-1 still=0
  t0=$(date +%s)
  for ((i = 0; i < 60; i++)); do
    sleep 1
    status_snap "$dir/status_after.json"
    seen=$(($(python3 "$LIB" get "$dir/status_after.json" flows_active) +
      $(python3 "$LIB" get "$dir/status_after.json" flows_evicted)))
    [ "$seen" -ge $((FLOOD_PACKETS + FLOWS_LIVE)) ] && break
    if [ "$seen" -eq "$last" ]; then still=$((still + 1)); else still=0; fi
    [ "$still" -ge 5 ] && break
    last=$seen
  done
  echo $(($(date +%s) - t0)) >"$dir/drain_secs"
  touch "$dir/probe.stop"
  wait_bounded "$probe" 10 || true
  status_snap "$dir/status_after.json"
  stop_monitor "$dir"
}

# ------------------------------------------------------------------ run

START=$(date +%s)
# What was run, where: kept with the figures, so a result can be told apart
# from one of another machine or build. Written by python so quoting is JSON's.
python3 - "$WORK/meta.json" <<EOF || die "writing meta.json failed"
import json, os, subprocess, sys
def first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except Exception:
        return None
json.dump({
    "started": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "host": {"kernel": os.uname().release, "cpus": os.cpu_count(),
             "loadavg_start": open("/proc/loadavg").read().split()[:3]},
    "netmon_commit": first_line(["git", "-C", "$ROOT", "rev-parse", "--short", "HEAD"]),
    "iperf3_version": first_line(["iperf3", "-v"]),
    "bandwhich_version": first_line(["$BANDWHICH", "--version"]) if "$BANDWHICH" else None,
    "nethogs_version": first_line(["nethogs", "-V"]) if "nethogs" in "${TOOLS[*]}" else None,
    "tools": "${TOOLS[*]}".split(),
    "netmond_modes": "${MODES[*]}".split() if "$NETMOND" else [],
    "memory_tool": "netmond-${MODES[0]}" if "$NETMOND" else None,
    "peer_netns": "$NS_PEER",
    "iface": "$IF_MON", "clk_tck": $CLK_TCK, "iperf_secs": $IPERF_SECS,
    "curl_runs": $CURL_RUNS, "file_size": $FILE_SIZE,
    "rr_conns": $RR_CONNS, "rr_req": $RR_REQ, "rr_resp": $RR_RESP, "rr_rate": $RR_RATE,
    "flows_live": $FLOWS_LIVE, "flood_packets": $FLOOD_PACKETS,
    "max_flows": int("${MAX_FLOWS:-0}") or None,
}, open(sys.argv[1], "w"), indent=1)
EOF

for t in "${TOOLS[@]}"; do bulk_phase "$t"; done
for t in "${TOOLS[@]}"; do short_phase "$t"; done
# Memory in one mode only (the first asked for; eBPF by default): the flood
# stresses the capture flow table, which both modes share.
[ -z "${SKIP[netmond]:-}" ] && memory_phase "netmond-${MODES[0]}"
python3 -c 'import json,sys; print(json.dumps(open("/proc/loadavg").read().split()[:3]))' >"$WORK/loadavg_end.json"

echo "$(($(date +%s) - START))" >"$WORK/runtime_secs"
report_args=("$WORK")
[ -n "$OUT" ] && report_args+=(--out "$OUT")
python3 "$REPORT" "${report_args[@]}" || die "report.py failed (raw data in $WORK; pass --raw-dir to keep it)"
[ "$WORK_IS_TEMP" -eq 0 ] && log "raw measurements kept in $WORK"
log "done in $(($(date +%s) - START)) s"
