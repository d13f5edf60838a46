#!/usr/bin/env bash
# Shared set-up for scripts/serve and scripts/test: installs what a fresh Debian machine
# with only the Rust toolchain lacks, and points cargo at a target directory outside the
# clone so later runs on the same machine reuse the (slow) RocksDB build.

set -euo pipefail

# Reuse one build across clones: RocksDB's C++ takes 15+ minutes cold on 2 cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eventdbx-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# ensure_packages PKG... : installs the Debian packages that are missing.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "installing missing packages: ${missing[*]}" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Build dependencies: rocksdb's bindgen needs libclang; the C++ build needs a compiler.
ensure_build_packages() {
  ensure_packages libclang-dev clang g++ make pkg-config
}
