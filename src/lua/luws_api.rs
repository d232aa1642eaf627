//! The LuWS API: `wsopen`, `wssend`, `wsreceive`, `wsclose`, `wslastping`, `wsreset`, each a
//! short adapter around the core, with LuWS's return conventions.

use std::cell::RefCell;
use std::net::TcpStream;

use mlua::{AnyUserData, Function, Lua, MultiValue, ObjectLike, Table, Value};

use super::args::{self, api, bad, expected};
use super::conn::{self, Conn, Handlers, this};
use super::{log, options};
use crate::endpoint::Endpoint;
use crate::error::{Error, SendFailure};
use crate::open::open_blocking;
use crate::reconnect::{Report, Revival, Standing};
use crate::session::{Event, Outgoing, close_frame};
use crate::spec::OpenSpec;
use crate::sys::close_fd;
use crate::tcp::adopt_socket;
use tungstenite::Bytes;
use tungstenite::protocol::CloseFrame;

pub fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set(
        "wsopen",
        lua.create_function(api(|lua, (url, handler, opts): (Value, Value, Value)| {
            wsopen(lua, url, handler, opts)
        }))?,
    )?;
    t.set(
        "wssend",
        lua.create_function(api(
            |lua, (c, op, data): (Value, Value, Value)| match conn::opt_conn(1, "wssend", c)? {
                Some(ud) => send(lua, &ud, op, data, "wssend"),
                None => Ok((false, Some(Error::NotConnected.to_string()))),
            },
        ))?,
    )?;
    t.set(
        "wsreceive",
        lua.create_function(api(|lua, c: Value| {
            match conn::opt_conn(1, "wsreceive", c)? {
                Some(ud) => receive(lua, &ud),
                None => (Value::Nil, Error::NotConnected.to_string()).into_lua_multi(lua),
            }
        }))?,
    )?;
    t.set(
        "wsclose",
        lua.create_function(api(|_, c: Value| {
            if let Some(ud) = conn::opt_conn(1, "wsclose", c)? {
                ud.borrow::<Conn>()?.close();
            }
            Ok(())
        }))?,
    )?;
    t.set(
        "wslastping",
        lua.create_function(api(|_, c: Value| {
            match conn::opt_conn(1, "wslastping", c)? {
                Some(ud) => Ok(ud.borrow::<Conn>()?.session.borrow().last_frame_time()),
                None => Ok(0.0),
            }
        }))?,
    )?;
    // LuWS's "brutal resync" after its parser lost sync; luws's parser cannot, so this only
    // checks its argument.
    t.set(
        "wsreset",
        lua.create_function(api(|_, c: Value| {
            conn::opt_conn(1, "wsreset", c)?;
            Ok(())
        }))?,
    )?;
    Ok(())
}

use mlua::IntoLuaMulti;

/// The mlua versions of the calls `fast` makes raw, unwrapped: what it falls back on.
pub fn slow(lua: &Lua) -> mlua::Result<super::fast::Slow> {
    Ok(super::fast::Slow {
        wsreceive: lua.create_function(api(|lua, c: Value| {
            match conn::opt_conn(1, "wsreceive", c)? {
                Some(ud) => receive(lua, &ud),
                None => (Value::Nil, Error::NotConnected.to_string()).into_lua_multi(lua),
            }
        }))?,
        receive: lua.create_function(api(|lua, c: Value| receive(lua, &this(c, "receive")?)))?,
        getfd: lua.create_function(api(|_, c: Value| {
            Ok(this(c, "getfd")?.borrow::<Conn>()?.raw_fd())
        }))?,
        dirty: lua.create_function(api(|_, c: Value| {
            Ok(this(c, "dirty")?.borrow::<Conn>()?.session.borrow().dirty())
        }))?,
        wssend: lua.create_function(api(|lua, (c, op, data): (Value, Value, Value)| {
            match conn::opt_conn(1, "wssend", c)? {
                Some(ud) => send(lua, &ud, op, data, "wssend"),
                None => Ok((false, Some(Error::NotConnected.to_string()))),
            }
        }))?,
        send: lua.create_function(api(|lua, (c, op, data): (Value, Value, Value)| {
            send(lua, &this(c, "send")?, op, data, "send")
        }))?,
        wait: lua.create_function(api(super::wait::wait))?,
        rest: lua.create_function(|lua, (c, began_open, nbytes): (AnyUserData, bool, usize)| {
            receive_rest(lua, &c, began_open, nbytes)
        })?,
    })
}

