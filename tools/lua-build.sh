#!/usr/bin/env bash
# Builds a Lua that Debian 12 does not package, with what the busted suite needs, into
# $LUWS_CACHE/lua-X.Y.Z (target/cache/ by default); cached, so a rerun returns at once.
#
#   tools/lua-build.sh lua-5.5.1
#
# From registries only:
#   * Lua: the lua-src crate's copy of the sources (the version Cargo.lock pins; `cargo fetch`
#     brings it into Cargo's registry), with tools/lua/lua.c as the interpreter (lua-src ships
#     no lua.c), exporting the Lua API for C modules: bin/lua5.5, include/.
#   * C modules, compiled against those headers into lib/lua/5.5/: LuaSocket, LuaFileSystem
#     and lua-term from Debian's source packages (the upstream tarballs, checked against the
#     SHA-256 sums apt gives), and system.core (busted's clock and sleep) from
#     tools/lua/system_core.c, since Debian's lua-system source is not served here.
#   * Pure Lua: busted and its dependencies, LuaSocket's Lua half, copied from the installed
#     Debian packages (tools/install-deps.sh) into share/lua/5.5/, with for-loop variables that
#     5.5 makes read-only rewritten by tools/lua/loopvars.lua.
# The interpreter's default package.path/cpath are that tree, then ./, so it runs busted,
# the specs and LuaRocks' checks with no LUA_PATH set.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
name=${1:?usage: tools/lua-build.sh lua-X.Y.Z}
abi=$(sed -E 's/^lua-([0-9]+\.[0-9]+).*/\1/' <<<"$name")
bin=lua$abi
prefix="$LUWS_CACHE/$name"
# Debian source packages for the C modules, and the Debian packages whose Lua files busted loads.
src_pkgs="luasocket lua-filesystem lua-term"
lua_pkgs="lua-busted lua-cliargs lua-dkjson lua-filesystem lua-luassert lua-mediator lua-penlight
  lua-say lua-system lua-term lua-socket"

# The stamp says which inputs built the tree; any change rebuilds it.
here="$LUWS_ROOT/tools"
key=$( { echo "$prefix $src_pkgs $lua_pkgs"; cat "$here/lua-build.sh" "$here/lua/"*;
         dpkg-query -W $lua_pkgs 2>/dev/null; } | sha256sum | cut -c1-16)
[ "$(cat "$prefix/.stamp" 2>/dev/null)" = "$key" ] && exit 0
echo "lua-build: building $name into $prefix"
start=$(date +%s)

# --- Lua's sources from the lua-src crate -------------------------------------------------
(cd "$LUWS_ROOT" && cargo fetch -q)
ver=$(awk '/^name = "lua-src"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$LUWS_ROOT/Cargo.lock")
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"lua-src-$ver/$name" 2>/dev/null | head -1)
[ -d "$src" ] || { echo "lua-build: lua-src $ver has no $name" >&2; exit 1; }

