//! The verawebsockets API: `create`, `connect`, `loop`, `set_log_level`, `send`, `close`.
//!
//! Objects open without blocking (`connecting`); `loop()` drives them all and delivers their
//! events on the calling Lua thread: 1 connection error (reason, wso, detail), 3 established
//! (wso), 4 closed (wso), 8 receive (data, wso, opcode). A handler is a function, or the name
//! of a global function looked up when the event fires, as Vera's library does.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use mlua::{
    AnyUserData, Function, Lua, MetaMethod, MultiValue, Table, UserData, UserDataFields,
    UserDataMethods, Value,
};

use super::args::{api, expected, opt_table};
use super::wait::PollInfo;
use super::{log, options};
use crate::connecting::{Connecting, Progress};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::lws_reason::lws_reason;
use crate::session::{Event, Outgoing, Session};
use crate::spec::OpenSpec;
use crate::sys::{self, Interest};
use tungstenite::protocol::frame::coding::CloseCode;

/// Registry key of the table of objects `loop()` must service.
const ACTIVE: &str = "luws.verawebsockets.active";

pub const EV_CONNECTION_ERROR: i64 = 1;
pub const EV_ESTABLISHED: i64 = 3;
pub const EV_CLOSED: i64 = 4;
pub const EV_RECEIVE: i64 = 8;

/// Where a verawebsockets object stands.
enum State {
    /// Created; `connect` not called yet. Holds the spec, or why the URL was unusable.
    Created(Result<Box<OpenSpec>, Error>),
    /// `connect` was called on an unusable URL: event 1 is due.
    Doomed(Error),
    Connecting(Box<Connecting>),
    Open(Box<Session>),
    /// `close` sent a Close; waiting for the peer's until `deadline`.
    Closing(Box<Session>, Instant),
    /// Event 4 has fired; the last output (a Close echo) still drains, silently.
    Draining(Box<Session>),
    Closed,
}

pub struct VeraSocket {
    id: usize,
    standalone: bool,
    url: String,
    state: RefCell<State>,
}

impl VeraSocket {
    pub(super) fn fd_and_interest(&self) -> Option<PollInfo> {
        match &*self.state.borrow() {
            State::Connecting(c) => c.interest().map(|(fd, interest)| PollInfo {
                fd,
                interest,
                dirty: false,
                due: Some(c.deadline()),
            }),
            State::Open(s) | State::Closing(s, _) => {
                let fd = s.raw_fd();
                let closing = match &*self.state.borrow() {
                    State::Closing(_, d) => Some(*d),
                    _ => None,
                };
                let due = match (s.next_deadline(), closing) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let interest = if s.wants_write() {
                    Interest::Write
                } else {
                    Interest::Read
                };
                (fd >= 0).then_some(PollInfo {
                    fd,
                    interest,
                    dirty: s.dirty(),
                    due,
                })
            }
            State::Draining(s) => s.drain_interest().map(|(fd, interest, until)| PollInfo {
                fd,
                interest,
                dirty: false,
                due: Some(until),
            }),
            State::Doomed(_) => Some(PollInfo {
                fd: -1,
                interest: Interest::Read,
                dirty: true,
                due: None,
            }),
            _ => None,
        }
    }
}

/// Registry key of the websocket object's method table (see `methods`).
pub const METHODS: &str = "luws.verawebsockets.methods";

impl UserData for VeraSocket {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_meta_field_with(MetaMethod::Index, |lua| {
            lua.named_registry_value::<Table>(METHODS)
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("verawebsockets[{}]", this.url))
        });
    }
}

/// The object's methods (`wso:connect()` …): the module functions, plus `getfd`/`dirty` for
/// LuaSocket's `select`.
pub fn methods(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "connect",
        lua.create_function(api(|lua, v: Value| connect(lua, wso(1, "connect", v)?)))?,
    )?;
    t.set("send", lua.create_function(api(send))?)?;
    t.set("close", lua.create_function(api(close))?)?;
    t.set(
        "getfd",
        lua.create_function(api(|_, v: Value| {
            let ud = wso(1, "getfd", v)?;
            let this = ud.borrow::<VeraSocket>()?;
            if matches!(&*this.state.borrow(), State::Draining(_)) {
                return Ok(-1);
            }
            Ok(this.fd_and_interest().map_or(-1, |p| p.fd))
        }))?,
    )?;
    t.set(
        "dirty",
        lua.create_function(api(|_, v: Value| {
            let ud = wso(1, "dirty", v)?;
            let this = ud.borrow::<VeraSocket>()?;
            Ok(this.fd_and_interest().is_some_and(|p| p.dirty))
        }))?,
    )?;
    Ok(t)
}

pub fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set("create", lua.create_function(api(create))?)?;
    t.set(
        "connect",
        lua.create_function(api(|lua, v: Value| connect(lua, wso(1, "connect", v)?)))?,
    )?;
    t.set("loop", lua.create_function(api(|lua, ()| run_loop(lua)))?)?;
    t.set("set_log_level", lua.create_function(api(set_log_level))?)?;
    t.set("send", lua.create_function(api(send))?)?;
    t.set("close", lua.create_function(api(close))?)?;
    Ok(())
}

