#!/bin/sh
# The Lua version matrix: builds the module for each Lua version and runs the whole busted suite
# against it with the matching interpreter.
#
#   tools/matrix.sh [lua51 lua52 lua53 lua54 luajit]   (default: all five)
#
# The versions build in one shared directory (target/matrix/build; Lua 5.1 reuses target/), and
# each module is copied to target/matrix/<ver>/lua/luws.so, where
# the specs find it through LUWS_CPATH (spec/helper.lua); LUWS_LUA names the interpreter for
# specs that start child interpreters. Needs Debian's lua5.x/luajit interpreters with busted and
# LuaSocket for each, python3 with websockets, and cargo.
#
# Prints "<ver>: passed N, failed N" per version and a last line "N passed, N failed" for all
# (the only line in that form, so tools/test-all.sh, which sums such lines, counts each once);
# exits non-zero when any spec failed or any build or busted run broke. The TAP output of each
# run is kept in target/matrix/<ver>/busted.tap.
#
# Environment: BUSTED (default /usr/bin/busted), BUSTED_ARGS (extra busted arguments, e.g.
# "--filter=wssend"), MATRIX_NO_BUILD=1 (test the modules already built), CARGO_FEATURES_EXTRA
# (default "module,tls-native"), MATRIX_TIMEOUT (seconds one busted run may take, default 600;
# then it and the test servers it started are killed and the version counts as failed).

set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

ALL="lua51 lua52 lua53 lua54 luajit"
VERSIONS=${*:-$ALL}
BUSTED=${BUSTED:-/usr/bin/busted}
BUSTED_ARGS=${BUSTED_ARGS:-}
FEATURES_EXTRA=${CARGO_FEATURES_EXTRA:-module,tls-native}
TIMEOUT=${MATRIX_TIMEOUT:-600}

interpreter() {
  case "$1" in
    lua51) echo lua5.1 ;;
    lua52) echo lua5.2 ;;
    lua53) echo lua5.3 ;;
    lua54) echo lua5.4 ;;
    luajit) echo luajit ;;
    *) return 1 ;;
  esac
}

for v in $VERSIONS; do
  if ! interpreter "$v" >/dev/null; then
    echo "matrix: unknown Lua version '$v' (one of: $ALL)" >&2
    exit 2
  fi
done

now() { date +%s; }
# Indented spec output; "N passed, N failed" inside it gets two spaces, so that only this
# script's last line has the form tools/test-all.sh sums.
excerpt() { sed -E 's/^/    /; s/ (passed[,;]) / \1  /g'; }
total_pass=0
total_fail=0
broken=""
summary=""
t_all=$(now)

for v in $VERSIONS; do
  lua=$(interpreter "$v")
  dir="target/matrix/$v"
  t0=$(now)
  echo "== $v ($lua)"

  if ! command -v "$lua" >/dev/null 2>&1; then
    echo "$v: interpreter $lua not found"
    broken="$broken $v"
    summary="$summary$v: passed 0, failed 1 (no $lua)\n"
    total_fail=$((total_fail + 1))
    continue
  fi

  if [ "${MATRIX_NO_BUILD:-}" != 1 ]; then
    mkdir -p "$dir"
    # One shared build directory: only mlua and luws differ between versions, so every other
    # crate compiles once (the Lua 5.1 default build reuses the main target/ itself).
    build_dir=target/matrix/build
    [ "$v,$FEATURES_EXTRA" = "lua51,module,tls-native" ] && build_dir=target
    if ! CARGO_TARGET_DIR="$build_dir" cargo build --release --no-default-features \
        --features "$v,$FEATURES_EXTRA" >"$dir/build.log" 2>&1; then
      tail -30 "$dir/build.log" | sed 's/^/    /'
      echo "$v: build failed (log: $dir/build.log)"
      broken="$broken $v"
      summary="$summary$v: passed 0, failed 1 (build failed)\n"
      total_fail=$((total_fail + 1))
      continue
    fi
    tools/install-module.sh "$build_dir/release/libluws.so" "$dir/lua"
  fi
  if [ ! -f "$dir/lua/luws.so" ]; then
    echo "$v: $dir/lua/luws.so missing"
    broken="$broken $v"
    summary="$summary$v: passed 0, failed 1 (no module)\n"
    total_fail=$((total_fail + 1))
    continue
  fi

  tap="$dir/busted.tap"
  # shellcheck disable=SC2086 # BUSTED_ARGS is a list of words
  # timeout(1) signals its whole process group, so the test servers go too.
  # LUWS_LUA: the interpreter specs use for child processes (spec/shim_spec.lua).
  LUWS_LUA="$lua" LUWS_CPATH="$ROOT/$dir/lua/?.so" timeout -k 10 "$TIMEOUT" \
    "$lua" "$BUSTED" -o TAP $BUSTED_ARGS >"$tap" 2>"$dir/busted.err"
  rc=$?
  pass=$(grep -c '^ok ' "$tap")
  fail=$(grep -c '^not ok ' "$tap")
  note=""
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail=$((fail + 1))
    note=" (busted did not finish within $TIMEOUT s)"
  elif [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
    # busted itself broke (the helper failed to load, a spec file did not compile, ...).
    fail=1
    note=" (busted exited with $rc)"
    tail -20 "$dir/busted.err" "$tap" | excerpt
  fi
  if [ "$fail" -gt 0 ]; then
    broken="$broken $v"
    grep -A6 '^not ok ' "$tap" | excerpt | head -80
  fi
  line="$v: passed $pass, failed $fail$note ($(($(now) - t0)) s)"
  echo "$line"
  summary="$summary$line\n"
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
done

echo "== summary ($(($(now) - t_all)) s)"
printf "%b" "$summary"
[ -n "$broken" ] && echo "failing:$broken"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
