#!/usr/bin/env bash
# Release archives for Luup plugin authors (Vera, openLuup): one per target, each unpacked
# straight into a plugin folder.
#
#   tools/dist.sh            the host build plus every cross build in cross/out/<target>/luws.so
#   tools/dist.sh TARGET     only that target (the host triple, or one under cross/out/)
#
# Produces dist/luws-<version>-<target>-<lua>.tar.gz holding, at the archive's top level:
#   L_Plugin_LuWS.so    the native module (rustls: no OpenSSL needed on the device)
#   L_Plugin_LuWS.lua   the shim plugins require; it loads the .so of its own base name beside it
#   verawebsockets.lua  when lua/verawebsockets.lua exists
#   INSTALL.txt         which file goes where, and how to rename for a plugin
#   LICENSE
# and dist/SHA256SUMS over the archives. The host module is built here
# once per Lua version of tools/lib.sh's table (lua51 … lua55, luajit; DIST_LUA="lua51 lua54"
# for fewer), with --features <lua>,module,tls-rustls in target/dist/<host>; cross modules are
# Lua 5.1 (the controllers' Lua), taken as cross/build.sh left them. Archives are reproducible: sorted, owner 0, mtime of the last
# commit.

set -eu
. "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT"

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || { echo "dist: no version in Cargo.toml" >&2; exit 2; }
host=$(rustc -vV | sed -n 's/^host: //p')
[ -f lua/L_Plugin_LuWS.lua ] || { echo "dist: lua/L_Plugin_LuWS.lua missing" >&2; exit 2; }
[ -f LICENSE ] || { echo "dist: LICENSE missing" >&2; exit 2; }
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)

# Which targets: the argument, or the host plus every cross build present.
if [ $# -gt 0 ]; then
  targets="$*"
else
  targets=$host
  for so in cross/out/*/luws.so; do
    [ -f "$so" ] || continue
    t=$(basename "$(dirname "$so")")
    [ "$t" = "$host" ] || targets="$targets $t"
  done
fi

# The native file of a target for a Lua version; builds the host ones.
native() { # TARGET LUA
  if [ "$1" = "$host" ]; then
    dir=target/dist/$host
    CARGO_TARGET_DIR=$dir cargo build --release --no-default-features \
      --features "$2,module,tls-rustls" >&2
    echo "$dir/release/libluws.so"
  elif [ -f "cross/out/$1/luws.so" ]; then
    echo "cross/out/$1/luws.so"
  else
    echo "dist: no module for $1 (run cross/build.sh $1 first)" >&2
    return 1
  fi
}

# Who runs what: the line INSTALL.txt gives for a target.
machine() {
  case "$1" in
    mipsel-unknown-linux-uclibc) echo "Vera Plus, Vera Edge, Vera Secure (MIPS 24KEc/1004Kc, uClibc, no FPU)" ;;
    mipsel-unknown-linux-gnu) echo "32-bit little-endian MIPS with glibc (Debian 12 mipsel)" ;;
    aarch64-unknown-linux-gnu) echo "openLuup on 64-bit ARM Linux (Raspberry Pi OS 64-bit), glibc 2.28+" ;;
    armv7-unknown-linux-gnueabihf) echo "openLuup on 32-bit ARM Linux (Raspberry Pi OS 32-bit), glibc 2.28+" ;;
    x86_64-unknown-linux-gnu) echo "openLuup on a 64-bit PC or server (x86_64 Linux, glibc $2+)" ;;
    *) echo "$1" ;;
  esac
}

# The newest glibc symbol version a module needs (empty for other C libraries).
glibc_floor() {
  { objdump -T "$1" 2>/dev/null || true; } | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' |
    sort -t. -k1,1n -k2,2n -k3,3n | tail -1
}

install_text() { # target machine-line lua-feature lua-name
  cat <<EOF
luws $version for $1 ($4)
Runs on: $2
A native WebSocket client for Luup plugins, compatible with LuWS (wsopen, wssend, wsreceive,
wsclose) and with Vera's verawebsockets (create, connect, loop). TLS is built in (rustls):
no OpenSSL or LuaSec is needed for wss://.

FILES
  L_Plugin_LuWS.so     the native module for $1
  L_Plugin_LuWS.lua    the loader your plugin requires; it loads the .so of the same base
                       name from its own folder (then ./, /etc/cmh-ludl/, package.cpath)
  verawebsockets.lua   (when present) lets "require 'verawebsockets'" find the module
  LICENSE              MIT

WHERE THEY GO
  Vera:     /etc/cmh-ludl/
              scp L_Plugin_LuWS.so L_Plugin_LuWS.lua root@<vera-ip>:/etc/cmh-ludl/
            Copy the .so with scp, not through the Luup file uploader (Apps > Develop apps >
            Luup files), which may store it compressed (.lzo); the native file must stay as
            it is. Remove any leftover L_Plugin_LuWS.so.lzo.
  openLuup: its plugin folder, the cmh-ludl/ folder openLuup runs from:
              tar -xzf luws-$version-$1-$3.tar.gz -C /path/to/openLuup/cmh-ludl
  Then restart Luup (Vera) or reload openLuup.

USE
  local luws = require "L_Plugin_LuWS"
  local conn, err = luws.wsopen("wss://host:port/path", function(conn, opcode, data) end)

RENAME FOR YOUR PLUGIN (recommended, as with LuWS)
  Give both files the same new base name, L_<Plugin>_LuWS:
    L_Plugin_LuWS.lua -> L_MyPlugin_LuWS.lua
    L_Plugin_LuWS.so  -> L_MyPlugin_LuWS.so
  and require "L_MyPlugin_LuWS". Nothing inside the files needs editing: the loader takes the
  native file named like itself and opens it by its luaopen_luws symbol, so two plugins that
  ship different luws versions each load their own. Ship both files with your plugin.
  verawebsockets.lua looks for "luws" and then "L_Plugin_LuWS": keep that pair unrenamed for
  it, or change the name in its pcall(require, "L_Plugin_LuWS") line.

CHECK
  cd /etc/cmh-ludl && lua -e 'print(require("L_Plugin_LuWS")._VERSION)'
  An error "cannot load the native module ... for <machine>; tried: ..." names the files it
  tried and the machine: it needs the archive built for that machine.
EOF
}

mkdir -p dist
made=""
for t in $targets; do
  luas=lua51
  [ "$t" = "$host" ] && luas=${DIST_LUA:-$LUA_VERSIONS}
  for lua in $luas; do
    lua_vars "$lua"
    lua_name="Lua $LUA_ABI"
    [ "$lua" = luajit ] && lua_name=LuaJIT
    so=$(native "$t" "$lua")
    floor=$(glibc_floor "$so")
    stage=$(mktemp -d)
    cp "$so" "$stage/L_Plugin_LuWS.so"
    cp lua/L_Plugin_LuWS.lua "$stage/"
    [ -f lua/verawebsockets.lua ] && cp lua/verawebsockets.lua "$stage/"
    cp LICENSE "$stage/"
    install_text "$t" "$(machine "$t" "$floor")" "$lua" "$lua_name" >"$stage/INSTALL.txt"
    chmod 644 "$stage"/*
    chmod 755 "$stage/L_Plugin_LuWS.so"
    out="dist/luws-$version-$t-$lua.tar.gz"
    (cd "$stage" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
      -cf - -- *) | gzip -n -9 >"$out"
    rm -rf "$stage"
    echo "dist: $out ($(wc -c <"$out") bytes)"
    made="$made $out"
  done
done

(cd dist && sha256sum luws-*.tar.gz >SHA256SUMS)
echo "dist: dist/SHA256SUMS"