/// The methods of a conn (`conn:send(op, data)` …), the same adapters as the LuWS functions.
pub fn methods(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "send",
        lua.create_function(api(|lua, (c, op, data): (Value, Value, Value)| {
            send(lua, &this(c, "send")?, op, data, "send")
        }))?,
    )?;
    t.set(
        "receive",
        lua.create_function(api(|lua, c: Value| receive(lua, &this(c, "receive")?)))?,
    )?;
    t.set(
        "close",
        lua.create_function(api(|_, c: Value| {
            this(c, "close")?.borrow::<Conn>()?.close();
            Ok(())
        }))?,
    )?;
    t.set(
        "lastping",
        lua.create_function(api(|_, c: Value| {
            Ok(this(c, "lastping")?
                .borrow::<Conn>()?
                .session
                .borrow()
                .last_frame_time())
        }))?,
    )?;
    // LuaSocket's select() calls these: the descriptor to poll, and whether data already
    // waits in a buffer poll cannot see.
    t.set(
        "getfd",
        lua.create_function(api(|_, c: Value| {
            Ok(this(c, "getfd")?.borrow::<Conn>()?.raw_fd())
        }))?,
    )?;
    t.set(
        "dirty",
        lua.create_function(api(|_, c: Value| {
            Ok(this(c, "dirty")?.borrow::<Conn>()?.session.borrow().dirty())
        }))?,
    )?;
    // The URL it opened, after any redirect (`follow_redirects`).
    t.set(
        "url",
        lua.create_function(api(|_, c: Value| {
            let ud = this(c, "url")?;
            let conn = ud.borrow::<Conn>()?;
            let s = conn.session.borrow();
            Ok(s.url().to_string())
        }))?,
    )?;
    // The server's 101 answer: the subprotocol it chose, and status, reason, headers.
    t.set(
        "protocol",
        lua.create_function(api(|_, c: Value| {
            let ud = this(c, "protocol")?;
            let conn = ud.borrow::<Conn>()?;
            let s = conn.session.borrow();
            Ok(s.response().and_then(|r| r.protocol()).map(str::to_string))
        }))?,
    )?;
    // The extensions agreed in the handshake: `{ permessage_deflate = {...} }`, or `{}`.
    t.set(
        "extensions",
        lua.create_function(api(|lua, c: Value| {
            let ud = this(c, "extensions")?;
            let conn = ud.borrow::<Conn>()?;
            let s = conn.session.borrow();
            extensions_table(lua, s.config().deflate.as_ref())
        }))?,
    )?;
    t.set(
        "response",
        lua.create_function(api(|lua, c: Value| {
            let ud = this(c, "response")?;
            let conn = ud.borrow::<Conn>()?;
            let s = conn.session.borrow();
            response_values(lua, s.response())
        }))?,
    )?;
    // open / reconnecting / closed (with `reconnect`, a connection comes back by itself).
    t.set(
        "state",
        lua.create_function(api(|_, c: Value| {
            Ok(match this(c, "state")?.borrow::<Conn>()?.standing() {
                Standing::Live => "open",
                Standing::Reopening => "reconnecting",
                Standing::Over => "closed",
            })
        }))?,
    )?;
    t.set(
        "isopen",
        lua.create_function(api(|_, c: Value| {
            Ok(this(c, "isopen")?
                .borrow::<Conn>()?
                .session
                .borrow()
                .is_open())
        }))?,
    )?;
    Ok(t)
}