fn wso(pos: u8, func: &'static str, v: Value) -> mlua::Result<AnyUserData> {
    match v {
        Value::UserData(ud) if ud.is::<VeraSocket>() => Ok(ud),
        other => Err(expected(pos, func, "websocket object", &other)),
    }
}

fn active(lua: &Lua) -> mlua::Result<Table> {
    match lua.named_registry_value::<Value>(ACTIVE)? {
        Value::Table(t) => Ok(t),
        _ => {
            let t = lua.create_table()?;
            lua.set_named_registry_value(ACTIVE, &t)?;
            Ok(t)
        }
    }
}

/// `create(url, event_handlers, ssl_settings, standalone [, options])` -> wso.
fn create(
    lua: &Lua,
    (url, handlers, ssl, standalone, opts): (Value, Value, Value, Value, Value),
) -> mlua::Result<AnyUserData> {
    let url_text = match &url {
        Value::Nil => String::new(),
        Value::String(s) => s.to_string_lossy(),
        other => return Err(expected(1, "create", "string", other)),
    };
    let handlers = opt_table(2, "create", handlers)?;
    let ssl = opt_table(3, "create", ssl)?;
    let standalone = match standalone {
        Value::Nil => false,
        Value::Boolean(b) => b,
        other => return Err(expected(4, "create", "boolean", &other)),
    };
    let opts = opt_table(5, "create", opts)?;

    let spec = match Endpoint::parse(&url_text) {
        Ok(ep) => {
            let mut spec = OpenSpec::new(ep);
            if let Some(o) = &opts {
                let parts = options::read(o, &mut spec, "create")?;
                // LuWS-only: verawebsockets events go to `event_handlers` with their own
                // arguments, and `connect` opens its own socket.
                let refuse = |name: &'static str, what: &str| {
                    super::args::lua_error(Error::BadOption {
                        name,
                        func: "create",
                        msg: format!("a wsopen option; {what}"),
                    })
                };
                if parts.control_handler.is_some() {
                    return Err(refuse("control_handler", "events go to event_handlers"));
                }
                if parts.handler_args.is_some() {
                    return Err(refuse("handler_args", "event handlers get fixed arguments"));
                }
                if parts.connect.is_some() {
                    return Err(refuse("connect", "create's object opens its own socket"));
                }
            }
            if let Some(s) = &ssl {
                read_ssl_settings(s, &mut spec)?;
            }
            // Inside a Luup host nothing may block: sends are buffered and loop() flushes them
            // (send_timeout still bounds how long they may stall).
            if !standalone {
                spec.session.sends_wait = false;
            }
            Ok(Box::new(spec))
        }
        Err(e) => Err(e),
    };

    static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let ud = lua.create_userdata(VeraSocket {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        standalone,
        url: url_text,
        state: RefCell::new(State::Created(spec)),
    })?;
    let uv = lua.create_table()?;
    uv.raw_set("handlers", handlers)?;
    ud.set_user_value(uv)?;
    Ok(ud)
}

/// The `ssl_settings` keys, in the wiki's naming style.
fn read_ssl_settings(t: &Table, spec: &mut OpenSpec) -> mlua::Result<()> {
    let bad = |name: &'static str, msg: String| {
        super::args::lua_error(Error::BadOption {
            name,
            func: "create",
            msg,
        })
    };
    let path = |name: &'static str| -> mlua::Result<Option<String>> {
        match t.get::<Value>(name)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_string_lossy())),
            other => Err(bad(
                name,
                format!("string expected, got {}", super::args::type_name(&other)),
            )),
        }
    };
    spec.tls.certificate = path("client_ssl_cert_filepath")?.or(spec.tls.certificate.take());
    spec.tls.key = path("client_ssl_private_key_filepath")?.or(spec.tls.key.take());
    spec.tls.cafile = path("client_ssl_ca_filepath")?.or(spec.tls.cafile.take());
    match t.get::<Value>("client_ssl_verify_peer")? {
        Value::Nil => {}
        Value::Boolean(b) => spec.tls.verify = b,
        other => {
            return Err(bad(
                "client_ssl_verify_peer",
                format!("boolean expected, got {}", super::args::type_name(&other)),
            ));
        }
    }
    spec.tls
        .validate()
        .map_err(|m| bad("client_ssl_private_key_filepath", m))
}

/// `connect(wso)`: starts opening and returns at once; `loop()` does the rest.
fn connect(lua: &Lua, ud: AnyUserData) -> mlua::Result<()> {
    let this = ud.borrow::<VeraSocket>()?;
    let prev = std::mem::replace(&mut *this.state.borrow_mut(), State::Closed);
    let next = match prev {
        State::Created(Ok(spec)) => State::Connecting(Box::new(Connecting::start(*spec, None))),
        State::Created(Err(e)) => State::Doomed(e),
        other => {
            log::lws(
                lua,
                log::WARN,
                &format!("connect: {} is already connecting or connected", this.url),
            );
            other
        }
    };
    *this.state.borrow_mut() = next;
    log::lws(lua, log::NOTICE, &format!("connecting to {}", this.url));
    active(lua)?.raw_set(ud.clone(), true)
}

