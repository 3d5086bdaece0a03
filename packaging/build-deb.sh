#!/usr/bin/env bash
# Builds netmon_<version>_<arch>.deb from a clean clone: installs the build
# dependencies and cargo-deb when missing, builds the release binaries,
# generates man pages and completions, and packs. Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."
source packaging/dev/deps.sh

# deps.sh installed dpkg-dev (dpkg-shlibdeps) and liblzma-dev (cargo-deb).
netmon_check_commands cargo cc dpkg-shlibdeps python3 >&2
if ! cargo deb --version >/dev/null 2>&1; then
  echo "netmon: installing cargo-deb" >&2
  cargo install cargo-deb --locked --version 3.8.0 >&2
fi

cargo build --release --workspace --bins --locked >&2
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
rm -rf packaging/build
for bin in netmond netmonctl netmon-tui; do
  NETMON_GENERATE_ASSETS="$PWD/packaging/build" "$target/release/$bin"
done
cargo deb -p netmond --no-build --locked --output "$target/debian/" 2>&1 | tail -n 1