fn wsopen(lua: &Lua, url: Value, handler: Value, opts: Value) -> mlua::Result<MultiValue> {
    let url_text = match &url {
        Value::Nil => None,
        Value::String(s) => Some(s.to_string_lossy()),
        Value::Integer(_) | Value::Number(_) => {
            Some(String::from_utf8_lossy(&lua_text(lua, url.clone())?).into_owned())
        }
        other => return Err(expected(1, "wsopen", "string", other)),
    };
    let handler = args::function(2, "wsopen", handler)?;
    let opts = args::opt_table(3, "wsopen", opts)?;
    // A server that refused the upgrade: its status and headers come third.
    let failed = |e: Error| match &e {
        Error::Upgrade(crate::error::UpgradeFailure::Refused(r)) => {
            (false, e.to_string(), response_table(lua, r)?).into_lua_multi(lua)
        }
        _ => (false, e.to_string()).into_lua_multi(lua),
    };

    let Some(url_text) = url_text else {
        return failed(Error::BadUrl {
            url: "nil".into(),
            why: crate::error::UrlProblem::Missing,
        });
    };
    let endpoint = match Endpoint::parse(&url_text) {
        Ok(e) => e,
        Err(e) => return failed(e),
    };
    let mut spec = OpenSpec::new(endpoint);
    let parts = match &opts {
        Some(t) => options::read(t, &mut spec, "wsopen")?,
        None => options::LuaParts {
            control_handler: None,
            handler_args: None,
            connect: None,
            on_open: None,
        },
    };

    let tcp = match &parts.connect {
        Some(f) => match user_connect(f, &spec.endpoint)? {
            Ok(s) => Some(s),
            Err(e) => return failed(e),
        },
        None => None,
    };
    let label = spec.endpoint.host_port();
    if let Some(t) = &opts {
        options::fill_defaults(t, &spec)?;
    }
    let revival = spec
        .reconnect
        .clone()
        .map(|policy| Box::new(Revival::new(spec.clone(), policy)));
    let session = match open_blocking(spec, tcp) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    // A conn is small to Lua's collector but holds a socket and buffers: tell the collector
    // what it costs, so conns dropped without wsclose do not pile up (their descriptors with
    // them).
    collector_pressure(lua, CONN_KBYTES);
    let ud = lua.create_userdata(Conn {
        session: RefCell::new(session),
        revival: RefCell::new(revival),
        label,
        depth: std::cell::Cell::new(0),
        args_table: std::cell::Cell::new(false),
        seen: super::seen::Seen::new(),
    })?;
    conn::store_handlers(
        &ud,
        &lua.create_table()?,
        handler,
        parts.control_handler,
        parts.on_open,
        parts.handler_args,
    )?;
    super::fast::note_conn(lua, &ud)?;
    // on_open runs after every successful open, the first one included (attempt 0), so a
    // plugin subscribes in one place.
    opened(lua, &ud, 0)?;
    ud.into_lua_multi(lua)
}

/// What an open conn holds outside Lua's heap, roughly (socket buffers aside): read and write
/// buffers, the session, TLS state.
const CONN_KBYTES: i32 = 16;

/// Tells Lua's collector that `kbytes` were allocated where it cannot see them (LUA_GCSTEP
/// with a size: "as if data KB were allocated", the same in Lua 5.1 to 5.4 and LuaJIT).
fn collector_pressure(lua: &Lua, kbytes: i32) {
    // SAFETY: one lua_gc call on the state mlua hands us, inside its protected call; it pushes
    // and pops nothing. Finalizers it runs are luws's own (Drop of sessions, never raising).
    let _ = unsafe {
        lua.exec_raw::<()>((), |state| {
            mlua::ffi::lua_gc(state, mlua::ffi::LUA_GCSTEP, kbytes);
        })
    };
}

/// Calls `on_open(conn, attempt, handler_args...)`, if there is one.
fn opened(lua: &Lua, ud: &AnyUserData, attempt: u32) -> mlua::Result<()> {
    let h = conn::handlers(ud)?;
    if let Some(f) = &h.on_open {
        let mut mv = MultiValue::with_capacity(2 + h.args.len());
        mv.push_back(Value::UserData(ud.clone()));
        // lua_Integer is 32-bit on 32-bit targets (Vera), 64-bit elsewhere.
        #[allow(clippy::unnecessary_fallible_conversions)]
        let attempt = mlua::Integer::try_from(attempt).unwrap_or(mlua::Integer::MAX);
        mv.push_back(Value::Integer(attempt));
        mv.extend(h.args.iter().cloned());
        if let Err(e) = f.call::<()>(mv) {
            log::error(lua, &format!("on_open handler error: {e}"));
        }
    }
    Ok(())
}

/// A server's answer as `status, reason, headers` (header names lowercase; repeated fields
/// joined with ", "), or nil when there is none.
pub fn response_values(
    lua: &Lua,
    r: Option<&crate::response::Response>,
) -> mlua::Result<MultiValue> {
    match r {
        None => Value::Nil.into_lua_multi(lua),
        Some(r) => (r.status, r.reason.as_str(), headers_table(lua, r)?).into_lua_multi(lua),
    }
}

