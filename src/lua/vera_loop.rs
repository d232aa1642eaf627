//! The verawebsockets scheduler: the set of objects `loop()` services, how one object advances
//! without blocking, and the events it fires on the calling Lua thread: 1 connection error
//! (reason, wso, detail), 3 established (wso), 4 closed (wso), 8 receive (data, wso, opcode).
//! A handler is a function, or the name of a global function looked up when the event fires.

use std::time::Instant;

use mlua::{AnyUserData, Function, Lua, MultiValue, Table, Value};

use super::log;
use super::vera_socket::{State, VeraSocket};
use crate::connecting::Progress;
use crate::error::Error;
use crate::lws_reason::lws_reason;
use crate::reconnect::{Report, Standing};
use crate::session::Event;

/// Registry key of the table of objects `loop()` must service.
const ACTIVE: &str = "luws.verawebsockets.active";

pub const EV_CONNECTION_ERROR: i64 = 1;
pub const EV_ESTABLISHED: i64 = 3;
pub const EV_CLOSED: i64 = 4;
pub const EV_RECEIVE: i64 = 8;

/// The objects `loop()` services (keys), kept alive while they need servicing.
pub(super) fn active(lua: &Lua) -> mlua::Result<Table> {
    match lua.named_registry_value::<Value>(ACTIVE)? {
        Value::Table(t) => Ok(t),
        _ => {
            let t = lua.create_table()?;
            lua.set_named_registry_value(ACTIVE, &t)?;
            Ok(t)
        }
    }
}

/// Calls the handler for `event`, resolving a global name when the event fires.
fn fire(lua: &Lua, ud: &AnyUserData, event: i64, args: MultiValue) {
    let handler = ud
        .user_value::<Table>()
        .and_then(|uv| uv.raw_get::<Value>("handlers"))
        .and_then(|h| match h {
            Value::Table(t) => t.get::<Value>(event),
            _ => Ok(Value::Nil),
        });
    let f: Option<Function> = match handler {
        Ok(Value::Function(f)) => Some(f),
        Ok(Value::String(name)) => {
            let name = name.to_string_lossy();
            match lua.globals().get::<Value>(name.as_str()) {
                Ok(Value::Function(f)) => Some(f),
                _ => {
                    log::error(
                        lua,
                        &format!("verawebsockets: no global function '{name}' for event {event}"),
                    );
                    None
                }
            }
        }
        _ => None,
    };
    if let Some(f) = f {
        if let Err(e) = f.call::<()>(args) {
            log::error(
                lua,
                &format!("verawebsockets: handler for event {event} failed: {e}"),
            );
        }
    }
}

fn args(items: Vec<Value>) -> MultiValue {
    MultiValue::from_vec(items)
}

/// The object failed to open: it leaves the loop and event 1 fires (lws reason, wso, detail).
fn connection_error(lua: &Lua, ud: &AnyUserData, url: &str, e: &Error) -> mlua::Result<()> {
    active(lua)?.raw_set(ud.clone(), Value::Nil)?;
    report_failure(lua, ud, url, e)
}

/// Event 1 for a failed opening (the object may go on reconnecting).
fn report_failure(lua: &Lua, ud: &AnyUserData, url: &str, e: &Error) -> mlua::Result<()> {
    log::lws(lua, log::ERR, &format!("{url}: {e}"));
    let reason = Value::String(lua.create_string(lws_reason(e))?);
    let detail = Value::String(lua.create_string(e.to_string())?);
    let me = Value::UserData(ud.clone());
    fire(lua, ud, EV_CONNECTION_ERROR, args(vec![reason, me, detail]));
    Ok(())
}

