#!/usr/bin/env bash
# cross/install-deps.sh — idempotent: everything the cross builds need on a
# fresh Debian 12 (bookworm) machine, as root. Nothing is downloaded outside
# Debian's archive, crates.io and PyPI.
#   apt:  Debian's Rust 1.96 (rustc-web, cargo-web, rust-web-src from
#         bookworm-security), cross gcc/binutils, qemu-user, uClibc-ng sources
#   pip:  ziglang into cross/work/venv (only for its copy of LLVM libunwind's
#         sources, built soft-float for the Vera target)
# Target sysroots (Debian bullseye/bookworm libc6 + lua5.1 of each
# architecture) are fetched by cross/sysroot.sh with a private apt
# configuration under cross/work/, so no dpkg --add-architecture is needed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CROSS_DIR"
apt_need rustc-web cargo-web rust-web-src gcc g++ make xz-utils python3 python3-venv \
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-mipsel-linux-gnu g++-mipsel-linux-gnu \
  libc6-dev-mipsel-cross qemu-user uclibc-source dpkg-dev
/usr/bin/rustc --version | grep -q '^rustc 1\.9[6-9]\|^rustc 1\.[1-9][0-9][0-9]' || {
  echo "[install-deps] /usr/bin/rustc is $(/usr/bin/rustc --version); need rustc-web >= 1.96 (bookworm-security)" >&2; exit 1; }
mkdir -p work
if ! ls -d work/venv/lib/python3*/site-packages/ziglang/lib/libunwind >/dev/null 2>&1; then
  echo "[install-deps] pip: ziglang (LLVM libunwind sources) into cross/work/venv"
  [ -x work/venv/bin/pip ] || python3 -m venv work/venv
  work/venv/bin/pip install -q ziglang
fi
echo "[install-deps] ok: $(/usr/bin/rustc --version), $(/usr/bin/cargo --version | cut -d' ' -f1-2), $(qemu-mipsel --version | head -1)"