/// A server's answer as one table: `{ status =, reason =, headers = {…} }`.
/// What `extensions()` answers: the permessage-deflate parameters in force, by their names in
/// the handshake.
pub fn extensions_table(
    lua: &Lua,
    deflate: Option<&crate::extension::DeflateParams>,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    if let Some(p) = deflate {
        let d = lua.create_table()?;
        d.set("client_max_window_bits", p.client_max_window_bits)?;
        d.set("server_max_window_bits", p.server_max_window_bits)?;
        d.set("client_no_context_takeover", p.client_no_context_takeover)?;
        d.set("server_no_context_takeover", p.server_no_context_takeover)?;
        t.set("permessage_deflate", d)?;
    }
    Ok(t)
}

fn response_table(lua: &Lua, r: &crate::response::Response) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("status", r.status)?;
    t.set("reason", r.reason.as_str())?;
    t.set("headers", headers_table(lua, r)?)?;
    Ok(t)
}

fn headers_table(lua: &Lua, r: &crate::response::Response) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (k, v) in &r.headers {
        let joined = match t.raw_get::<Option<String>>(k.as_str())? {
            Some(before) => format!("{before}, {v}"),
            None => v.clone(),
        };
        t.raw_set(k.as_str(), joined)?;
    }
    Ok(t)
}

/// The state `wsreceive` answers while a connection is being reopened (not nil: nil tells a
/// LuWS plugin the connection is gone for good).
const RECONNECTING: &str = "reconnecting";

/// With `reconnect`: picks up a reopened connection (then the receive goes on), or answers for
/// an outage still in progress or given up. `None`: receive as usual.
fn pick_up(lua: &Lua, ud: &AnyUserData) -> mlua::Result<Option<MultiValue>> {
    let reopened = {
        let conn = ud.borrow::<Conn>()?;
        let mut rv = conn.revival.borrow_mut();
        let Some(rv) = rv.as_mut() else {
            return Ok(None);
        };
        if let Some(e) = rv.gave_up() {
            return Ok(Some((Value::Nil, e.to_string()).into_lua_multi(lua)?));
        }
        if rv.standing() != Standing::Reopening {
            return Ok(None);
        }
        let mut reopened = None;
        while let Some(report) = rv.poll() {
            match report {
                Report::Open {
                    attempt, session, ..
                } => {
                    reopened = Some((attempt, session));
                    break;
                }
                Report::Failed { attempt, error } => {
                    log::info(lua, &format!("reconnect attempt {attempt}: {error}"));
                }
                Report::GaveUp(e) => {
                    return Ok(Some((Value::Nil, e.to_string()).into_lua_multi(lua)?));
                }
            }
        }
        reopened
    };
    match reopened {
        None => Ok(Some((false, 0, RECONNECTING).into_lua_multi(lua)?)),
        Some((attempt, session)) => {
            let conn = ud.borrow::<Conn>()?;
            // The ended session goes (its socket is closed already).
            *conn.session.borrow_mut() = *session;
            drop(conn);
            opened(lua, ud, attempt)?;
            Ok(None)
        }
    }
}

/// Calls the `connect` option as LuWS does, `connect(host, port)`, and takes over the socket it
/// returns (anything with `getfd`, such as a LuaSocket TCP object after a SockProxy greeting).
fn user_connect(f: &Function, ep: &Endpoint) -> mlua::Result<Result<TcpStream, Error>> {
    let (obj, err): (Value, Value) = f.call((ep.host.as_str(), ep.port))?;
    let obj = match obj {
        Value::Nil | Value::Boolean(false) => {
            let msg = match err {
                Value::String(s) => s.to_string_lossy(),
                Value::Nil => format!("Connection to {}:{} failed", ep.host, ep.port),
                other => other.to_string()?,
            };
            return Ok(Err(Error::ConnectFunction(msg)));
        }
        other => other,
    };
    let call = |name: &str, args: MultiValue| -> mlua::Result<Value> {
        let method: Value = match &obj {
            Value::Table(t) => t.get(name)?,
            Value::UserData(u) => u.get(name).unwrap_or(Value::Nil),
            _ => Value::Nil,
        };
        match method {
            Value::Function(m) => {
                let mut a = MultiValue::new();
                a.push_back(obj.clone());
                a.extend(args);
                m.call(a)
            }
            _ => Ok(Value::Nil),
        }
    };
    let fd = fd_number(&call("getfd", MultiValue::new())?);
    // Take a private copy of the descriptor, then have the Lua object forget its own (LuaSocket's
    // setfd) so that its close or collection cannot touch the connection.
    let Some(tcp) = i32::try_from(fd).ok().and_then(|fd| adopt_socket(fd).ok()) else {
        return Ok(Err(Error::NoSocket));
    };
    let mut forget = MultiValue::new();
    forget.push_back(Value::Integer(-1));
    // Close the original only when the object demonstrably let go of it (an object without a
    // working setfd keeps its descriptor, and closes it itself; our copy stays valid).
    let let_go = call("setfd", forget).is_ok()
        && call("getfd", MultiValue::new()).is_ok_and(|v| fd_number(&v) != fd);
    if let_go {
        close_fd(fd as i32);
    }
    Ok(Ok(tcp))
}

