#!/usr/bin/env bash
# Proves README's test command on a fresh, minimal Debian 12: debootstraps
# bookworm (variant minbase, plus sudo, which README's user has) into a temp
# directory, copies this clone's HEAD (git archive) into the home of a new
# user `dev` who may sudo, and runs ./packaging/dev/test.sh there as that
# user, to the end. Prints the elapsed time and each suite's test counts, and
# exits with test.sh's status. Run as root, on demand (CI does not run it:
# it builds everything from nothing: about 40 minutes on 2 cores).
#
# The Rust toolchain cannot be downloaded on this workplace, so the host's
# (rustup's active toolchain, else the one cargo is in) is bind-mounted
# read-only at /opt/rust, with its bin/ on the user's PATH as rustup would put
# it; crates come from crates.io into the chroot's own CARGO_HOME. Everything
# else, test.sh installs itself (apt, inside the chroot) from the Debian
# mirror this machine's apt sources name, with this machine's Acquire::
# settings and local CAs. Nothing of netmon's is installed on the host (debootstrap is,
# when missing). The chroot's mounts live in a private mount namespace and go
# with it; the root directory is removed on exit unless --keep.
#
# Usage: sudo packaging/dev/fresh-debian.sh [--keep] [--dir PARENT] [--log FILE]
set -euo pipefail

# ------------------------------------------------------------ inside: mounts + run
if [ "${1:-}" = "--inner" ]; then
  root=$2 toolchain=$3
  # Private propagation (unshare): nothing mounted here shows on the host.
  umount_all() { umount -R "$root" 2>/dev/null || true; }
  trap umount_all EXIT
  # "/" must be a mount point: `ip netns` makes it a slave mount.
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --bind /sys/fs/cgroup "$root/sys/fs/cgroup"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mkdir -p "$root/run/lock" "$root/run/user"
  mount --bind "$toolchain" "$root/opt/rust"
  mount -o remount,bind,ro "$root/opt/rust"
  # As README's user: a login-like environment with no sbin in PATH.
  chroot "$root" /usr/bin/env -i HOME=/home/dev USER=dev LOGNAME=dev SHELL=/bin/bash \
    LANG=C.UTF-8 TERM=dumb PATH=/opt/rust/bin:/usr/local/bin:/usr/bin:/bin \
    CARGO_HOME=/home/dev/.cargo \
    setpriv --reuid dev --regid dev --init-groups -- \
    bash -c 'cd ~/netmon && ./packaging/dev/test.sh' </dev/null
  exit
fi

# ------------------------------------------------------------ outside
keep=0 parent=/var/tmp log=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1; shift ;;
    --dir) parent=${2:?--dir needs a directory}; shift 2 ;;
    --log) log=${2:?--log needs a file}; shift 2 ;;
    -h | --help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-debian: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-debian: run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
say() { printf '[%s] fresh-debian: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
head=$(git -C "$repo" rev-parse --short HEAD)
log=${log:-$parent/netmon-fresh-debian-$head.log}

# The host's Rust toolchain directory (bin/cargo, bin/rustc, lib/).
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
rustc_bin=$(rustup which rustc 2>/dev/null || readlink -f "$(command -v rustc)") ||
  { echo "fresh-debian: no Rust toolchain on this machine to lend the chroot" >&2; exit 2; }
toolchain=$(dirname "$(dirname "$rustc_bin")")
for b in cargo rustc cargo-clippy cargo-fmt rustfmt; do
  [ -x "$toolchain/bin/$b" ] || { echo "fresh-debian: $toolchain/bin/$b is missing (clippy, rustfmt?)" >&2; exit 2; }
done

# The Debian mirror of this machine's apt sources, for suite $1 ("" if none).
mirror_for() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$1" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == s) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$1" 'BEGIN { RS = "" } {
      uri = ""; ok = 0; deb = 0; off = 0; n = split($0, L, "\n")
      for (j = 1; j <= n; j++) {
        if (L[j] ~ /^URIs:/) { split(L[j], a, " "); uri = a[2] }
        if (L[j] ~ /^Suites:/) { m = split(L[j], b, " "); for (k = 2; k <= m; k++) if (b[k] == s) ok = 1 }
        if (L[j] ~ /^Types:/ && L[j] ~ / deb( |$)/) deb = 1
        if (L[j] ~ /^Enabled: *no/) off = 1
      }
      if (ok && deb && !off && uri != "") { print uri; exit } }' "$f"
  done
}
mirror=$(mirror_for bookworm | head -n 1)
security=$(mirror_for bookworm-security | head -n 1)
[ -n "$mirror" ] || { echo "fresh-debian: no bookworm mirror in /etc/apt/sources.list{,.d}" >&2; exit 2; }

