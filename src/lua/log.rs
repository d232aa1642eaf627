//! Logging for the host: `luup.log` inside Luup (Vera, openLuup), stderr elsewhere; and the
//! verawebsockets log levels (libwebsockets bits), set by `set_log_level`.

use std::sync::atomic::{AtomicU32, Ordering};

use mlua::{Function, Lua, Table};

/// Luup log level for errors (`luup.log(msg, 1)`) and for notices (`luup.log(msg, 50)`).
const LUUP_ERROR: i64 = 1;
const LUUP_INFO: i64 = 50;

/// libwebsockets log bits (README.logging of lws 2.4).
pub const ERR: u32 = 1;
pub const WARN: u32 = 2;
pub const NOTICE: u32 = 4;
pub const INFO: u32 = 8;
pub const DEBUG: u32 = 16;
/// All eleven lws bits: what `set_log_level("all")` means.
pub const ALL: u32 = 2047;

/// verawebsockets' log mask; 0 (silent) until `set_log_level` says otherwise, as in Vera's.
static LEVELS: AtomicU32 = AtomicU32::new(0);

pub fn set_levels(mask: u32) {
    LEVELS.store(mask & ALL, Ordering::Relaxed);
}

pub fn levels() -> u32 {
    LEVELS.load(Ordering::Relaxed)
}

fn emit(lua: &Lua, line: &str, luup_level: i64) {
    let luup_log = lua
        .globals()
        .get::<Table>("luup")
        .and_then(|luup| luup.get::<Function>("log"));
    match luup_log {
        Ok(log) => {
            if log.call::<()>((line, luup_level)).is_err() {
                eprintln!("{line}");
            }
        }
        Err(_) => eprintln!("{line}"),
    }
}

/// Logs an error message; never fails (a broken logger must not break a connection).
pub fn error(lua: &Lua, msg: &str) {
    emit(lua, &format!("luws: {msg}"), LUUP_ERROR);
}

/// A notice for the Luup log (`luup.log(msg, 50)`); outside Luup, nothing (a script that wants
/// to know reads the API's answers).
pub fn info(lua: &Lua, msg: &str) {
    let luup_log = lua
        .globals()
        .get::<Table>("luup")
        .and_then(|luup| luup.get::<Function>("log"));
    if let Ok(log) = luup_log {
        let _ = log.call::<()>((format!("luws: {msg}"), LUUP_INFO));
    }
}

/// A verawebsockets log line, written when `bit` is enabled by `set_log_level`.
pub fn lws(lua: &Lua, bit: u32, msg: &str) {
    if levels() & bit == 0 {
        return;
    }
    let tag = match bit {
        ERR => "ERR",
        WARN => "WARN",
        NOTICE => "NOTICE",
        INFO => "INFO",
        _ => "DEBUG",
    };
    let level = if bit <= WARN { LUUP_ERROR } else { LUUP_INFO };
    emit(lua, &format!("verawebsockets {tag}: {msg}"), level);
}
