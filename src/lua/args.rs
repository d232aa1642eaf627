//! Argument checks shared by the API functions: wrong types raise a Lua error naming the
//! argument, in the words of Lua's own `luaL_argerror`.

use mlua::{AnyUserData, Function, Table, Value};

use super::conn::Conn;
use crate::error::Error;

pub fn bad(pos: u8, func: &'static str, msg: impl Into<String>) -> mlua::Error {
    lua_error(Error::BadArgument {
        pos,
        func,
        msg: msg.into(),
    })
}

pub fn lua_error(e: Error) -> mlua::Error {
    e.into()
}

/// Lua's own name for a value's type (mlua says "integer" where Lua says "number").
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) | Value::Number(_) => "number",
        other => other.type_name(),
    }
}

pub fn expected(pos: u8, func: &'static str, what: &str, got: &Value) -> mlua::Error {
    bad(
        pos,
        func,
        format!("{what} expected, got {}", type_name(got)),
    )
}

pub fn function(pos: u8, func: &'static str, v: Value) -> mlua::Result<Function> {
    match v {
        Value::Function(f) => Ok(f),
        other => Err(expected(pos, func, "function", &other)),
    }
}

pub fn opt_table(pos: u8, func: &'static str, v: Value) -> mlua::Result<Option<Table>> {
    match v {
        Value::Nil => Ok(None),
        Value::Table(t) => Ok(Some(t)),
        other => Err(expected(pos, func, "table", &other)),
    }
}

/// A connection argument: `Ok(None)` for nil (LuWS tolerates a nil conn in most calls).
pub fn opt_conn(pos: u8, func: &'static str, v: Value) -> mlua::Result<Option<AnyUserData>> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::UserData(ud) if ud.is::<Conn>() => Ok(Some(ud)),
        other => Err(expected(pos, func, "luws connection", &other)),
    }
}
