#!/usr/bin/env bash
# cross/uclibc.sh — build the Vera-like test userland in
# cross/work/sysroot-uclibc-mipsel (idempotent; ~6 min the first time):
#   1. softfp: Rust's compiler_builtins for mipsel-unknown-linux-uclibc
#      (soft-float __adddf3 & co.; Debian's mipsel libgcc.a is hard-float).
#   2. uClibc-ng 1.0.35 (Debian's uclibc-source) for MIPS32r2 LE o32
#      soft-float with NPTL, sonames .so.0 and loader /lib/ld-uClibc.so.0 as
#      on the boxes (uClibc 0.9.33), built with Debian's gcc-mipsel-linux-gnu
#      -msoft-float.
#   3. Lua 5.1.5 (sources from the lua-src crate) + cross/uclibc/lua.c,
#      soft-float, dlopen-capable: usr/bin/lua.
#   4. rustlink/: LLVM libunwind (from PyPI's ziglang) built soft-float as a
#      static libgcc_s.a, and getrandom_urandom.o, for cross/build.sh.
# Everything is checked to contain no FPU instruction.
source "$(dirname "$0")/lib.sh"
target_vars mipsel-unknown-linux-uclibc
U="$WORK/uclibc"; mkdir -p "$U"
stamp="$SYSROOT/.complete"
if [ -f "$stamp" ] && [ "$stamp" -nt "$CROSS_DIR/uclibc.sh" ]; then log "uClibc sysroot $SYSROOT exists"; exit 0; fi
T=mipsel-unknown-linux-uclibc
CC=mipsel-linux-gnu-gcc
ARCHFLAGS="-msoft-float -march=mips32r2 -mno-dsp -mno-mips16"
export RUSTC_BOOTSTRAP=1
UC_STAMP="$SYSROOT/.uclibc-installed"
if [ ! -f "$UC_STAMP" ] || [ "$CROSS_DIR/uclibc/uclibc-ng.config" -nt "$UC_STAMP" ]; then
rm -rf "$SYSROOT"; mkdir -p "$SYSROOT"

# --- 1. soft-float runtime helpers from compiler_builtins -------------------
log "softfp: compiler_builtins for $T"
rm -rf "$U/softfp"; mkdir -p "$U/softfp"; cp -r "$CROSS_DIR/softfp/Cargo.toml" "$CROSS_DIR/softfp/src" "$U/softfp/"
(cd "$U/softfp" && CARGO_PROFILE_RELEASE_PANIC=abort cargo build -q --release --target $T \
   -Zbuild-std=core -Zbuild-std-features= --target-dir "$U/softfp/target")
CB="$(ls "$U"/softfp/target/$T/release/deps/libcompiler_builtins-*.rlib | head -1)"
rm -rf "$U/softfp/objs"; mkdir -p "$U/softfp/objs"
(cd "$U/softfp/objs" && ar x "$CB" && rm -f lib.rmeta && mipsel-linux-gnu-ar crs ../libsoftfp.a ./*.o)
SOFTFP="$U/softfp/libsoftfp.a"
GCCLIB="$($CC -print-libgcc-file-name)"

# --- 2. uClibc-ng ------------------------------------------------------------
KH="$U/kernel-headers"
if [ ! -d "$KH/linux" ]; then
  mkdir -p "$KH"
  for d in linux asm asm-generic mtd; do cp -r "/usr/mipsel-linux-gnu/include/$d" "$KH/"; done
fi
UC="$U/uClibc-ng-1.0.35"
rm -rf "$UC"; tar -C "$U" -xf /usr/src/uClibc-ng-1.0.35.tar.xz
# With ABI_VERSION=0 the loader's ".so.0 compatibility link" would point at itself.
sed -i 's|ln -sf $(UCLIBC_LDSO_NAME).so.$(ABI_VERSION) $(UCLIBC_LDSO_NAME).so.0|true|' "$UC/ldso/ldso/Makefile.in"
log "uClibc-ng 1.0.35: configure + build"
UMAKE=(make -C "$UC" -j"$(nproc)" ARCH=mips CROSS_COMPILE=mipsel-linux-gnu- ABI_VERSION=0
       KERNEL_HEADERS="$KH" UCLIBC_EXTRA_CFLAGS="$ARCHFLAGS" LIBGCC="$SOFTFP $GCCLIB" V=0)
"${UMAKE[@]}" KCONFIG_ALLCONFIG="$CROSS_DIR/uclibc/uclibc-ng.config" allnoconfig >"$U/uclibc-config.log" 2>&1
# keep the helper-program build on the host compiler
"${UMAKE[@]}" >"$U/uclibc-build.log" 2>&1 || { tail -40 "$U/uclibc-build.log"; exit 1; }
"${UMAKE[@]}" PREFIX="$SYSROOT" install >"$U/uclibc-install.log" 2>&1 || { tail -40 "$U/uclibc-install.log"; exit 1; }
cp -r "$KH"/* "$SYSROOT/usr/include/"
cp "$SOFTFP" "$SYSROOT/usr/lib/"
touch "$UC_STAMP"
else
  log "uClibc-ng already installed in $SYSROOT (delete it to rebuild)"
fi
SOFTFP="$SYSROOT/usr/lib/libsoftfp.a"
mkdir -p "$SYSROOT/rustlink"
# uClibc 0.9.33's library split (libpthread/librt/libm/libdl separate) as
# link stubs + symbol lists + empty run-time stand-ins: see uclibc/model.py.
python3 "$CROSS_DIR/uclibc/model.py" "$U/uClibc-ng-1.0.35" "$SYSROOT"

# gcc driver options to compile/link against this userland
UCFLAGS=(--sysroot="$SYSROOT" $ARCHFLAGS -nostdinc -isystem "$SYSROOT/usr/include"
         -isystem "$($CC -print-file-name=include)")
# -B: crt1.o/crti.o/crtn.o from uClibc, not from Debian's glibc cross dir
ULDFLAGS=(--sysroot="$SYSROOT" $ARCHFLAGS -B"$SYSROOT/usr/lib/" -no-pie
          -Wl,--dynamic-linker=/lib/ld-uClibc.so.0
          -L"$SYSROOT/usr/lib" -L"$SYSROOT/lib" -Wl,-rpath-link,"$SYSROOT/lib")

# --- 3. Lua 5.1.5 --------------------------------------------------------------
LS="$(ls -d "$HOME"/.cargo/registry/src/*/lua-src-*/lua-5.1.5 2>/dev/null | sort | tail -1)"
if [ -z "$LS" ]; then
  log "fetching the lua-src crate (Lua 5.1.5 sources)"
  mkdir -p "$WORK/luasrc/src"; touch "$WORK/luasrc/src/lib.rs"
  printf '[package]\nname = "luasrc-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nlua-src = "550"\n[workspace]\n' > "$WORK/luasrc/Cargo.toml"
  (cd "$WORK/luasrc" && cargo fetch -q)
  LS="$(ls -d "$HOME"/.cargo/registry/src/*/lua-src-*/lua-5.1.5 | sort | tail -1)"