/// A descriptor number as a Lua object reports it (`getfd`), or -1.
fn fd_number(v: &Value) -> i64 {
    match v {
        // lua_Integer is 32-bit on 32-bit targets (Vera), 64-bit elsewhere.
        #[allow(clippy::unnecessary_cast)]
        Value::Integer(i) => *i as i64,
        Value::Number(n) => *n as i64,
        _ => -1,
    }
}

/// The opcodes of LuWS's API (RFC 6455 §5.2 numbers): what `wssend` takes and the handlers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl Opcode {
    fn read(v: &Value, func: &'static str) -> mlua::Result<Opcode> {
        let n = match v {
            Value::Integer(i) => *i as f64,
            Value::Number(n) => *n,
            other => return Err(expected(2, func, "number", other)),
        };
        Ok(match n {
            1.0 => Opcode::Text,
            2.0 => Opcode::Binary,
            8.0 => Opcode::Close,
            9.0 => Opcode::Ping,
            10.0 => Opcode::Pong,
            _ => return Err(bad(2, func, "opcode must be 1, 2, 8, 9 or 10")),
        })
    }

    fn lua(self) -> Value {
        Value::Integer(self as mlua::Integer)
    }
}

/// A Close frame's body as the control handler gets it: the code, big-endian, then the reason.
fn close_body(frame: &Option<CloseFrame>) -> Vec<u8> {
    match frame {
        Some(f) => {
            let mut v = u16::from(f.code).to_be_bytes().to_vec();
            v.extend_from_slice(f.reason.as_bytes());
            v
        }
        None => Vec::new(),
    }
}

/// A Lua string lent to the frame writer without a copy (masking copies it into the socket
/// buffer anyway). The borrow keeps the string alive; Lua strings never move.
struct LuaBytes(mlua::BorrowedBytes);

// SAFETY: `Bytes::from_owner` asks for Send, but these bytes never leave the Lua thread: a send
// formats the frame (copying the payload) and drops the message before `Session::send` returns,
// and a session never crosses threads.
unsafe impl Send for LuaBytes {}

impl AsRef<[u8]> for LuaBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A Lua string as `Bytes`, without copying it.
pub fn lua_bytes(s: &mlua::LuaString) -> Bytes {
    Bytes::from_owner(LuaBytes(s.as_bytes()))
}

/// The bytes of `data`: a string, nil (empty), or an LTN12 source drained into one message.
fn payload(lua: &Lua, data: Value, func: &'static str) -> mlua::Result<Result<Bytes, SendFailure>> {
    match data {
        Value::Nil => Ok(Ok(Bytes::new())),
        Value::String(s) => Ok(Ok(lua_bytes(&s))),
        // Numbers become text the way this Lua's tostring writes them.
        Value::Integer(_) | Value::Number(_) => Ok(Ok(Bytes::from(lua_text(lua, data)?))),
        Value::Function(src) => {
            let mut out = Vec::new();
            loop {
                match src.call::<(Value, Value)>(()) {
                    Ok((Value::String(s), _)) => out.extend_from_slice(&s.as_bytes()),
                    Ok((Value::Nil, Value::Nil)) => return Ok(Ok(Bytes::from(out))),
                    Ok((Value::Nil, err)) => {
                        return Ok(Err(SendFailure::Source(
                            err.to_string().unwrap_or_default(),
                        )));
                    }
                    Ok((other, _)) => {
                        return Ok(Err(SendFailure::Source(format!(
                            "chunk must be a string, got {}",
                            super::args::type_name(&other)
                        ))));
                    }
                    Err(e) => return Ok(Err(SendFailure::Source(e.to_string()))),
                }
            }
        }
        other => Err(expected(3, func, "string or function", &other)),
    }
}

