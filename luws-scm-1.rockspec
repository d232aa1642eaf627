-- luws for LuaRocks: `luarocks make` in a checkout builds the module with cargo for the Lua
-- version LuaRocks is configured for and installs it as `luws` (plus `verawebsockets`).
--
--   luarocks --lua-version 5.4 make --tree /tmp/luws-tree luws-scm-1.rockspec
--
-- The Cargo features are the ones LuaRocks' rust-mlua builder passes (lua51 lua52 lua53 lua54
-- lua55 luajit), taken from the interpreter LuaRocks runs with ($(LUA)). The build uses the plain
-- `command` backend, not `rust-mlua`, so that no build-time rock has to be fetched from the
-- LuaRocks server. Needs cargo (Rust >= 1.85) and, for the default TLS backend, OpenSSL's
-- headers (Debian: libssl-dev).
--
-- Environment: LUWS_LUA_FEATURE overrides the detected feature (e.g. luajit); LUWS_TLS picks the
-- TLS backend, tls-native (default, system OpenSSL) or tls-rustls (self-contained);
-- LUWS_TARGET_DIR is cargo's target directory (default target/luarocks/<feature>).
-- LuaJIT: luarocks --lua-version 5.1 make ... LUA=/usr/bin/luajit LUA_INCDIR=/usr/include/luajit-2.1

rockspec_format = "3.0"
package = "luws"
version = "scm-1"

source = {
  -- `luarocks make` builds the checkout it runs in; this is only read by `luarocks install`.
  url = "git+https://github.com/luws/luws.git",
}

description = {
  summary = "A native, non-blocking WebSocket client for Lua (LuWS and verawebsockets APIs)",
  detailed = [[
luws is a WebSocket client written in Rust (mlua + tungstenite) for Lua 5.1-5.5 and LuaJIT.
It is a drop-in for LuWS (wsopen/wssend/wsreceive/wsclose) and for Vera's verawebsockets
(create/connect/loop), with ws:// and wss://, 64-bit frame lengths, bounded timeouts, a
non-blocking receive and LuaSocket select() integration.
]],
  license = "MIT",
  labels = { "websocket", "luup", "vera", "openluup" },
}

dependencies = {
  "lua >= 5.1, < 5.6",
}

build = {
  type = "command",
  -- One target directory per Lua feature, so that builds for several versions do not replace
  -- each other (nor the default target/release of `cargo build`).
  build_command = [[
set -e
F="$LUWS_LUA_FEATURE"
if [ -z "$F" ]; then
  F=`"$(LUA)" -e 'io.write(jit and "luajit" or ("lua" .. _VERSION:gsub("%D", "")))'`
fi
T="${LUWS_TLS:-tls-native}"
echo "luws: cargo build --release --no-default-features --features $F,module,$T"
D="${LUWS_TARGET_DIR:-target/luarocks/$F}"
cargo build --release --no-default-features --features "$F,module,$T" --target-dir "$D"
mkdir -p target/luarocks
rm -f target/luarocks/luws.so
for f in "$D/release/libluws.so" "$D/release/libluws.dylib"; do
  if [ -f "$f" ]; then cp "$f" target/luarocks/luws.so; fi
done
test -f target/luarocks/luws.so
]],
  install_command = [[
set -e
cp target/luarocks/luws.so "$(LIBDIR)/luws.$(LIB_EXTENSION)"
if [ -f lua/verawebsockets.lua ]; then cp lua/verawebsockets.lua "$(LUADIR)/verawebsockets.lua"; fi
]],
}