fi
log "Lua 5.1.5 from $LS"
rm -rf "$U/lua"; mkdir -p "$U/lua"
for f in "$LS"/*.c "$CROSS_DIR/uclibc/lua.c"; do
  $CC "${UCFLAGS[@]}" -O2 -fPIC -DLUA_USE_POSIX -DLUA_USE_DLOPEN -I"$LS" -c "$f" -o "$U/lua/$(basename "$f" .c).o"
done
mkdir -p "$SYSROOT/usr/bin"
$CC "${ULDFLAGS[@]}" -Wl,-E -o "$SYSROOT/usr/bin/lua" "$U"/lua/*.o -ldl -lm "$SOFTFP"

# --- 4. link helpers for cross/build.sh --------------------------------------
ZIG_LIB="$(ls -d "$WORK"/venv/lib/python3*/site-packages/ziglang/lib 2>/dev/null | head -1)"
[ -n "$ZIG_LIB" ] || { "$WORK/venv/bin/pip" -q install ziglang 2>/dev/null || { python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" -q install ziglang; }
                       ZIG_LIB="$(ls -d "$WORK"/venv/lib/python3*/site-packages/ziglang/lib | head -1)"; }
UW="$ZIG_LIB/libunwind"
log "LLVM libunwind (soft-float, hidden symbols) from $UW"
rm -rf "$U/unwind"; mkdir -p "$U/unwind"
UWFLAGS=("${UCFLAGS[@]}" -Os -fPIC -funwind-tables -fno-exceptions -fno-rtti -fvisibility=hidden
         -D_LIBUNWIND_IS_NATIVE_ONLY -D_LIBUNWIND_HIDE_SYMBOLS -DNDEBUG -I"$UW/include")
for f in libunwind.cpp; do mipsel-linux-gnu-g++ "${UWFLAGS[@]}" -nostdinc++ -std=c++17 -c "$UW/src/$f" -o "$U/unwind/${f%.*}.o"; done
for f in UnwindLevel1.c UnwindLevel1-gcc-ext.c; do $CC "${UWFLAGS[@]}" -std=c99 -c "$UW/src/$f" -o "$U/unwind/${f%.*}.o"; done
for f in UnwindRegistersSave.S UnwindRegistersRestore.S; do $CC "${UWFLAGS[@]}" -c "$UW/src/$f" -o "$U/unwind/${f%.*}.o"; done
rm -f "$SYSROOT/rustlink/libgcc_s.a"
mipsel-linux-gnu-ar crs "$SYSROOT/rustlink/libgcc_s.a" "$U"/unwind/*.o
$CC "${UCFLAGS[@]}" -Os -fPIC -c "$CROSS_DIR/uclibc/getrandom_urandom.c" -o "$SYSROOT/rustlink/getrandom_urandom.o"

# --- checks --------------------------------------------------------------------
"$CROSS_DIR/check-softfloat.sh" "$SYSROOT/lib"/*.so* "$SYSROOT/usr/bin/lua" "$SYSROOT/rustlink/libgcc_s.a" "$SYSROOT/rustlink/getrandom_urandom.o"
out="$(qemu-mipsel -cpu 24KEc -L "$SYSROOT" "$SYSROOT/usr/bin/lua" -e 'print(_VERSION, 1.25 + 2.5, string.format("%.3f", math.sqrt(2)))')"
[ "$out" = "$(printf 'Lua 5.1\t3.75\t1.414')" ] || { echo "uClibc Lua self-test failed: $out" >&2; exit 1; }
touch "$stamp"
log "uClibc userland ready in $SYSROOT: $out"