command -v debootstrap >/dev/null || {
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

mkdir -p "$parent"
root=$(mktemp -d "$parent/netmon-fresh.XXXXXX")
chmod 0755 "$root" # it is the user's /; mktemp made it 0700
cleanup() {
  local rc=$?
  if [ "$keep" -eq 1 ]; then
    say "kept the root at $root"
  elif findmnt -rn -o TARGET | grep -q "^$root"; then
    say "something is still mounted under $root: not removing it"
  else
    rm -rf --one-file-system "$root"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
say "debootstrap bookworm (minbase) from $mirror into $root"
debootstrap --variant=minbase --include=sudo bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
  { tail -n 30 "$root.debootstrap.log" >&2; exit 1; }
rm -f "$root.debootstrap.log"

{
  echo "deb $mirror bookworm main"
  echo "deb $mirror bookworm-updates main"
  [ -z "$security" ] || echo "deb $security bookworm-security main"
} >"$root/etc/apt/sources.list"
apt-config dump | grep '^Acquire::' >"$root/etc/apt/apt.conf.d/99host-acquire" || true
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# This machine's own CAs (a TLS proxy on the way to crates.io, say): trusted
# in the chroot once test.sh installs ca-certificates.
if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
# As in Debian's container images: packages do not start daemons in here.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost\n' "$(hostname)" >"$root/etc/hosts"
chroot "$root" useradd --create-home --shell /bin/bash dev
echo 'dev ALL=(ALL) NOPASSWD:ALL' >"$root/etc/sudoers.d/dev"
chmod 0440 "$root/etc/sudoers.d/dev"
mkdir -p "$root/home/dev/netmon" "$root/opt/rust"
git -C "$repo" archive --format=tar HEAD | tar -x -C "$root/home/dev/netmon"
chroot "$root" chown -R dev:dev /home/dev

say "running ./packaging/dev/test.sh as user dev in the chroot (HEAD $head; Rust $("$toolchain/bin/rustc" --version)); log: $log"
rc=0
unshare --mount --propagation private -- "$0" --inner "$root" "$toolchain" >"$log" 2>&1 || rc=$?
elapsed=$(($(date +%s) - start))

echo "== fresh Debian 12 run of ./packaging/dev/test.sh at $head: exit $rc, $((elapsed / 60)) min $((elapsed % 60)) s (debootstrap included)"
echo "== per test binary (cargo test):"
# "Running unittests src/lib.rs (target/debug/deps/netmond-HASH)" names the
# crate; its integration binary ("integration-HASH") comes next.
awk '/^ *Running / { b = $NF; gsub(/[()]/, "", b); sub(/.*\//, "", b); sub(/-[0-9a-f]+$/, "", b)
       if ($2 == "unittests") { crate = b; suite = b " (" $3 ")" } else suite = crate " " b }
     /^ *Doc-tests / { suite = $2 " doc-tests" }
     /^test result:/ { print "  " suite ": " $0 }' "$log"
echo "== other steps:"
grep -E '^[0-9]+ passed, [0-9]+ failed$|^netmon: (FAILED|command not found|every test passed|[0-9]+ step)' "$log" | sed 's/^/  /' || true
[ "$rc" -eq 0 ] || { echo "== last lines of the log:"; tail -n 40 "$log"; }
exit "$rc"
