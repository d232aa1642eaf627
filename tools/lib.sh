# shellcheck shell=bash
# What the test tools share (tools/, cross/, bench/, spec/autobahn/). Source it; don't run it.
#   LUWS_ROOT, LUWS_CACHE          the checkout; where built tools are cached (target/cache)
#   LUA_VERSIONS, lua_vars F       the Lua-version table (below) and one row of it
#   lua_ensure F                   lua_vars, then builds the interpreter when the row says so
#   TLS_BACKENDS, tls_features B   the TLS-backend table
#   module F B, module_dirs F B    the module for Lua F and TLS backend B, and where it goes
#   build_module FEATURES DIR [TARGET_DIR]   cargo build --release, installed as DIR/luws.so
#   start_peer CMD...              starts a test peer, reads its `PORT <n>` line: PEER_PID/PORT
#   stop_peer                      ends the peer start_peer started (by its PID)
#   apt_need PKG...                installs the Debian packages that are missing (root)
#   result PASSED FAILED [NOTE]    the stage's count, for tools/test-all.sh ($LUWS_RESULT)

LUWS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LUWS_CACHE="${LUWS_CACHE:-$LUWS_ROOT/target/cache}"
LUWS_DEBIAN_MIRROR="${LUWS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# The Lua versions. Adding one is one row here (and, for the module, its mlua feature in
# Cargo.toml). Columns: the cargo feature (the name LuaRocks' rust-mlua builder passes), the
# interpreter, the Lua ABI (LuaRocks' --lua-version), the headers, and where it comes from:
# Debian packages (comma-separated), or `lua-src:lua-X.Y.Z`, built by tools/lua-build.sh from
# the lua-src crate's sources with busted's C modules (Debian 12 has no such Lua).
LUA_TABLE='
lua51   lua5.1  5.1  /usr/include/lua5.1      lua5.1,liblua5.1-0-dev
lua52   lua5.2  5.2  /usr/include/lua5.2      lua5.2,liblua5.2-dev
lua53   lua5.3  5.3  /usr/include/lua5.3      lua5.3,liblua5.3-dev
lua54   lua5.4  5.4  /usr/include/lua5.4      lua5.4,liblua5.4-dev
lua55   lua5.5  5.5  -                        lua-src:lua-5.5.1
luajit  luajit  5.1  /usr/include/luajit-2.1  luajit,libluajit-5.1-dev
'
LUA_VERSIONS=$(awk 'NF { printf "%s%s", sep, $1; sep = " " }' <<<"$LUA_TABLE")

# The TLS backends: name, then the cargo features of a module built with it (plus a Lua one).
TLS_TABLE='
native  module,tls-native
rustls  module,tls-rustls,bundled-roots
'
TLS_BACKENDS=$(awk 'NF { printf "%s%s", sep, $1; sep = " " }' <<<"$TLS_TABLE")

tls_features() { # BACKEND: its feature list, or status 1
  awk -v b="$1" '$1 == b { print $2; f = 1 } END { exit !f }' <<<"$TLS_TABLE"
}

# lua_vars FEATURE: sets LUA_FEATURE LUA_BIN (a command or a path) LUA_ABI LUA_INC LUA_FROM
# (the Debian packages, or lua-src:…) and LUA_APT (the packages, space-separated, or empty).
lua_vars() {
  local row
  row=$(awk -v f="$1" '$1 == f' <<<"$LUA_TABLE")
  [ -n "$row" ] || { echo "unknown Lua version '$1' (one of: $LUA_VERSIONS)" >&2; return 2; }
  read -r LUA_FEATURE LUA_BIN LUA_ABI LUA_INC LUA_FROM <<<"$row"
  LUA_APT=""
  case "$LUA_FROM" in
    lua-src:*)
      LUA_BIN="$LUWS_CACHE/${LUA_FROM#lua-src:}/bin/$LUA_BIN"
      LUA_INC="$LUWS_CACHE/${LUA_FROM#lua-src:}/include" ;;
    *) LUA_APT=${LUA_FROM//,/ } ;;
  esac
}

# lua_ensure FEATURE: lua_vars, and builds (once; cached) what a lua-src row needs.
lua_ensure() {
  lua_vars "$1" || return
  case "$LUA_FROM" in
    lua-src:*) "$LUWS_ROOT/tools/lua-build.sh" "${LUA_FROM#lua-src:}" >&2 ;;
    *) command -v "$LUA_BIN" >/dev/null || { echo "$LUA_BIN not installed (make deps)" >&2; return 1; } ;;
  esac
}

