#!/usr/bin/env bash
# Installs what building and testing netmon needs on Debian 12 / Ubuntu:
# the C libraries and tools from apt, and Rust (rustup) when cargo is missing.
# Sourced by run.sh, test.sh, build-deb.sh, tests/deb.sh and bench/live.sh;
# safe to run again. After sourcing, `netmon_check_commands [CMD...]` checks
# that every external command the scripts and tests run (or just CMD...)
# resolves, and names the package to install for each that does not.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  build-essential pkg-config libpcap-dev   # building (pcap crate links libpcap)
  ca-certificates curl                     # crates.io and rustup over TLS
  dpkg-dev liblzma-dev lintian             # .deb build (cargo-deb) and its test
  iproute2 iputils-ping util-linux passwd procps  # lab namespaces, users, setpriv
  iperf3 python3 tmux sqlite3 systemd      # traffic, TUI test, DB shell, unit check
  python3-seccomp                          # the unit's sandbox, emulated in the .deb test
  mount e2fsprogs                          # storage fault tests (tmpfs, immutable dir)
  python3-venv python3-pip                 # Python client tests (venv)
  dbus                                     # a private session bus (alerts --notify test)
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev  # eBPF attribution
)

# Every external command the scripts (packaging/**) and the tests
# (*/tests/integration) run, and the Debian 12 package that provides it. The
# tests' own table (COMMAND_PACKAGES in netmond/testkit/src/lab/commands.rs)
# must agree with this one; a test checks it. Format: command package.
COMMAND_PACKAGES=(
  sh dash                bash bash
  cc build-essential     pkg-config pkg-config    sudo sudo
  curl curl
  dpkg dpkg              dpkg-deb dpkg            dpkg-query dpkg
  dpkg-shlibdeps dpkg-dev                         lintian lintian
  tar tar                grep grep                sed sed
  xargs findutils        getent libc-bin          getconf libc-bin
  id coreutils           env coreutils            sleep coreutils
  seq coreutils          sort coreutils           stat coreutils
  install coreutils      timeout coreutils        mktemp coreutils
  ip iproute2            ss iproute2
  ping iputils-ping
  setpriv util-linux     runuser util-linux
  mount mount            umount mount             chattr e2fsprogs
  useradd passwd         userdel passwd           usermod passwd
  groupadd passwd        groupdel passwd
  kill procps            pgrep procps
  iperf3 iperf3          python3 python3          pip3 python3-pip
  tmux tmux              sqlite3 sqlite3          systemd-analyze systemd
  clang clang            llvm-strip llvm          bpftool bpftool
  dbus-daemon dbus
)

# The package that provides command $1 ("" when the table does not name it).
netmon_package_of() {
  local i
  for ((i = 0; i < ${#COMMAND_PACKAGES[@]}; i += 2)); do
    if [ "${COMMAND_PACKAGES[i]}" = "$1" ]; then
      echo "${COMMAND_PACKAGES[i + 1]}"
      return 0
    fi
  done
  echo ""
}

# Checks that each command (default: every one in COMMAND_PACKAGES, and
# cargo; sudo only for a user who is not root) resolves; names the package to
# install for each that does not. The sbin directories count: a user's PATH
# lacks them, sudo's has them.
netmon_check_commands() {
  local cmds=("$@") missing=() c pkg i
  if [ "${#cmds[@]}" -eq 0 ]; then
    cmds=(cargo)
    for ((i = 0; i < ${#COMMAND_PACKAGES[@]}; i += 2)); do
      c="${COMMAND_PACKAGES[i]}"
      [ "$c" = sudo ] && [ -z "$SUDO" ] && continue
      cmds+=("$c")
    done
  fi
  for c in "${cmds[@]}"; do
    PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$c" >/dev/null 2>&1 && continue
    if [ "$c" = cargo ]; then
      missing+=("cargo (Rust: https://rustup.rs)")
    else
      pkg="$(netmon_package_of "$c")"
      missing+=("$c (package ${pkg:-unknown: add it to COMMAND_PACKAGES in packaging/dev/deps.sh})")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    for c in "${missing[@]}"; do echo "netmon: command not found: $c" >&2; done
    return 1
  fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "netmon: installing ${missing[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # iperf3 asks whether to start a daemon; the answer is no.
  echo "iperf3 iperf3/start_daemon boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "netmon: installing Rust with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
