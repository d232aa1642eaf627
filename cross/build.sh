#!/usr/bin/env bash
# cross/build.sh TARGET [--probe]
#   Cross-compiles the luws Lua 5.1 module (or, with --probe, the throwaway
#   crate in cross/probe) for TARGET with Debian's rustc/cargo 1.96 and
#   -Zbuild-std, linked against the target sysroot (see cross/README.md).
#   Result: cross/out/TARGET/luws.so (or probe.so).
# Env: LUWS_FEATURES (default "lua51,module,tls-rustls", plus "bundled-roots" — Mozilla's CA
#      set compiled in — on the glibc targets; the Vera build leaves them out to fit 2 MiB),
#      LUWS_OPT_LEVEL (z).
source "$(dirname "$0")/lib.sh"
T="$1"; shift
MODE=luws; [ "${1:-}" = --probe ] && MODE=probe
target_vars "$T"

if [ "$LIBC" = uclibc ]; then "$CROSS_DIR/uclibc.sh"; else "$CROSS_DIR/sysroot.sh" "$T"; fi

# --- source snapshot (never touch the lead's Cargo.lock / target/) ----------
if [ "$MODE" = probe ]; then
  SRC="$WORK/probe"; mkdir -p "$SRC"
  cp "$CROSS_DIR/probe/Cargo.toml" "$SRC/"; rm -rf "$SRC/src"; cp -r "$CROSS_DIR/probe/src" "$SRC/"
  FEATURES=(); NAME=probe
else
  SRC="$WORK/luws-src"; mkdir -p "$SRC"
  grep -q 'tls-rustls' "$REPO_DIR/Cargo.toml" || { echo "Cargo.toml has no tls-rustls feature yet" >&2; exit 3; }
  (cd "$REPO_DIR" && tar --exclude=./target --exclude=./cross --exclude=./.git --exclude='./bench/target' \
     --exclude='./spec' -cf - .) | (cd "$SRC" && tar -xf -)
  default_features=lua51,module,tls-rustls
  [ "$LIBC" = uclibc ] || default_features=$default_features,bundled-roots
  if [ "$LIBC" = uclibc ]; then
    # Vera's flash budget: url's IDNA backend without Unicode tables (~100 KB of ICU data);
    # international host names must then be given in punycode (xn--…).
    (cd "$SRC" && cargo update -q -p idna_adapter --precise 1.0.0)
  fi
  FEATURES=(--no-default-features --features "${LUWS_FEATURES:-$default_features}"); NAME=luws
fi

STD_FEATURES=""
TU="$(echo "$T" | tr 'a-z-' 'A-Z_')"; TL="${T//-/_}"
export RUSTC_BOOTSTRAP=1
export CARGO_PROFILE_RELEASE_PANIC=unwind          # a Rust panic must become a Lua error
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${LUWS_OPT_LEVEL:-z}"
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_PROFILE_RELEASE_DEBUG=false

CC_BIN="$GNU_TRIPLE-gcc"
if [ "$LIBC" = glibc ]; then
  CFL="--sysroot=$SYSROOT"
  mkdir -p "$WORK/compat-$T"
  "$CC_BIN" --sysroot="$SYSROOT" -O2 -fPIC -c "$CROSS_DIR/glibc/compat.c" -o "$WORK/compat-$T/compat.o"
  RF="-C link-arg=--sysroot=$SYSROOT -C link-arg=$WORK/compat-$T/compat.o"
else
  # Vera: uClibc-ng, o32 soft-float, MIPS32r2. Everything linked must be
  # soft-float: the LLVM libunwind built by uclibc.sh stands in for libgcc_s
  # (static, so the module needs only libc/libpthread/libdl/libm on the box),
  # and getrandom uses a C backend (getrandom(2) if present, else /dev/urandom).
  CFL="--sysroot=$SYSROOT -msoft-float -march=mips32r2 -mno-dsp -nostdinc -isystem $SYSROOT/usr/include"
  CFL+=" -isystem $($CC_BIN -print-file-name=include) -isystem $($CC_BIN -print-file-name=include-fixed)"
  RF="-C link-arg=--sysroot=$SYSROOT -C link-arg=-msoft-float -C link-arg=-march=mips32r2"
  # crt*.o from uClibc (-B); libpthread/librt/libm/libdl as split on the boxes (linkstubs)
  RF+=" -C link-arg=-B$SYSROOT/usr/lib/ -L native=$SYSROOT/linkstubs -L native=$SYSROOT/rustlink"
  RF+=" -C link-arg=-L$SYSROOT/usr/lib -C link-arg=-L$SYSROOT/lib"
  # MIPS links align segments to 64 KiB pages by default; Vera's kernels use 4 KiB pages, and
  # the padding (up to 64 KiB of zeros in the file) counts against the flash budget.
  RF+=" -C link-arg=-Wl,-z,max-page-size=4096 -C link-arg=-Wl,-z,common-page-size=4096"
  RF+=" -C link-arg=$SYSROOT/rustlink/getrandom_urandom.o"
  RF+=" --cfg getrandom_backend=\"custom\""
  # permessage-deflate inflates but does not compress here (src/deflate.rs): miniz_oxide's
  # compressor is 21 KB the 2 MiB budget lacks, and 319 KB of RAM per connection.
  RF+=" ${LUWS_DEFLATE_CFG---cfg luws_inflate_only}"
  # Size budget (<= 2 MiB): no panic file/line strings, no Debug output (luws shows users
  # only Display text, and takes rustls's names from rustls, not from Debug; ~37 KB less
  # than fmt-debug=shallow), std size-optimised paths, and backtraces without symbol names
  # (~33 KB: the demangler; luws turns panics into Lua errors and prints no backtrace).
  RF+=" ${LUWS_SIZE_RUSTFLAGS--Zlocation-detail=none -Zfmt-debug=none}"
  STD_FEATURES="${LUWS_STD_FEATURES-panic-unwind,optimize_for_size,backtrace-trace-only}"
fi
export "CC_$TL=$CC_BIN" "CFLAGS_$TL=$CFL -ffunction-sections -fdata-sections" "AR_$TL=$GNU_TRIPLE-ar"
export "CARGO_TARGET_${TU}_LINKER=$CC_BIN"
export "CARGO_TARGET_${TU}_RUSTFLAGS=$RF"

log "cargo build $NAME for $T (rustc: $(rustc --version))"
start=$(date +%s)
(cd "$SRC" && cargo build --release --target "$T" -Zbuild-std=std,panic_unwind \
   ${STD_FEATURES:+-Zbuild-std-features="$STD_FEATURES"} \
   --target-dir "$WORK/target-$NAME" "${FEATURES[@]}")
mkdir -p "$OUT/$T"
cp "$WORK/target-$NAME/$T/release/lib$NAME.so" "$OUT/$T/$NAME.so"
log "built $OUT/$T/$NAME.so: $(stat -c %s "$OUT/$T/$NAME.so") bytes in $(( $(date +%s) - start ))s"