# --- Debian's source packages (a private apt configuration: nothing system-wide changes) ---
apt_dir="$LUWS_CACHE/apt-src"
dl="$LUWS_CACHE/src"
mkdir -p "$apt_dir"/{lists/partial,parts} "$dl"
touch "$apt_dir/status"
echo "deb-src $LUWS_DEBIAN_MIRROR bookworm main" >"$apt_dir/sources.list"
apt=(apt-get -q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
  -o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=$apt_dir/status"
  -o "Dir::Cache=$apt_dir" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
[ -n "$(ls "$apt_dir/lists/" 2>/dev/null | grep Sources)" ] || "${apt[@]}" update >/dev/null
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
for p in $src_pkgs; do
  # Only the upstream tarball: its URI, file name, size and SHA256 as apt prints them.
  read -r uri file _ sum < <("${apt[@]}" source --print-uris "$p" | grep -E "\.orig\.tar\.[a-z0-9]+' ")
  uri=${uri//\'/}
  sum=${sum#SHA256:}
  if ! echo "$sum  $dl/$file" | sha256sum -c --status 2>/dev/null; then
    curl -fsSL -o "$dl/$file" "$uri"
    echo "$sum  $dl/$file" | sha256sum -c --status || { echo "lua-build: $file: bad SHA256" >&2; exit 1; }
  fi
  mkdir -p "$build/$p" && tar -xf "$dl/$file" -C "$build/$p" --strip-components=1
done

# --- the interpreter and the C modules ------------------------------------------------------
rm -rf "$prefix"
mkdir -p "$prefix"/{bin,include,"lib/lua/$abi"/{socket,mime,term,system},"share/lua/$abi"}
cp "$src"/{lua.h,luaconf.h,lualib.h,lauxlib.h} "$prefix/include/"
# 5.5's lua.h computes LUA_VERSION_NUM from its parts; LuaRocks 3.8 (Debian 12) finds the
# version by reading a number there, so the installed header states it (the same value).
num=$(( ${abi%.*} * 100 + ${abi#*.} ))
sed -i -E "s/^#define LUA_VERSION_NUM[[:space:]]+\(LUA_VERSION_MAJOR_N.*/#define LUA_VERSION_NUM\t\t$num/" \
  "$prefix/include/lua.h"
grep -q "^#define LUA_VERSION_NUM[[:space:]]*$num\$" "$prefix/include/lua.h"
lpath="$prefix/share/lua/$abi/?.lua;$prefix/share/lua/$abi/?/init.lua;./?.lua;./?/init.lua"
cpath="$prefix/lib/lua/$abi/?.so;./?.so"
cc -O2 -std=gnu99 -DLUA_USE_LINUX -DLUA_PATH_DEFAULT="\"$lpath\"" -DLUA_CPATH_DEFAULT="\"$cpath\"" \
  -I"$src" -o "$prefix/bin/$bin" "$here/lua/lua.c" \
  $(ls "$src"/*.c | grep -v -E '/(lua|luac|onelua)\.c$') -Wl,-E -lm -ldl
mod() { cc -O2 -fPIC -shared -I"$prefix/include" "$@"; }
lib="$prefix/lib/lua/$abi"
s="$build/luasocket/src"
mod -o "$lib/socket/core.so" "$s"/{luasocket,timeout,buffer,io,auxiliar,compat,options,inet,except,select,tcp,udp,usocket}.c
mod -o "$lib/mime/core.so" "$s/mime.c" "$s/compat.c"
# LuaFileSystem 1.8.0 refuses versions above 5.4 at compile time; 5.5's luaL_Stream is the same.
sed -E 's/LUA_VERSION_NUM <= 504/LUA_VERSION_NUM <= 505/' "$build/lua-filesystem/src/lfs.c" >"$build/lfs.c"
mod -I"$build/lua-filesystem/src" -o "$lib/lfs.so" "$build/lfs.c"
mod -o "$lib/term/core.so" "$build/lua-term/core.c"
mod -o "$lib/system/core.so" "$here/lua/system_core.c"

# --- busted and its Lua dependencies, as Debian installed them ------------------------------
share="$prefix/share/lua/$abi"
for p in $lua_pkgs; do
  dpkg -L "$p" | { grep '^/usr/share/lua/5\.1/.*\.lua$' || true; } | while read -r f; do
    rel=${f#/usr/share/lua/5.1/}
    mkdir -p "$share/$(dirname "$rel")"
    cp "$(readlink -f "$f")" "$share/$rel"
  done
done
find "$share" -name '*.lua' -print0 | xargs -0 "$prefix/bin/$bin" "$here/lua/loopvars.lua" >/dev/null

"$prefix/bin/$bin" -e 'require "socket"; require "mime"; require "lfs"; require "system"
  require "term"; require "busted.runner"' ||
  { echo "lua-build: $prefix does not load busted" >&2; exit 1; }
echo "$key" >"$prefix/.stamp"
echo "lua-build: $("$prefix/bin/$bin" -v) in $prefix ($(( $(date +%s) - start )) s)"
