#!/usr/bin/env bash
# Checks the rockspec as a user would run it: for each Lua version of the table in
# tools/lib.sh, `luarocks make` from this checkout into a fresh local tree, then
# `require "luws"` (and "verawebsockets") from that tree with the matching interpreter.
#
#   tools/luarocks.sh [lua51 lua52 …]   (default: every version of the table)
#
# Needs Debian's luarocks and each version's interpreter and headers (tools/install-deps.sh;
# a Lua that Debian lacks is built by tools/lua-build.sh). Cargo builds go to
# target/matrix/build (shared with tools/matrix.sh, so a matrix run beforehand makes this
# quick); trees go to target/luarocks-tree/<ver>.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT" || exit 2
pass=0
fail=0
for v in ${*:-$LUA_VERSIONS}; do
  tree="$LUWS_ROOT/target/luarocks-tree/$v"
  log="$LUWS_ROOT/target/luarocks-tree/$v.log"
  rm -rf "$tree"
  mkdir -p "$tree"
  if lua_ensure "$v" 2>"$log" &&
     LUWS_TARGET_DIR="target/matrix/build" luarocks --lua-version "$LUA_ABI" make --tree "$tree" \
       luws-scm-1.rockspec LUA="$(command -v "$LUA_BIN")" LUA_INCDIR="$LUA_INC" >>"$log" 2>&1 &&
     got=$("$LUA_BIN" -e "
       package.cpath = '$tree/lib/lua/$LUA_ABI/?.so;' .. package.cpath
       package.path = '$tree/share/lua/$LUA_ABI/?.lua;' .. package.path
       local luws = require 'luws'
       local ok, vws = pcall(require, 'verawebsockets')
       io.write(tostring(luws._VERSION), ' ', tostring(not ok or vws == luws), ' ', _VERSION)" \
       2>>"$log") &&
     [ "$(cut -d' ' -f2 <<<"$got")" = true ]; then
    echo "$v: ok, require 'luws' from $tree in ${got#* * } gives _VERSION ${got%% *}"
    pass=$((pass + 1))
  else
    tail -15 "$log" | sed 's/^/    /'
    echo "$v: FAILED (log: $log)"
    fail=$((fail + 1))
  fi
done
result "$pass" "$fail" luarocks
[ "$fail" -eq 0 ]
