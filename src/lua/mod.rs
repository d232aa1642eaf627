//! The Lua-facing layer: thin adapters from Lua values to the core and back. Only this layer
//! knows mlua.

mod args;
mod conn;
mod log;
mod luws_api;
mod options;
mod vera_api;
mod wait;

use mlua::{Lua, Result, Table};

/// LuWS's version scheme (two-digit year, day of year) continued: 2026-11-21.
pub const LUWS_VERSION: i64 = 26325;

/// Builds the module table `require "luws"` returns.
pub fn exports(lua: &Lua) -> Result<Table> {
    let t = lua.create_table()?;
    t.set("_VERSION", LUWS_VERSION)?;
    t.set("VERSION", env!("CARGO_PKG_VERSION"))?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    t.set("tls_backend", crate::tls::BACKEND)?;
    t.set("debug_mode", false)?;
    luws_api::register(lua, &t)?;
    vera_api::register(lua, &t)?;
    t.set("wait", lua.create_function(wait::wait)?)?;
    Ok(t)
}
