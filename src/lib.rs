//! luws: a WebSocket client for Lua, native and non-blocking, compatible with the LuWS and
//! verawebsockets APIs. The core (`endpoint` … `session`) has no Lua types; `lua` adapts it.

// Tests may panic on failure; production code may not (no panic may cross into the Lua host).
#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

#[cfg(not(any(
    feature = "lua51",
    feature = "lua52",
    feature = "lua53",
    feature = "lua54",
    feature = "lua55",
    feature = "luajit"
)))]
compile_error!("luws: enable one Lua version feature: lua51, lua52, lua53, lua54, lua55 or luajit");

pub mod backoff;
pub mod clock;
pub mod connecting;
pub mod deflate;
pub mod endpoint;
pub mod error;
pub mod extension;
pub mod handshake;
pub mod incoming;
pub mod lws_reason;
pub mod notify;
pub mod open;
pub mod outbox;
pub mod poll;
pub mod proxy;
pub mod reconnect;
pub mod response;
pub mod session;
pub mod spec;
pub mod stream;
pub mod sys;
pub mod tcp;
pub mod tls;
pub mod tunnel;
pub mod utf8;
pub mod wire;

// A module build leaves Lua's symbols to the host, so a unit-test binary cannot link the Lua
// layer; `cargo test` covers the core, and `--features vendored` the rest.
#[cfg(not(all(test, feature = "module")))]
mod lua;

/// The entry point `require "luws"` calls.
#[cfg(all(feature = "module", not(test)))]
#[mlua::lua_module(name = "luws")]
fn luws(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    sys::keep_resident();
    lua::exports(lua)
}

/// For embedding with a vendored Lua (tests): the same table the module returns.
#[cfg(not(feature = "module"))]
pub fn exports(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua::exports(lua)
}
