//! Argument checks shared by the API functions: wrong types raise a Lua error naming the
//! argument, in the words of Lua's own `luaL_argerror`.

use mlua::{FromLuaMulti, Function, IntoLuaMulti, Lua, Table, Value};

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

/// Raised errors (misuse) reach Lua with exactly the `Display` text.
impl From<Error> for mlua::Error {
    fn from(e: Error) -> mlua::Error {
        mlua::Error::external(e)
    }
}

/// Every API function and method goes through this: a misuse error raised by a function called
/// with method syntax (`c:send("x", "y")`) is renumbered as Lua's own `luaL_argerror` does, so
/// argument #1 is the first after `self` (and a bad `self` says so). Nothing is done on success.
pub fn api<A, R, F>(f: F) -> impl Fn(&Lua, A) -> mlua::Result<R> + 'static
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + 'static,
{
    move |lua, a| f(lua, a).map_err(|e| for_method_call(lua, e))
}

fn for_method_call(lua: &Lua, e: mlua::Error) -> mlua::Error {
    let Some(Error::BadArgument { pos, func, msg }) = e.downcast_ref::<Error>() else {
        return e;
    };
    if !called_as_method(lua) {
        return e;
    }
    lua_error(match pos {
        0 | 1 => Error::BadSelf {
            func,
            msg: msg.clone(),
        },
        n => Error::BadArgument {
            pos: n - 1,
            func,
            msg: msg.clone(),
        },
    })
}

/// Whether the Lua code that called us used `obj:method(...)`. The API functions are called by
/// the plain-errors wrapper (a Lua function, through pcall), so that is the first Lua frame up.
fn called_as_method(lua: &Lua) -> bool {
    for level in 1..=4 {
        let found = lua.inspect_stack(level, |d| {
            (d.source().what == "Lua").then(|| d.names().name_what == Some("method"))
        });
        match found {
            None => return false,
            Some(Some(m)) => return m,
            Some(None) => {}
        }
    }
    false
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
