#!/usr/bin/env bash
# End-to-end test of the .deb (root, on a throw-away machine such as CI):
# build, lintian, contents and modes, install, run the daemon as the unit
# would, query it as a netmon member, upgrade with a changed conffile, purge.
set -uo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then echo "deb test: needs root (it installs the package)" >&2; exit 2; fi
# It installs and purges netmon: never where netmon is installed for real.
# That is a failure, not a pass: nothing was tested.
if dpkg-query -W -f='${Status}' netmon 2>/dev/null | grep -q "install ok installed"; then
  echo "deb test: the netmon package is installed here; run it on a throw-away machine" >&2
  exit 2
fi
pass=0; fail=0
ok()   { echo "ok   - $*"; pass=$((pass + 1)); }
bad()  { echo "FAIL - $*"; fail=$((fail + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# dpkg succeeds even when a maintainer script runs a line the shell cannot
# (a stray word after a debhelper substitution): fail on the shell's complaint.
dpkg_clean() {
  local out rc=0
  out="$(dpkg "$@" 2>&1)" || rc=$?
  printf '%s\n' "$out"
  [ "$rc" -eq 0 ] && ! grep -E '(postinst|prerm|postrm|preinst): [0-9]+: ' <<<"$out"
}

user="nmdeb$$"
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  userdel "$user" 2>/dev/null || true
  ip netns del "nmdeb$$" 2>/dev/null || true
  dpkg --purge netmon >/dev/null 2>&1 || true
}
trap cleanup EXIT

deb="$(./packaging/build-deb.sh | tail -n 1)"
deb="${deb##* }"
check "the .deb was built ($deb)" test -f "$deb"
# Without a package every later check fails for that one reason.
[ -f "$deb" ] || { echo "$pass passed, $fail failed"; exit 1; }

# build-deb.sh sourced packaging/dev/deps.sh, which installs lintian and the
# rest of what this test runs.
source packaging/dev/deps.sh
set +e # deps.sh sets -e; here every check runs and is counted.
netmon_check_commands lintian dpkg-deb dpkg tar getent stat systemd-analyze install setpriv useradd userdel sed grep mktemp || exit 1
# A lintian that cannot run fails this check (exit status 127 or 2), as do
# error tags (--fail-on error).
lint="$(lintian --fail-on error --tag-display-limit 0 "$deb" 2>&1)"; lint_rc=$?
echo "$lint" | sed 's/^/  lintian: /'
check "lintian ran and reports no errors (exit $lint_rc)" test "$lint_rc" -eq 0

contents="$(dpkg-deb --contents "$deb")"
has() { grep -qE "^$1 .* \./$2\$" <<<"$contents"; }
check "netmond in /usr/sbin, 0755" has '-rwxr-xr-x' 'usr/sbin/netmond'
for b in netmonctl netmon-tui; do check "$b in /usr/bin, 0755" has '-rwxr-xr-x' "usr/bin/$b"; done
check "config is /etc/netmon/netmond.toml, 0640" has '-rw-r-----' 'etc/netmon/netmond.toml'
check "category rules shipped" has '-rw-r--r--' 'usr/share/netmon/categories.toml'
check "API schema shipped for scripts" has '-rw-r--r--' 'usr/share/netmon/proto/netmon/v1/netmon.proto'
check "systemd unit shipped" has '-rw-r--r--' 'usr/lib/systemd/system/netmond.service'
check "user unit netmon-notify shipped" has '-rw-r--r--' 'usr/lib/systemd/user/netmon-notify.service'
check "copyright file" has '-rw-r--r--' 'usr/share/doc/netmon/copyright'
check "man page netmond(8)" has '-rw-r--r--' 'usr/share/man/man8/netmond.8.gz'
for b in netmonctl netmon-tui; do check "man page $b(1)" has '-rw-r--r--' "usr/share/man/man1/$b.1.gz"; done
for b in netmond netmonctl netmon-tui; do
  check "bash completion for $b" has '-rw-r--r--' "usr/share/bash-completion/completions/$b"
  check "zsh completion for $b" has '-rw-r--r--' "usr/share/zsh/vendor-completions/_$b"
  check "fish completion for $b" has '-rw-r--r--' "usr/share/fish/vendor_completions.d/$b.fish"
done
ctrl="$(dpkg-deb --field "$deb" Depends)"
check "Depends has libpcap from shlibs ($ctrl)" grep -q libpcap <<<"$ctrl"
check "conffile registered" bash -c 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | grep -qx /etc/netmon/netmond.toml' _ "$deb"

dpkg --purge netmon >/dev/null 2>&1 || true
check "dpkg -i installs, maintainer scripts clean" dpkg_clean -i "$deb"
check "group netmon exists" getent group netmon
check "config is root:netmon 0640" test "$(stat -c '%U:%G %a' /etc/netmon/netmond.toml)" = "root:netmon 640"
check "systemd-analyze verify passes on the installed unit" systemd-analyze verify /usr/lib/systemd/system/netmond.service
# The user unit, as a user manager would load it (root has no runtime
# directory here: a temporary one). verify exits 0 on an unknown key or a
# bad value, so its "file:line:" warnings fail the check too.
verify_user_unit() {
  local rt out rc
  rt="$(mktemp -d)"
  out="$(XDG_RUNTIME_DIR="$rt" systemd-analyze --user verify /usr/lib/systemd/user/netmon-notify.service 2>&1)"; rc=$?
  rm -rf "$rt"
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/  verify: /'
  [ "$rc" -eq 0 ] && ! grep -qE '\.service:[0-9]+:' <<<"$out"
}
check "systemd-analyze --user verify passes on the installed user unit" verify_user_unit
check "the user unit runs netmonctl alerts --follow --notify" \
  grep -qx 'ExecStart=/usr/bin/netmonctl alerts --follow --notify' /usr/lib/systemd/user/netmon-notify.service

# What systemd does for the unit: runtime and state directories, Group=, UMask=.
start_daemon() {
  install -d -m 0750 -o root -g netmon /run/netmon
  install -d -m 0750 -o root -g netmon /var/lib/netmon
  (umask 0027; exec setpriv --regid netmon --keep-groups /usr/sbin/netmond) 2>>/tmp/netmond-deb-test.log &
  daemon=$!
  for _ in $(seq 100); do [ -S /run/netmon/netmond.sock ] && return 0; sleep 0.1; done
  return 1
}
stop_daemon() { kill -TERM "$daemon"; wait "$daemon"; local rc=$?; daemon=""; return $rc; }
# The same under the unit's sandbox (capability bounding set, system-call
# filter, address families, namespaces, read-only system), emulated without
# systemd: a system call, capability or path the unit forbids fails here.
start_sandboxed() {
  install -d -m 0750 -o root -g netmon /run/netmon
  install -d -m 0750 -o root -g netmon /var/lib/netmon
  /usr/bin/python3 packaging/tests/unit-sandbox.py /usr/lib/systemd/system/netmond.service \
    -- /usr/sbin/netmond 2>>/tmp/netmond-deb-sandbox.log &
  daemon=$!
  for _ in $(seq 100); do [ -S /run/netmon/netmond.sock ] && return 0; sleep 0.1; done
  return 1
}
ctl() { setpriv --reuid "$user" --regid "$user" --init-groups /usr/bin/netmonctl --json "$@"; }
field() { python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }

check "netmond starts as the unit's ExecStart" start_daemon
useradd --system --no-create-home --shell /usr/sbin/nologin -G netmon "$user"
status="$(setpriv --reuid "$user" --regid "$user" --init-groups /usr/bin/netmonctl --json status 2>&1)"
check "a netmon member gets status through /run/netmon" grep -q '"version"' <<<"$status"
check "netmond stops cleanly on SIGTERM" stop_daemon
check "the database was created" test -s /var/lib/netmon/netmon.db

# A process in this namespace uploads to a peer namespace over a veth pair
# while netmond runs sandboxed: it must attribute the same way as above.
attribution="$(field attribution <<<"$status")"
peer="nmdeb$$"; veth="nmdb$$"
ip netns add "$peer"
ip link add "${veth}a" type veth peer name "${veth}b" netns "$peer"
ip addr add 10.254.77.1/30 dev "${veth}a"; ip link set "${veth}a" up
ip -n "$peer" addr add 10.254.77.2/30 dev "${veth}b"; ip -n "$peer" link set "${veth}b" up
sandbox_upload() {
  local n=4194304 sink up pid i
  ip netns exec "$peer" python3 -c '
import socket
s = socket.create_server(("10.254.77.2", 5399)); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20)
while c.recv(65536): pass
c.sendall(b"k")' &
  sink=$!
  sleep 0.5
  python3 -c '
import socket, sys, time
c = socket.create_connection(("10.254.77.2", 5399), timeout=20)
c.sendall(b"u" * int(sys.argv[1])); c.shutdown(socket.SHUT_WR); c.recv(1)
time.sleep(8)' "$n" &
  pid=$!
  for i in $(seq 40); do
    up="$(ctl top --limit 0 | python3 -c '
import json, sys
top = json.load(sys.stdin)
print(sum(p["up_bytes"] for p in top["processes"] if p["pid"] == int(sys.argv[1])))' "$pid")"
    [ "${up:-0}" -ge "$n" ] && break
    sleep 0.25
  done
  kill "$pid" 2>/dev/null; wait "$pid" "$sink" 2>/dev/null
  echo "sandboxed netmond credited ${up:-0} bytes for a $n-byte upload"
  # Headers add at most 6% and the handshake (tests' tcp_credit_hi).
  [ "${up:-0}" -ge "$n" ] && [ "${up:-0}" -le $((n + n * 6 / 100 + 16384)) ]
}
check "netmond starts under the unit's sandbox" start_sandboxed
sandboxed="$(ctl status 2>&1)"
check "the sandboxed daemon attributes the same way ($attribution)" test "$(field attribution <<<"$sandboxed")" = "$attribution"
check "the sandboxed daemon credits an upload to its process" sandbox_upload
check "the sandboxed daemon stops cleanly on SIGTERM" stop_daemon
check "the sandboxed daemon logged no permission error" bash -c '! grep -iE "denied|not permitted|read-only" /tmp/netmond-deb-sandbox.log'
ip netns del "$peer" 2>/dev/null

sed -i 's/^# log_level = "info"/log_level = "debug"/' /etc/netmon/netmond.toml
check "dpkg -i again (upgrade) succeeds, scripts clean" dpkg_clean -i --force-confold "$deb"
check "the changed conffile is kept" grep -qx 'log_level = "debug"' /etc/netmon/netmond.toml
check "the database survives the upgrade" test -s /var/lib/netmon/netmon.db

check "dpkg --purge succeeds, scripts clean" dpkg_clean --purge netmon
check "purge removed /var/lib/netmon" test ! -e /var/lib/netmon
check "purge removed /etc/netmon" test ! -e /etc/netmon
check "purge removed the binaries" test ! -e /usr/sbin/netmond

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