/// `send(wso, data [, is_binary])` -> true | false, err.
fn send(
    lua: &Lua,
    (v, data, binary): (Value, Value, Value),
) -> mlua::Result<(bool, Option<String>)> {
    let ud = wso(1, "send", v)?;
    let bytes = match data {
        Value::String(s) => super::luws_api::lua_bytes(&s),
        Value::Integer(_) | Value::Number(_) => {
            tungstenite::Bytes::from(super::luws_api::lua_text(lua, data)?)
        }
        other => return Err(expected(2, "send", "string", &other)),
    };
    let out = if binary.as_boolean().unwrap_or(false) {
        Outgoing::Binary(bytes)
    } else {
        Outgoing::Text(bytes)
    };
    let this = ud.borrow::<VeraSocket>()?;
    let result = match &mut *this.state.borrow_mut() {
        State::Open(s) => s.send(out),
        State::Closing(..) => Err(Error::Closing),
        _ => Err(Error::NotConnected),
    };
    match result {
        Ok(()) => Ok((true, None)),
        Err(e) => {
            log::lws(lua, log::WARN, &format!("send to {}: {e}", this.url));
            Ok((false, Some(e.to_string())))
        }
    }
}

/// `close(wso)`: an open connection sends Close 1000 and event 4 follows from `loop()` when the
/// peer answers (or `close_timeout` passes); an opening that never completed just stops.
fn close(lua: &Lua, v: Value) -> mlua::Result<()> {
    let ud = wso(1, "close", v)?;
    let this = ud.borrow::<VeraSocket>()?;
    let prev = std::mem::replace(&mut *this.state.borrow_mut(), State::Closed);
    let next = match prev {
        State::Open(mut s) => {
            s.stop_notifier();
            let deadline = Instant::now() + s.config().close_timeout;
            match s.begin_close(CloseCode::Normal) {
                Ok(()) => State::Closing(s, deadline),
                // Already gone: loop() reports the close.
                Err(_) => State::Closing(s, Instant::now()),
            }
        }
        State::Closing(s, d) => State::Closing(s, d),
        State::Draining(s) => State::Draining(s),
        _ => {
            active(lua)?.raw_set(ud.clone(), Value::Nil)?;
            State::Closed
        }
    };
    *this.state.borrow_mut() = next;
    Ok(())
}

/// `set_log_level(levels)`: the lws bitmask, or "all" / "none".
fn set_log_level(_: &Lua, v: Value) -> mlua::Result<()> {
    let mask = match &v {
        // lua_Integer is 32-bit on 32-bit targets (Vera), 64-bit elsewhere.
        #[allow(clippy::unnecessary_cast)]
        Value::Integer(i) => *i as i64,
        Value::Number(n) if n.fract() == 0.0 => *n as i64,
        Value::String(s) => match s.to_string_lossy().trim() {
            "all" => log::ALL as i64,
            "none" | "" => 0,
            other => other.parse::<i64>().map_err(|_| {
                super::args::bad(1, "set_log_level", "a bitmask or \"all\" expected")
            })?,
        },
        other => return Err(expected(1, "set_log_level", "number or string", other)),
    };
    if !(0..=i64::from(u32::MAX)).contains(&mask) {
        return Err(super::args::bad(1, "set_log_level", "bitmask out of range"));
    }
    log::set_levels(mask as u32);
    Ok(())
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
        let event = {
            let mut st = this.state.borrow_mut();
            match &mut *st {
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
            }
        };
        match event {
            Event::Message { text, data } => {
                log::lws(
                    lua,
                    log::DEBUG,
                    &format!("{}: received {} bytes", this.url, data.len()),
                );
                let s = lua.create_string(&data)?;
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
                match prev {
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
fn run_loop(lua: &Lua) -> mlua::Result<()> {
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
        let mut fds = Vec::new();
        let mut wake: Option<Instant> = None;
        let mut now_ready = false;
        for o in &objs {
            if let Some(PollInfo {
                fd,
                interest,
                dirty,
                due,
            }) = o.borrow::<VeraSocket>()?.fd_and_interest()
            {
                now_ready |= dirty;
                if let Some(d) = due {
                    wake = Some(wake.map_or(d, |w| w.min(d)));
                }
                if fd >= 0 {
                    let events = match interest {
                        Interest::Read => libc::POLLIN,
                        Interest::Write => libc::POLLOUT,
                    };
                    fds.push(libc::pollfd {
                        fd,
                        events,
                        revents: 0,
                    });
                }
            }
        }
        let timeout = if now_ready {
            Some(Duration::ZERO)
        } else {
            wake.map(|w| w.saturating_duration_since(Instant::now()))
        };
        sys::poll(&mut fds, timeout).map_err(mlua::Error::external)?;
    }
}
