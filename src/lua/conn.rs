//! The connection object Lua holds (`conn`): a userdata around the core `Session`. Its handlers
//! live in the userdata's user value, where the Lua GC can see them, so a handler that refers
//! to its own conn does not keep it alive forever. Its methods are the LuWS API's
//! (`luws_api::methods`), found through the metatable.

use std::cell::RefCell;

use mlua::{
    AnyUserData, Function, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, Value,
};

use super::args::expected;

use crate::reconnect::{Revival, Standing};
use crate::session::Session;

pub struct Conn {
    pub session: RefCell<Session>,
    /// With `reconnect`: the spec to reopen, the backoff, the outage in progress.
    pub revival: RefCell<Option<Box<Revival>>>,
    /// `host:port`, for `tostring(conn)`.
    pub label: String,
    /// How many `wsreceive` calls on this conn are running (handlers may call it again).
    pub depth: std::cell::Cell<u8>,
    /// The handler_args given to `wsopen` are a table (their elements follow each message);
    /// set once the conn is made reachable from the raw functions (`fast::note_conn`).
    pub args_table: std::cell::Cell<bool>,
    /// Clears the raw functions' cache of this conn when it goes.
    pub seen: super::seen::Seen,
}

impl Conn {
    /// Where the connection stands across reconnects.
    pub fn standing(&self) -> Standing {
        match self.revival.borrow().as_ref().map(|r| r.standing()) {
            Some(Standing::Reopening) => Standing::Reopening,
            Some(Standing::Over) => Standing::Over,
            _ if self.session.borrow().is_connected() => Standing::Live,
            _ => Standing::Over,
        }
    }

    /// The descriptor to watch: the socket, or while reconnecting the reopener's news.
    pub fn raw_fd(&self) -> i32 {
        self.revival
            .borrow()
            .as_ref()
            .and_then(|r| r.raw_fd())
            .unwrap_or_else(|| self.session.borrow().raw_fd())
    }

    /// What `luws.wait` waits for.
    pub fn poll_info(&self) -> Option<crate::poll::PollInfo> {
        match self.revival.borrow().as_ref().and_then(|r| r.poll_info()) {
            Some(p) => Some(p),
            None => self.session.borrow().poll_info(),
        }
    }

    /// The application closes: stop reconnecting at once, then the closing handshake.
    pub fn close(&self) {
        if let Some(r) = self.revival.borrow_mut().as_mut() {
            if r.standing() != Standing::Live {
                // Closed while reconnecting (or given up): from now on simply not connected.
                self.session.borrow_mut().forget_ending();
            }
            r.stop();
        }
        self.session.borrow_mut().close(1000);
    }
}

/// The Lua values a connection dispatches to.
pub struct Handlers {
    pub handler: Function,
    pub control: Option<Function>,
    /// Called after every successful open (`reconnect`).
    pub on_open: Option<Function>,
    pub args: Vec<Value>,
}

pub fn store_handlers(
    ud: &AnyUserData,
    t: &Table,
    handler: Function,
    control: Option<Function>,
    on_open: Option<Function>,
    args: Option<Table>,
) -> mlua::Result<()> {
    t.raw_set("handler", handler)?;
    t.raw_set("control_handler", control)?;
    t.raw_set("on_open", on_open)?;
    t.raw_set("handler_args", args)?;
    ud.set_user_value(t.clone())
}

pub fn handlers(ud: &AnyUserData) -> mlua::Result<Handlers> {
    let t: Table = ud.user_value()?;
    let args = match t.raw_get::<Value>("handler_args")? {
        Value::Table(a) => {
            // LuWS passes unpack(handler_args): the array part, up to its length.
            let n = a.raw_len();
            (1..=n)
                .map(|i| a.raw_get::<Value>(i))
                .collect::<mlua::Result<Vec<_>>>()?
        }
        _ => Vec::new(),
    };
    Ok(Handlers {
        handler: t.raw_get("handler")?,
        control: t.raw_get("control_handler")?,
        on_open: t.raw_get("on_open")?,
        args,
    })
}

/// `self` of a method call, checked like any argument (`conn.send(42)` is misuse, not a crash).
pub fn this(v: Value, func: &'static str) -> mlua::Result<AnyUserData> {
    match v {
        Value::UserData(ud) if ud.is::<Conn>() => Ok(ud),
        other => Err(expected(1, func, "luws connection", &other)),
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

/// Registry key of the conn method table (built once by `methods`, wrapped for plain errors).
pub const METHODS: &str = "luws.conn.methods";

impl UserData for Conn {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_meta_field_with(MetaMethod::Index, |lua| {
            lua.named_registry_value::<Table>(METHODS)
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("luws-websock[{}]", this.label))
        });
    }
}
