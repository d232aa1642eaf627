# Common settings for the luws cross scripts. Source it; don't run it.
# shellcheck shell=bash
set -euo pipefail

CROSS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../tools/lib.sh
source "$CROSS_DIR/../tools/lib.sh"
REPO_DIR="$LUWS_ROOT"
WORK="$CROSS_DIR/work"
OUT="$CROSS_DIR/out"
MIRROR="$LUWS_DEBIAN_MIRROR"

# The caller's PATH, kept across nested cross scripts (all.sh runs verify.sh): its python3 is
# the one with PyPI's websockets (tools/install-deps.sh).
ORIG_PATH="${LUWS_ORIG_PATH:-$PATH}"
export LUWS_ORIG_PATH="$ORIG_PATH"
# Debian's own Rust (rustc-web/cargo-web 1.96 from bookworm-security) lives in
# /usr/bin as plain `rustc`/`cargo`; rustup's proxies in ~/.cargo/bin must not
# win inside these scripts.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$PATH"

ALL_TARGETS="aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf mipsel-unknown-linux-gnu mipsel-unknown-linux-uclibc"
FAST_TARGETS="aarch64-unknown-linux-gnu mipsel-unknown-linux-uclibc"

# target_vars TRIPLE: sets DEB_ARCH GNU_TRIPLE QEMU SUITE SYSROOT GLIBC_FLOOR LIBC
target_vars() {
  case "$1" in
    aarch64-unknown-linux-gnu)
      DEB_ARCH=arm64 GNU_TRIPLE=aarch64-linux-gnu QEMU=qemu-aarch64 SUITE=bullseye GLIBC_FLOOR=2.28 LIBC=glibc ;;
    armv7-unknown-linux-gnueabihf)
      DEB_ARCH=armhf GNU_TRIPLE=arm-linux-gnueabihf QEMU=qemu-arm SUITE=bullseye GLIBC_FLOOR=2.28 LIBC=glibc ;;
    mipsel-unknown-linux-gnu)
      DEB_ARCH=mipsel GNU_TRIPLE=mipsel-linux-gnu QEMU=qemu-mipsel SUITE=bookworm GLIBC_FLOOR=2.36 LIBC=glibc ;;
    mipsel-unknown-linux-uclibc)
      DEB_ARCH=mipsel GNU_TRIPLE=mipsel-linux-gnu QEMU=qemu-mipsel SUITE=uclibc GLIBC_FLOOR= LIBC=uclibc ;;
    *) echo "unknown target: $1 (known: $ALL_TARGETS)" >&2; return 2 ;;
  esac
  if [ "$LIBC" = uclibc ]; then
    SYSROOT="$WORK/sysroot-uclibc-mipsel"
  else
    SYSROOT="$WORK/sysroot-$DEB_ARCH-$SUITE"
  fi
}

log() { printf '\033[1m[cross]\033[0m %s\n' "$*" >&2; }