/// Services one object: makes progress without blocking and delivers its events.
fn service(lua: &Lua, ud: &AnyUserData) -> mlua::Result<()> {
    let this = ud.borrow::<VeraSocket>()?;
    let me = Value::UserData(ud.clone());
    let prev = std::mem::replace(&mut *this.state.borrow_mut(), State::Closed);
    match prev {
        State::Doomed(e) => return connection_error(lua, ud, &this.url, &e),
        State::Draining(mut s) => {
            let _ = s.next_event();
            if s.is_draining() {
                *this.state.borrow_mut() = State::Draining(s);
            } else {
                active(lua)?.raw_set(ud.clone(), Value::Nil)?;
            }
            return Ok(());
        }
        State::Reconnecting => loop {
            let report = this.revival.borrow_mut().as_mut().and_then(|r| r.poll());
            match report {
                None => {
                    *this.state.borrow_mut() = State::Reconnecting;
                    return Ok(());
                }
                // Event 1 for each failed attempt, as an opening that failed.
                Some(Report::Failed { error, .. }) => {
                    report_failure(lua, ud, &this.url, &error)?;
                }
                Some(Report::GaveUp(e)) => return connection_error(lua, ud, &this.url, &e),
                Some(Report::Open { session, .. }) => {
                    *this.state.borrow_mut() = State::Open(session);
                    log::lws(lua, log::NOTICE, &format!("re-established {}", this.url));
                    fire(lua, ud, EV_ESTABLISHED, args(vec![me.clone()]));
                    break;
                }
            }
        },
        State::Connecting(mut c) => match c.advance() {
            Ok(Progress::Pending) => {
                *this.state.borrow_mut() = State::Connecting(c);
                return Ok(());
            }
            Ok(Progress::Ready(s)) => {
                *this.state.borrow_mut() = State::Open(s);
                log::lws(lua, log::NOTICE, &format!("established {}", this.url));
                fire(lua, ud, EV_ESTABLISHED, args(vec![me.clone()]));
            }
            Err(e) => return connection_error(lua, ud, &this.url, &e),
        },
        other => *this.state.borrow_mut() = other,
    }

    // Open or closing: read what is there, deliver messages, notice the end.
    {
        let mut st = this.state.borrow_mut();
        match &mut *st {
            State::Open(s) | State::Closing(s, _) => {
                s.begin_receive();
            }
            _ => return Ok(()),
        }
    }
    loop {
        let (event, message) = {
            let mut st = this.state.borrow_mut();
            let ev = match &mut *st {
                State::Open(s) => s.next_event(),
                State::Closing(s, deadline) => {
                    let ev = s.next_event();
                    if matches!(ev, Event::Idle) && Instant::now() >= *deadline {
                        s.abandon();
                        Event::Ended(Error::NotConnected)
                    } else {
                        ev
                    }
                }
                // A handler closed it before it was established again, or it is gone.
                _ => return Ok(()),
            };
            // The message's bytes are the session's until its next step: copy them now.
            let message = match (&ev, &*st) {
                (Event::Message { .. }, State::Open(s) | State::Closing(s, _)) => {
                    Some(lua.create_string(s.message())?)
                }
                _ => None,
            };
            (ev, message)
        };
        match event {
            Event::Message { text } => {
                let Some(s) = message else { continue };
                log::lws(
                    lua,
                    log::DEBUG,
                    &format!("{}: received {} bytes", this.url, s.as_bytes().len()),
                );
                fire(
                    lua,
                    ud,
                    EV_RECEIVE,
                    args(vec![
                        Value::String(s),
                        me.clone(),
                        Value::Integer(if text { 1 } else { 2 }),
                    ]),
                );
            }
            Event::Close(_) | Event::Failed(_) | Event::Ended(_) => {
                if let Event::Failed(e) = &event {
                    log::lws(lua, log::ERR, &format!("{}: {e}", this.url));
                }
                let prev = std::mem::replace(&mut *this.state.borrow_mut(), State::Closed);
                let reopen = matches!(&prev, State::Open(s) | State::Closing(s, _) if s.ended_unasked())
                    && this
                        .revival
                        .borrow()
                        .as_ref()
                        .is_some_and(|r| r.standing() == Standing::Live);
                match prev {
                    // `reconnect`: reopened off the Lua thread; loop() picks it up.
                    _ if reopen => {
                        if let Some(r) = this.revival.borrow_mut().as_mut() {
                            r.connection_ended();
                        }
                        *this.state.borrow_mut() = State::Reconnecting;
                    }
                    // Its last output keeps draining through loop(), without events.
                    State::Open(s) | State::Closing(s, _) if s.is_draining() => {
                        *this.state.borrow_mut() = State::Draining(s);
                    }
                    _ => active(lua)?.raw_set(ud.clone(), Value::Nil)?,
                }
                log::lws(lua, log::NOTICE, &format!("closed {}", this.url));
                fire(lua, ud, EV_CLOSED, args(vec![me.clone()]));
                return Ok(());
            }
            Event::Ping(_) | Event::Pong(_) => {}
            Event::Idle | Event::Paused => {
                if let State::Open(s) | State::Closing(s, _) = &*this.state.borrow() {
                    s.receive_done();
                }
                return Ok(());
            }
        }
    }
}

/// The objects `loop()` services, in creation order.
fn active_list(lua: &Lua) -> mlua::Result<Vec<AnyUserData>> {
    let mut v: Vec<(usize, AnyUserData)> = Vec::new();
    for pair in active(lua)?.pairs::<AnyUserData, Value>() {
        let (ud, _) = pair?;
        let id = ud.borrow::<VeraSocket>()?.id;
        v.push((id, ud));
    }
    v.sort_by_key(|(id, _)| *id);
    Ok(v.into_iter().map(|(_, ud)| ud).collect())
}

/// `loop()`: with only standalone objects, services them all until every one is closed,
/// sleeping in poll(2); otherwise makes one non-blocking pass and returns.
pub(super) fn run_loop(lua: &Lua) -> mlua::Result<()> {
    loop {
        let objs = active_list(lua)?;
        if objs.is_empty() {
            return Ok(());
        }
        let standalone = objs.iter().all(|o| {
            o.borrow::<VeraSocket>()
                .map(|s| s.standalone)
                .unwrap_or(false)
        });
        for o in &objs {
            service(lua, o)?;
        }
        if !standalone {
            return Ok(());
        }
        let objs = active_list(lua)?;
        if objs.is_empty() {
            return Ok(());
        }
        let waits = objs
            .iter()
            .map(|o| Ok(o.borrow::<VeraSocket>()?.poll_info()))
            .collect::<mlua::Result<Vec<_>>>()?;
        // Every object is serviced on the next pass; which ones woke us does not matter.
        crate::poll::wait_any(&waits, None).map_err(mlua::Error::external)?;
    }
}