# The Debian packages every apt-packaged row of the table needs.
lua_apt_packages() {
  local f
  for f in $LUA_VERSIONS; do lua_vars "$f" && echo "$LUA_APT"; done | tr ' ' '\n' | sed '/^$/d'
}

# module_dirs FEATURE BACKEND: sets MODULE_TARGET (cargo's target dir) and MODULE_DIR (where
# luws.so goes) for a Lua version and TLS backend. The default build (lua51, native) is
# `cargo build --release` itself, in target/lua51; the other Lua versions share
# target/matrix/build (only mlua and luws differ); another backend has target/<backend>.
module_dirs() {
  if [ "$2" = native ]; then
    if [ "$1" = lua51 ]; then MODULE_TARGET=$LUWS_ROOT/target MODULE_DIR=$LUWS_ROOT/target/lua51
    else MODULE_TARGET=$LUWS_ROOT/target/matrix/build MODULE_DIR=$LUWS_ROOT/target/matrix/$1/lua; fi
  else
    MODULE_TARGET=$LUWS_ROOT/target/$2 MODULE_DIR=$LUWS_ROOT/target/$2/$1
  fi
}

# module FEATURE BACKEND: builds that module where module_dirs says (MODULE_DIR/luws.so).
module() {
  local features
  features=$(tls_features "$2") || { echo "unknown TLS backend '$2' (one of: $TLS_BACKENDS)" >&2; return 2; }
  lua_vars "$1" >/dev/null || return 2
  module_dirs "$1" "$2"
  build_module "$1,$features" "$MODULE_DIR" "$MODULE_TARGET"
}

# build_module FEATURES DIR [TARGET_DIR]: a release build with exactly FEATURES (e.g.
# lua54,module,tls-native), installed atomically as DIR/luws.so (a loaded .so overwritten in
# place crashes whoever has it mapped). Cargo's output goes to DIR/build.log on failure.
build_module() {
  local features=$1 dir=$2 target=${3:-$LUWS_ROOT/target} log
  mkdir -p "$dir"
  log="$dir/build.log"
  if ! (cd "$LUWS_ROOT" && CARGO_TARGET_DIR="$target" cargo build --release \
        --no-default-features --features "$features") >"$log" 2>&1; then
    tail -30 "$log" | sed 's/^/    /' >&2
    echo "build of $features failed (log: $log)" >&2
    return 1
  fi
  cp "$target/release/libluws.so" "$dir/.luws.so.$$" && mv -f "$dir/.luws.so.$$" "$dir/luws.so"
}

# start_peer CMD...: runs CMD in the background and waits (20 s at most) for the line
# `PORT <n>` (every test peer of this project prints `PORT <n> PID <pid>` first, on stdout).
# Sets PEER_PID and PEER_PORT; the peer's output goes on to PEER_LOG. stop_peer ends it.
start_peer() {
  PEER_LOG=$(mktemp "${TMPDIR:-/tmp}/luws-peer.XXXXXX")
  "$@" >"$PEER_LOG" 2>&1 &
  PEER_PID=$!
  PEER_PORT=""
  local _
  for _ in $(seq 200); do
    PEER_PORT=$(sed -n 's/^PORT \([0-9]*\).*/\1/p' "$PEER_LOG" | head -1)
    [ -n "$PEER_PORT" ] && return 0
    kill -0 "$PEER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "peer did not start: $*" >&2
  cat "$PEER_LOG" >&2
  stop_peer
  return 1
}

stop_peer() {
  [ -n "${PEER_PID:-}" ] || return 0
  kill "$PEER_PID" 2>/dev/null || true
  wait "$PEER_PID" 2>/dev/null || true
  rm -f "$PEER_LOG"
  PEER_PID=""
  return 0
}

# apt_need PKG...: installs those not yet installed, quietly (one `apt-get update` first).
apt_need() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || { echo "apt_need: root needed to install ${missing[*]}" >&2; return 1; }
  echo "apt: installing ${missing[*]}" >&2
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
  "${apt[@]}" update >/dev/null &&
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
}

# result PASSED FAILED [NOTE]: one line of the running stage's count. tools/test-all.sh sets
# LUWS_RESULT to a fresh file per stage and adds its lines up; a stage that writes none counts
# as one test, passed or failed by its exit status. Outside test-all.sh it only prints.
result() {
  echo "${3:+$3: }$1 passed, $2 failed"
  [ -z "${LUWS_RESULT:-}" ] || echo "$1 $2 ${3:-}" >>"$LUWS_RESULT"
}
