//! The connection object Lua holds (`conn`): a userdata around the core `Session`. Its handlers
//! live in the userdata's user value, where the Lua GC can see them, so a handler that refers
//! to its own conn does not keep it alive forever.

use std::cell::RefCell;

use mlua::{AnyUserData, Function, MetaMethod, Table, UserData, UserDataMethods, Value};

use crate::session::Session;

pub struct Conn {
    pub session: RefCell<Session>,
    /// `host:port`, for `tostring(conn)`.
    pub label: String,
}

/// The Lua values a connection dispatches to.
pub struct Handlers {
    pub handler: Function,
    pub control: Option<Function>,
    pub args: Vec<Value>,
}

pub fn store_handlers(
    ud: &AnyUserData,
    t: &Table,
    handler: Function,
    control: Option<Function>,
    args: Option<Table>,
) -> mlua::Result<()> {
    t.raw_set("handler", handler)?;
    t.raw_set("control_handler", control)?;
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
        args,
    })
}

impl UserData for Conn {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("luws-websock[{}]", this.label))
        });
        m.add_function(
            "send",
            |lua, (ud, op, data): (AnyUserData, Value, Value)| {
                super::luws_api::send(lua, &ud, op, data, "send")
            },
        );
        m.add_function("receive", |lua, ud: AnyUserData| {
            super::luws_api::receive(lua, &ud)
        });
        m.add_method("close", |_, this, ()| {
            this.session.borrow_mut().close(1000);
            Ok(())
        });
        m.add_method("lastping", |_, this, ()| {
            Ok(this.session.borrow().last_frame_time())
        });
        // LuaSocket's select() calls these: the descriptor to poll, and whether data already
        // waits in a buffer poll cannot see.
        m.add_method("getfd", |_, this, ()| Ok(this.session.borrow().raw_fd()));
        m.add_method("dirty", |_, this, ()| Ok(this.session.borrow().dirty()));
        m.add_method("isopen", |_, this, ()| Ok(this.session.borrow().is_open()));
    }
}
