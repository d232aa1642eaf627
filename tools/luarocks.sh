#!/bin/sh
# Checks the rockspec as a user would run it: for each Lua version, `luarocks make` from this
# checkout into a fresh local tree, then `require "luws"` (and "verawebsockets") from that tree
# with the matching interpreter.
#
#   tools/luarocks.sh [lua51 lua52 lua53 lua54 luajit]   (default: all five)
#
# Needs Debian's luarocks and the Lua headers of each version (liblua5.x-dev,
# libluajit-5.1-dev). Cargo builds go to target/matrix/build (shared with tools/matrix.sh, so
# a matrix run beforehand makes this quick); trees go to target/luarocks-tree/<ver>.
# Prints "<ver>: ok|FAILED" per version and a last line "N passed, N failed".

set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
VERSIONS=${*:-lua51 lua52 lua53 lua54 luajit}
pass=0
fail=0

for v in $VERSIONS; do
  extra=""
  case "$v" in
    lua51) lv=5.1 lua=lua5.1 ;;
    lua52) lv=5.2 lua=lua5.2 ;;
    lua53) lv=5.3 lua=lua5.3 ;;
    lua54) lv=5.4 lua=lua5.4 ;;
    luajit) lv=5.1 lua=luajit extra="LUA=/usr/bin/luajit LUA_INCDIR=/usr/include/luajit-2.1" ;;
    *) echo "luarocks: unknown Lua version '$v'" >&2; exit 2 ;;
  esac
  tree="$ROOT/target/luarocks-tree/$v"
  log="$ROOT/target/luarocks-tree/$v.log"
  rm -rf "$tree"
  mkdir -p "$tree"
  # shellcheck disable=SC2086 # $extra is a list of VAR=VALUE words
  if LUWS_TARGET_DIR="target/matrix/build" luarocks --lua-version "$lv" make --tree "$tree" \
       luws-scm-1.rockspec $extra >"$log" 2>&1 &&
     got=$("$lua" -e "
       package.cpath = '$tree/lib/lua/$lv/?.so;' .. package.cpath
       package.path = '$tree/share/lua/$lv/?.lua;' .. package.path
       local luws = require 'luws'
       local ok, vws = pcall(require, 'verawebsockets')
       io.write(tostring(luws._VERSION), ' ', tostring(not ok or vws == luws))" 2>>"$log") &&
     [ "${got#* }" = true ]; then
    echo "$v: ok, require 'luws' from $tree gives _VERSION ${got% *}"
    pass=$((pass + 1))
  else
    tail -15 "$log" | sed 's/^/    /'
    echo "$v: FAILED (log: $log)"
    fail=$((fail + 1))
  fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
