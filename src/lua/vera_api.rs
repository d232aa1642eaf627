//! The verawebsockets API: `create`, `connect`, `loop`, `set_log_level`, `send`, `close`, as
//! short adapters: arguments are checked here, the object lives in `vera_socket`, and `loop()`
//! is `vera_loop`'s scheduler. Objects open without blocking (`connecting`).

use std::cell::RefCell;
use std::time::Instant;

use mlua::{AnyUserData, Lua, Table, Value};

use super::args::{api, expected, opt_table};
use super::vera_loop::{active, run_loop};
use super::vera_socket::{State, VeraSocket, wso};
use super::{log, options};
use crate::connecting::Connecting;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::reconnect::Revival;
use crate::session::Outgoing;
use crate::spec::OpenSpec;
use tungstenite::protocol::frame::coding::CloseCode;

pub use super::vera_socket::METHODS;

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
            // After event 4 the object is closed for the application, whatever still drains.
            if matches!(&*this.state.borrow(), State::Draining(_)) {
                return Ok(-1);
            }
            Ok(this.poll_info().map_or(-1, |p| p.fd))
        }))?,
    )?;
    t.set(
        "protocol",
        lua.create_function(api(|_, v: Value| {
            let ud = wso(1, "protocol", v)?;
            let this = ud.borrow::<VeraSocket>()?;
            let st = this.state.borrow();
            Ok(match &*st {
                State::Open(s) | State::Closing(s, _) => {
                    s.response().and_then(|r| r.protocol()).map(str::to_string)
                }
                _ => None,
            })
        }))?,
    )?;
    t.set(
        "extensions",
        lua.create_function(api(|lua, v: Value| {
            let ud = wso(1, "extensions", v)?;
            let this = ud.borrow::<VeraSocket>()?;
            let st = this.state.borrow();
            let d = match &*st {
                State::Open(s) | State::Closing(s, _) => s.config().deflate.as_ref(),
                _ => None,
            };
            super::luws_api::extensions_table(lua, d)
        }))?,
    )?;
    t.set(
        "response",
        lua.create_function(api(|lua, v: Value| {
            let ud = wso(1, "response", v)?;
            let this = ud.borrow::<VeraSocket>()?;
            let st = this.state.borrow();
            let r = match &*st {
                State::Open(s) | State::Closing(s, _) => s.response(),
                _ => None,
            };
            super::luws_api::response_values(lua, r)
        }))?,
    )?;
    // The URL connected to (after redirects), or the one given to `create` until then.
    t.set(
        "url",
        lua.create_function(api(|_, v: Value| {
            let ud = wso(1, "url", v)?;
            let this = ud.borrow::<VeraSocket>()?;
            let st = this.state.borrow();
            Ok(match &*st {
                State::Open(s) | State::Closing(s, _) | State::Draining(s) => s.url().to_string(),
                _ => this.url.clone(),
            })
        }))?,
    )?;
    t.set(
        "dirty",
        lua.create_function(api(|_, v: Value| {
            let ud = wso(1, "dirty", v)?;
            let this = ud.borrow::<VeraSocket>()?;
            Ok(this.poll_info().is_some_and(|p| p.dirty))
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
                if parts.on_open.is_some() {
                    return Err(refuse("on_open", "event 3 fires after every (re)open"));
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
        revival: RefCell::new(None),
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
        State::Created(Ok(spec)) => {
            if let Some(policy) = spec.reconnect.clone() {
                *this.revival.borrow_mut() = Some(Box::new(Revival::new((*spec).clone(), policy)));
            }
            State::Connecting(Box::new(Connecting::start(*spec, None)))
        }
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
        // Refused, never queued: event 3 says when it is back.
        State::Reconnecting => Err(Error::Reconnecting),
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
    if let Some(r) = this.revival.borrow_mut().as_mut() {
        r.stop();
    }
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
        State::Reconnecting => {
            // Stops at once; event 4 has fired already.
            active(lua)?.raw_set(ud.clone(), Value::Nil)?;
            State::Closed
        }
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
