//! `luws.wait(conns [, timeout])`: sleeps in poll(2) until some connections have work, for
//! scripts without LuaSocket. Returns those connections (an empty table when time ran out).

use std::time::Duration;

use mlua::{AnyUserData, Lua, Table, Value};

use super::args::{bad, expected};
use super::conn::Conn;
use super::vera_socket::VeraSocket;
use crate::poll::{PollInfo, wait_any};

pub fn wait(lua: &Lua, (list, timeout): (Value, Value)) -> mlua::Result<Table> {
    let list = match list {
        Value::Table(t) => t,
        other => return Err(expected(1, "wait", "table", &other)),
    };
    let timeout = match timeout {
        Value::Nil => None,
        Value::Integer(i) => Some(i as f64),
        Value::Number(n) => Some(n),
        other => return Err(expected(2, "wait", "number", &other)),
    };
    let limit = match timeout {
        None => None,
        Some(t) if t < 0.0 => None,
        Some(t) if t.is_finite() => Some(Duration::from_secs_f64(t.min(1e9))),
        Some(_) => return Err(bad(2, "wait", "finite number expected")),
    };

    let mut conns: Vec<AnyUserData> = Vec::new();
    let mut waits = Vec::new();
    for (i, v) in list.sequence_values::<Value>().enumerate() {
        let ud = match v? {
            Value::UserData(ud) if ud.is::<Conn>() || ud.is::<VeraSocket>() => ud,
            other => {
                let msg = format!(
                    "luws connection expected at index {}, got {}",
                    i + 1,
                    super::args::type_name(&other)
                );
                return Err(bad(1, "wait", msg));
            }
        };
        waits.push(poll_info(&ud)?);
        conns.push(ud);
    }
    let ready = wait_any(&waits, limit).map_err(mlua::Error::external)?;
    let out = lua.create_table_with_capacity(ready.len(), 0)?;
    for i in ready {
        out.raw_push(conns[i].clone())?;
    }
    Ok(out)
}

/// What to wait for on a connection of either API, as the connection itself says; nothing
/// once the application was told it ended.
fn poll_info(ud: &AnyUserData) -> mlua::Result<Option<PollInfo>> {
    if let Ok(c) = ud.borrow::<Conn>() {
        return Ok(c.poll_info());
    }
    let vera = ud.borrow::<VeraSocket>()?;
    if matches!(
        &*vera.state.borrow(),
        super::vera_socket::State::Draining(_)
    ) {
        return Ok(None);
    }
    Ok(vera.poll_info())
}
