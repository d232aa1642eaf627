//! `luws.wait(conns [, timeout])`: sleeps in poll(2) until some connections have work, for
//! scripts without LuaSocket. Returns those connections (an empty table when time ran out).

use std::time::{Duration, Instant};

use mlua::{AnyUserData, Lua, Table, Value};

use super::args::{bad, expected};
use super::conn::Conn;
use super::vera_api::VeraSocket;
use crate::sys::{self, Interest};

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
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut index: Vec<usize> = Vec::new();
    let mut ready = vec![];
    let now = Instant::now();
    let mut wake: Option<Instant> = limit.map(|l| now + l);
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
        if let Some(PollInfo {
            fd,
            interest,
            dirty,
            due,
        }) = poll_info(&ud)?
        {
            if dirty || due.is_some_and(|d| d <= now) {
                ready.push(conns.len());
            }
            if let Some(d) = due {
                wake = Some(wake.map_or(d, |w| w.min(d)));
            }
            if fd >= 0 {
                let events = match interest {
                    Interest::Read => libc::POLLIN,
                    Interest::Write => libc::POLLIN | libc::POLLOUT,
                };
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                index.push(conns.len());
            }
        }
        conns.push(ud);
    }

    let wait_for = if !ready.is_empty() {
        Some(Duration::ZERO)
    } else {
        wake.map(|w| w.saturating_duration_since(Instant::now()))
    };
    if !fds.is_empty() || wait_for.is_some() {
        sys::poll(&mut fds, wait_for).map_err(mlua::Error::external)?;
    }
    let after = Instant::now();
    for (k, p) in fds.iter().enumerate() {
        let i = index[k];
        if ready.contains(&i) {
            continue;
        }
        let due = poll_info(&conns[i])?
            .and_then(|p| p.due)
            .is_some_and(|d| d <= after);
        if p.revents != 0 || due {
            ready.push(i);
        }
    }
    ready.sort_unstable();
    let out = lua.create_table_with_capacity(ready.len(), 0)?;
    for i in ready {
        out.raw_push(conns[i].clone())?;
    }
    Ok(out)
}

/// What to poll for a connection of either API: descriptor, readiness, data already buffered,
/// and when a timer is due.
fn poll_info(ud: &AnyUserData) -> mlua::Result<Option<PollInfo>> {
    if let Ok(c) = ud.borrow::<Conn>() {
        let s = c.session.borrow();
        let fd = s.raw_fd();
        if fd < 0 {
            return Ok(None);
        }
        let interest = if s.wants_write() {
            Interest::Write
        } else {
            Interest::Read
        };
        return Ok(Some(PollInfo {
            fd,
            interest,
            dirty: s.dirty(),
            due: s.next_deadline(),
        }));
    }
    Ok(ud.borrow::<VeraSocket>()?.fd_and_interest())
}

/// What to wait for on one connection.
pub(super) struct PollInfo {
    /// The descriptor, or -1 when there is none to poll (work is due anyway).
    pub fd: i32,
    pub interest: Interest,
    /// Data is already buffered where poll(2) cannot see it.
    pub dirty: bool,
    /// When a timer needs a call.
    pub due: Option<Instant>,
}
