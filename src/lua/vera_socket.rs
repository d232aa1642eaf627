//! The verawebsockets object (`wso`): where it stands, from created to closed, and what waiting
//! on it means. Its adapters are in `vera_api`, its scheduler in `vera_loop`.

use std::cell::RefCell;
use std::time::Instant;

use mlua::{AnyUserData, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, Value};

use super::args::expected;
use crate::connecting::Connecting;
use crate::error::Error;
use crate::poll::PollInfo;
use crate::session::Session;
use crate::spec::OpenSpec;
use crate::sys::Interest;

/// Where a verawebsockets object stands.
pub(super) enum State {
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
    /// Event 4 has fired and `reconnect` reopens it off the Lua thread (`revival`).
    Reconnecting,
    Closed,
}

pub struct VeraSocket {
    /// Creation order: `loop()` services objects in it.
    pub(super) id: usize,
    pub(super) standalone: bool,
    pub(super) url: String,
    pub(super) state: RefCell<State>,
    /// With `reconnect`: the spec to reopen, the backoff, the outage in progress.
    pub(super) revival: RefCell<Option<Box<crate::reconnect::Revival>>>,
}

impl VeraSocket {
    /// What `luws.wait` and `loop()` wait for on this object (the scheduler also for a
    /// connection that is finishing its last output after event 4).
    pub(super) fn poll_info(&self) -> Option<PollInfo> {
        match &*self.state.borrow() {
            State::Connecting(c) => c.poll_info(),
            State::Open(s) => s.poll_info(),
            // The close handshake's own deadline is a timer too.
            State::Closing(s, deadline) => s.poll_info().map(|p| PollInfo {
                due: Some(p.due.map_or(*deadline, |d| d.min(*deadline))),
                ..p
            }),
            State::Draining(s) => s.drain_poll_info(),
            State::Reconnecting => self.revival.borrow().as_ref().and_then(|r| r.poll_info()),
            // Event 1 is due at the next loop().
            State::Doomed(_) => Some(PollInfo {
                fd: -1,
                interest: Interest::Read,
                dirty: true,
                due: None,
            }),
            State::Created(_) | State::Closed => None,
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

/// A websocket object argument, checked like any other.
pub(super) fn wso(pos: u8, func: &'static str, v: Value) -> mlua::Result<AnyUserData> {
    match v {
        Value::UserData(ud) if ud.is::<VeraSocket>() => Ok(ud),
        other => Err(expected(pos, func, "websocket object", &other)),
    }
}