/// `wssend(conn, opcode, data)` -> `true` | `false, err`.
pub fn send(
    lua: &Lua,
    ud: &AnyUserData,
    op: Value,
    data: Value,
    func: &'static str,
) -> mlua::Result<(bool, Option<String>)> {
    let op = Opcode::read(&op, func)?;
    let refused = |f| Ok((false, Some(Error::Send(f).to_string())));
    let bytes = match payload(lua, data, func)? {
        Ok(b) => b,
        Err(f) => return refused(f),
    };
    let out = match op {
        Opcode::Text => Outgoing::Text(bytes),
        Opcode::Binary => Outgoing::Binary(bytes),
        Opcode::Close => match close_frame(bytes) {
            Ok(f) => Outgoing::Close(f),
            Err(f) => return refused(f),
        },
        Opcode::Ping => Outgoing::Ping(bytes),
        Opcode::Pong => Outgoing::Pong(bytes),
    };
    let conn = ud.borrow::<Conn>()?;
    if conn.standing() == Standing::Reopening {
        // Refused, never queued: the plugin resends what it needs from on_open.
        return Ok((false, Some(Error::Reconnecting.to_string())));
    }
    let result = conn.session.borrow_mut().send(out);
    match result {
        Ok(()) => Ok((true, None)),
        Err(e) => {
            // A send that ended the connection (a stalled peer, a reset) starts reconnecting
            // now: a plugin that waits only on live conns would not call wsreceive on it.
            if conn.session.borrow().ended_unasked() {
                if let Some(r) = conn.revival.borrow_mut().as_mut() {
                    if r.standing() == Standing::Live {
                        r.connection_ended();
                    }
                }
            }
            Ok((false, Some(e.to_string())))
        }
    }
}

/// `wsreceive(conn)` -> `more, nbytes` | `nil, err`. Dispatches every complete message to the
/// handler; no borrow of the session is held while Lua code runs.
/// How deep handlers may nest `wsreceive` on one conn. Deeper calls return `true, 0` at once:
/// each level costs C stack, and Lua 5.1 allows only ~200 nested C calls; an overflow inside a
/// dispatch would lose the message being delivered.
const MAX_NESTED_RECEIVE: u8 = 8;

pub fn receive(lua: &Lua, ud: &AnyUserData) -> mlua::Result<MultiValue> {
    {
        let conn = ud.borrow::<Conn>()?;
        let d = conn.depth.get();
        if d >= MAX_NESTED_RECEIVE {
            return (true, 0).into_lua_multi(lua);
        }
        conn.depth.set(d + 1);
    }
    let r = match pick_up(lua, ud) {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => receive_events(lua, ud).and_then(|answer| reopen_after_end(lua, ud, answer)),
        Err(e) => Err(e),
    };
    if let Ok(conn) = ud.borrow::<Conn>() {
        conn.depth.set(conn.depth.get().saturating_sub(1));
        conn.session.borrow().receive_done();
    }
    r
}

/// After a receive: a connection that just ended by itself starts reconnecting, and the call
/// answers `false, 0, "reconnecting"` in place of `nil, err` (the handler was told already).
fn reopen_after_end(lua: &Lua, ud: &AnyUserData, answer: MultiValue) -> mlua::Result<MultiValue> {
    let conn = ud.borrow::<Conn>()?;
    let mut rv = conn.revival.borrow_mut();
    let Some(rv) = rv.as_mut() else {
        return Ok(answer);
    };
    if rv.standing() != Standing::Live || !conn.session.borrow().ended_unasked() {
        return Ok(answer);
    }
    rv.connection_ended();
    match rv.gave_up() {
        Some(e) => (Value::Nil, e.to_string()).into_lua_multi(lua),
        None => (false, 0, RECONNECTING).into_lua_multi(lua),
    }
}

fn receive_events(lua: &Lua, ud: &AnyUserData) -> mlua::Result<MultiValue> {
    let began_open = ud.borrow::<Conn>()?.session.borrow_mut().begin_receive();
    receive_rest(lua, ud, began_open, 0)
}

