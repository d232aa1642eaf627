#!/usr/bin/env bash
# Runs the busted suite with one Lua against one built module; ends with the line
# `busted (LUA): N passed, N failed` and records that count for tools/test-all.sh.
#
#   tools/spec.sh [LUA] [CPATH] [busted arguments or spec files…]
#   tools/spec.sh --module LUA BACKEND [busted arguments…]   builds that module first
#
# LUA: a feature of the version table in tools/lib.sh (lua51 … lua55, luajit; a Lua that
# Debian lacks is built first) or an interpreter command (default lua5.1). CPATH: where
# `require "luws"` finds the module (default ./target/lua51/?.so). BACKEND: a TLS backend of
# tools/lib.sh (native, rustls); the module is built as tools/lib.sh's `module` does.
# Env: SPEC_TAP (keep busted's TAP output there), SPEC_TIMEOUT (seconds, default 600: then
# busted and the test servers it started are killed and the run counts as failed).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
if [ "${1:-}" = --module ]; then
  lua=${2:?usage: tools/spec.sh --module LUA BACKEND}
  module "$lua" "${3:?usage: tools/spec.sh --module LUA BACKEND}" ||
    { result 0 1 "busted ($lua, $3): build failed"; exit 1; }
  export LUWS_CPATH="$MODULE_DIR/?.so"
  shift 3
else
  lua=${1:-lua5.1}
  export LUWS_CPATH=${2:-./target/lua51/?.so}
  shift 2 2>/dev/null || shift $#
fi
case " $LUA_VERSIONS " in
  *" $lua "*) lua_ensure "$lua" || { result 0 1 "busted ($lua)"; exit 1; }; lua=$LUA_BIN ;;
esac
# The interpreter specs start for child processes (spec/shim_spec.lua, spec/misuse_spec.lua).
export LUWS_LUA=$lua
tap=${SPEC_TAP:-$(mktemp)}
# timeout(1) signals its whole process group, so the test servers go too.
timeout -k 10 "${SPEC_TIMEOUT:-600}" "$lua" /usr/bin/busted -o TAP "$@" >"$tap" 2>&1
rc=$?
grep -v '^ok ' "$tap"
passed=$(grep -c '^ok ' "$tap")
failed=$(grep -c '^not ok ' "$tap")
planned=$(grep -m1 -o '^1\.\.[0-9]*' "$tap" | cut -c4-)
[ -n "${SPEC_TAP:-}" ] || rm -f "$tap"
# A run that broke (a spec that does not compile, a hang) counts as one more failure.
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "busted did not finish within ${SPEC_TIMEOUT:-600} s"; failed=$((failed + 1))
elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "busted exited with $rc"; failed=1
elif [ "$passed" -eq 0 ] || [ "${planned:-0}" -ne $((passed + failed)) ]; then
  echo "busted planned ${planned:-no} tests and ran $((passed + failed))"; failed=$((failed + 1))
fi
result "$passed" "$failed" "busted ($lua)"
[ "$failed" -eq 0 ]
