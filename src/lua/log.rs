//! Logging for the host: `luup.log` inside Luup (Vera, openLuup), stderr elsewhere.

use mlua::{Function, Lua, Table};

/// Luup log level for errors (`luup.log(msg, 1)`).
const LUUP_ERROR: i64 = 1;

/// Logs an error message; never fails (a broken logger must not break a connection).
pub fn error(lua: &Lua, msg: &str) {
    let line = format!("luws: {msg}");
    let luup_log = lua
        .globals()
        .get::<Table>("luup")
        .and_then(|luup| luup.get::<Function>("log"));
    match luup_log {
        Ok(log) => {
            if log.call::<()>((line.as_str(), LUUP_ERROR)).is_err() {
                eprintln!("{line}");
            }
        }
        Err(_) => eprintln!("{line}"),
    }
}