/// The rest of a receive call that began elsewhere (`fast`, which hands over at the first
/// event it does not handle itself, given back with `Session::unread`).
pub fn receive_rest(
    lua: &Lua,
    ud: &AnyUserData,
    began_open: bool,
    mut nbytes: usize,
) -> mlua::Result<MultiValue> {
    let conn = ud.borrow::<Conn>()?;
    let mut handlers: Option<Handlers> = None;
    loop {
        let (event, message) = {
            let mut s = conn.session.borrow_mut();
            let ev = s.next_event();
            nbytes = nbytes.max(s.bytes_read());
            // The message's bytes are the session's until its next step: copy them now.
            let message = match ev {
                Event::Message { .. } => Some(lua.create_string(s.message())?),
                _ => None,
            };
            (ev, message)
        };
        // Idle and budget stops need no handler: skip the user-value lookups (the idle path).
        match event {
            Event::Idle => return (false, nbytes).into_lua_multi(lua),
            Event::Paused => return (true, nbytes).into_lua_multi(lua),
            _ => {}
        }
        let h = match &handlers {
            Some(h) => h,
            None => handlers.insert(conn::handlers(ud)?),
        };
        match event {
            Event::Message { text } => {
                let Some(s) = message else { continue };
                dispatch(
                    lua,
                    &h.handler,
                    ud,
                    Value::Integer(if text { 1 } else { 2 }),
                    Value::String(s),
                    &h.args,
                    "message handler",
                );
            }
            Event::Ping(_) | Event::Pong(_) | Event::Close(_) => {
                let (opcode, data) = match &event {
                    Event::Ping(p) => (Opcode::Ping, p.to_vec()),
                    Event::Pong(p) => (Opcode::Pong, p.to_vec()),
                    Event::Close(f) => (Opcode::Close, close_body(f)),
                    _ => continue,
                };
                let mut default = true;
                if let Some(ch) = &h.control {
                    let s = Value::String(lua.create_string(&data)?);
                    let r = dispatch(lua, ch, ud, opcode.lua(), s, &h.args, "control handler");
                    default = !matches!(r, Some(Value::Boolean(false)));
                }
                if opcode == Opcode::Close && default {
                    let msg = Error::Receive(crate::error::ReceiveFailure::Closed).to_string();
                    let s = Value::String(lua.create_string(&msg)?);
                    dispatch(
                        lua,
                        &h.handler,
                        ud,
                        Value::Boolean(false),
                        s,
                        &h.args,
                        "message handler",
                    );
                }
            }
            Event::Failed(e) => {
                let s = Value::String(lua.create_string(e.to_string())?);
                dispatch(
                    lua,
                    &h.handler,
                    ud,
                    Value::Boolean(false),
                    s,
                    &h.args,
                    "message handler",
                );
                return (Value::Nil, e.receive_return_text()).into_lua_multi(lua);
            }
            Event::Ended(e) => {
                // Closed by the application during this call (a handler called wsclose): a quiet end.
                if began_open && e == Error::NotConnected {
                    return (false, nbytes).into_lua_multi(lua);
                }
                return (Value::Nil, e.receive_return_text()).into_lua_multi(lua);
            }
            Event::Idle => return (false, nbytes).into_lua_multi(lua),
            Event::Paused => return (true, nbytes).into_lua_multi(lua),
        }
    }
}

/// Calls a user handler as `f(conn, a, b, handler_args...)`. An error it raises is logged and
/// swallowed: one bad message must not break the connection or lose the ones after it.
fn dispatch(
    lua: &Lua,
    f: &Function,
    ud: &AnyUserData,
    a: Value,
    b: Value,
    extra: &[Value],
    what: &str,
) -> Option<Value> {
    let mut mv = MultiValue::with_capacity(3 + extra.len());
    mv.push_back(Value::UserData(ud.clone()));
    mv.push_back(a);
    mv.push_back(b);
    mv.extend(extra.iter().cloned());
    match f.call::<Value>(mv) {
        Ok(v) => Some(v),
        Err(e) => {
            log::error(lua, &format!("{what} error: {e}"));
            None
        }
    }
}

/// A number as this Lua's own tostring would write it (5.1 `%.14g`, 5.3+ integers and floats).
pub fn lua_text(lua: &Lua, v: Value) -> mlua::Result<Vec<u8>> {
    Ok(match lua.coerce_string(v)? {
        Some(s) => s.as_bytes().to_vec(),
        None => Vec::new(),
    })
}
