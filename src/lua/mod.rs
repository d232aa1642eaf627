//! The Lua-facing layer: thin adapters from Lua values to the core and back. Only this layer
//! knows mlua.

mod args;
mod conn;
mod fast;
mod log;
mod luws_api;
mod options;
mod seen;
mod vera_api;
mod vera_loop;
mod vera_socket;
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
    t.set("wait", lua.create_function(args::api(wait::wait))?)?;
    plain_errors(lua, &t)?;
    // The objects' methods get the same wrapper; their metatables find them in the registry.
    let conn_methods = luws_api::methods(lua)?;
    for (key, methods) in [
        (conn::METHODS, conn_methods.clone()),
        (vera_api::METHODS, vera_api::methods(lua)?),
    ] {
        plain_errors(lua, &methods)?;
        lua.set_named_registry_value(key, methods)?;
    }
    // The hot calls, raw (they make their errors plain themselves).
    fast::install(lua, &t, &conn_methods, luws_api::slow(lua)?)?;
    Ok(t)
}

/// Makes the functions of `t` raise plain strings, as Lua's own libraries do: mlua raises
/// errors as userdata, and a caller's `"failed: " .. err` would then fail inside its error
/// path. The message keeps its first line (the traceback mlua appends is dropped). One wrapper
/// for module functions and methods alike.
fn plain_errors(lua: &Lua, t: &Table) -> Result<()> {
    lua.load(
        r#"
        local t = ...
        local pcall, error, type, tostring, pairs = pcall, error, type, tostring, pairs
        local function check(ok, ...)
          if ok then return ... end
          local e = ...
          if type(e) ~= "string" then e = tostring(e) end
          error((e:gsub("\nstack traceback:.*$", "")), 0)
        end
        local wrapped = {}
        for name, f in pairs(t) do
          if type(f) == "function" then
            wrapped[name] = function(...) return check(pcall(f, ...)) end
          end
        end
        for name, f in pairs(wrapped) do t[name] = f end
        "#,
    )
    .set_name("=luws")
    .call::<()>(t.clone())
}
