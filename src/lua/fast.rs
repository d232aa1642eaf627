//! The hot calls as raw `lua_CFunction`s (issue 13): `wsreceive`, `conn:receive()`, `wssend`,
//! `conn:send()`, `luws.wait`, `conn:getfd()` and `conn:dirty()` without mlua's per-call machinery or the plain-errors
//! wrapper. Every `unsafe` block of the binding's raw Lua calls lives in this file.
//!
//! Each function is a C closure whose upvalue 1 is the mlua version of the same call. The raw
//! code handles the common case (an open conn, no `reconnect`, not nested in a handler);
//! anything else goes to the mlua version under `lua_pcall`, so every answer and every error
//! string stays the one that version gives. Misuse (a wrong argument) is raised here with the
//! same words. Errors raised are plain strings, as the wrapper made them; a Rust panic is
//! caught and raised as one.
//!
//! A conn is recognised by its metatable (kept in the registry under `CONN_MT`'s address when
//! a conn is made) and its `Conn` found through a light userdata in its user values (`SLOT`):
//! mlua's own borrow costs a type-id lookup per call.

use std::ffi::{c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use mlua::{AnyUserData, Function, Lua, Table, ffi};

use super::conn::Conn;
use super::seen::Last;
use crate::error::Error;
use crate::poll::{FEW, PollInfo, wait_few, wait_one};
use crate::session::Event;

/// Its address is the registry key of the conn metatable.
static CONN_MT: u8 = 0;

/// The user value (mlua numbers them; 1 is the handlers table) that holds the `Conn` address.
const SLOT: usize = 2;
/// The user value that keeps the `Last` a conn may be entered in alive as long as the conn
/// (`seen::Last`).
const CACHE: usize = 3;
/// The user values that hold the message handler and the handler_args table (or nil): read
/// by index per receive, not by name from the handlers table (a name is interned per lookup).
/// The handler_args come last, so that without them the table has an array part only.
const HANDLER: usize = 4;
const ARGS: usize = 5;

/// Its address is the registry key of the module's `Last`.
static LAST: u8 = 0;

/// What a panic inside a raw call becomes (mlua's wrapper reported panics as errors too).
const PANIC_TEXT: &str = "luws: internal error (a Rust panic; the call did nothing more)";

/// The Lua C calls of the hot path as the C API has them. mlua-sys's portable versions add a
/// `lua_type` after a get and a `lua_tostring` after a push under Lua 5.1 and 5.2, which the
/// hot path never looks at.
mod raw {
    use std::ffi::{c_char, c_int};

    use mlua::ffi;

    /// Pushes `t[n]` of the table at `idx`.
    ///
    /// SAFETY (all three): `l` is the running state with a free stack slot; `idx` is valid.
    #[inline(always)]
    pub unsafe fn rawgeti(l: *mut ffi::lua_State, idx: c_int, n: c_int) {
        // SAFETY: see above.
        unsafe {
            #[cfg(any(feature = "lua51", feature = "luajit", feature = "lua52"))]
            ffi::lua_rawgeti_(l, idx, n);
            #[cfg(not(any(feature = "lua51", feature = "luajit", feature = "lua52")))]
            ffi::lua_rawgeti(l, idx, ffi::lua_Integer::from(n));
        }
    }

    /// Pushes a copy of `len` bytes at `s` as a string.
    #[inline(always)]
    pub unsafe fn pushlstring(l: *mut ffi::lua_State, s: *const c_char, len: usize) {
        // SAFETY: see above; `s` points to `len` readable bytes (Lua copies them).
        unsafe {
            #[cfg(any(feature = "lua51", feature = "luajit", feature = "lua52"))]
            ffi::lua_pushlstring_(l, s, len);
            #[cfg(not(any(feature = "lua51", feature = "luajit", feature = "lua52")))]
            ffi::lua_pushlstring(l, s, len);
        }
    }

    /// Pops a table and makes it the user value (mlua's table of user values) of the
    /// userdata at `idx`.
    #[inline(always)]
    pub unsafe fn setuservalue(l: *mut ffi::lua_State, idx: c_int) {
        // SAFETY: see above; a table is on top.
        unsafe {
            #[cfg(any(feature = "lua51", feature = "luajit"))]
            ffi::lua_setfenv(l, idx);
            #[cfg(any(feature = "lua52", feature = "lua53"))]
            ffi::lua_setuservalue(l, idx);
            #[cfg(any(feature = "lua54", feature = "lua55"))]
            ffi::lua_setiuservalue(l, idx, 1);
        }
    }

    /// Pushes the user value (mlua's table of user values) of the userdata at `idx`.
    #[inline(always)]
    pub unsafe fn getuservalue(l: *mut ffi::lua_State, idx: c_int) {
        // SAFETY: see above.
        unsafe {
            #[cfg(any(feature = "lua51", feature = "luajit"))]
            ffi::lua_getfenv(l, idx);
            #[cfg(feature = "lua52")]
            ffi::lua_getuservalue_(l, idx);
            #[cfg(feature = "lua53")]
            ffi::lua_getuservalue(l, idx);
            #[cfg(any(feature = "lua54", feature = "lua55"))]
            ffi::lua_getiuservalue(l, idx, 1);
        }
    }
}

/// Makes a new conn reachable from the raw functions: its address in its user values, and the
/// conn metatable in the registry.
pub fn note_conn(lua: &Lua, ud: &AnyUserData) -> mlua::Result<()> {
    let ptr: *const Conn = &*ud.borrow::<Conn>()?;
    // SAFETY: inside mlua's protected call with the userdata pushed as the one argument. Its
    // user-value table (mlua's, holding the handlers table at 1: `store_handlers`) is replaced
    // by one made at its final size, holding the same handlers table, the `Conn` address, the
    // registry's `Last`, the handler and the handler_args (a table grown one key at a time
    // costs an idle conn about 140 bytes more). The conn metatable goes into the registry.
    // Every push is popped or stored.
    unsafe {
        lua.exec_raw::<()>(ud, |l| {
            let ud = ffi::lua_gettop(l);
            raw::getuservalue(l, ud);
            if ffi::lua_type(l, ud + 1) != ffi::LUA_TTABLE {
                ffi::lua_settop(l, ud);
                return;
            }
            raw::rawgeti(l, ud + 1, 1);
            let handlers = ud + 2;
            ffi::lua_pushstring(l, c"handler_args".as_ptr());
            ffi::lua_rawget(l, handlers);
            let args = ud + 3;
            (*ptr)
                .args_table
                .set(ffi::lua_type(l, args) == ffi::LUA_TTABLE);
            let slots = if ffi::lua_type(l, args) == ffi::LUA_TNIL {
                ARGS - 1
            } else {
                ARGS
            };
            ffi::lua_createtable(l, slots as c_int, 0);
            let t = ud + 4;
            ffi::lua_pushvalue(l, handlers);
            ffi::lua_rawseti(l, t, 1);
            ffi::lua_pushlightuserdata(l, ptr as *mut c_void);
            ffi::lua_rawseti(l, t, SLOT as ffi::lua_Integer);
            ffi::lua_rawgetp(
                l,
                ffi::LUA_REGISTRYINDEX,
                &LAST as *const u8 as *const c_void,
            );
            let last = ffi::lua_touserdata(l, -1) as *const Last;
            if !last.is_null() {
                (*ptr).seen.link(last);
            }
            ffi::lua_rawseti(l, t, CACHE as ffi::lua_Integer);
            ffi::lua_pushstring(l, c"handler".as_ptr());
            ffi::lua_rawget(l, handlers);
            ffi::lua_rawseti(l, t, HANDLER as ffi::lua_Integer);
            ffi::lua_pushvalue(l, args);
            ffi::lua_rawseti(l, t, ARGS as ffi::lua_Integer);
            raw::setuservalue(l, ud);
            if ffi::lua_getmetatable(l, ud) != 0 {
                ffi::lua_rawsetp(l, ffi::LUA_REGISTRYINDEX, key());
            }
            ffi::lua_settop(l, ud);
        })
    }
}

fn key() -> *const c_void {
    &CONN_MT as *const u8 as *const c_void
}

/// Installs the raw versions in `t` (module table) and `methods`, each around the mlua
/// function it replaces (kept unwrapped: errors are made plain here).
pub fn install(lua: &Lua, t: &Table, methods: &Table, slow: Slow) -> mlua::Result<()> {
    // SAFETY: inside mlua's protected call; lua_newuserdata's block (aligned for any type) is
    // initialised before anything can read it, and lua_rawsetp pops it into the registry.
    unsafe {
        lua.exec_raw::<()>((), |l| {
            let p = ffi::lua_newuserdata(l, std::mem::size_of::<Last>()) as *mut Last;
            p.write(Last::new());
            ffi::lua_rawsetp(
                l,
                ffi::LUA_REGISTRYINDEX,
                &LAST as *const u8 as *const c_void,
            );
        })?;
    }
    t.raw_set("wsreceive", closure(lua, wsreceive, slow.wsreceive)?)?;
    methods.raw_set("receive", closure(lua, receive, slow.receive)?)?;
    methods.raw_set("getfd", closure(lua, getfd, slow.getfd)?)?;
    methods.raw_set("dirty", closure(lua, dirty, slow.dirty)?)?;
    t.raw_set("wssend", closure(lua, wssend, slow.wssend)?)?;
    methods.raw_set("send", closure(lua, send, slow.send)?)?;
    t.raw_set("wait", closure(lua, wait, slow.wait)?)?;
    // SAFETY: inside mlua's protected call with `rest` pushed; lua_rawsetp pops it into the
    // registry.
    unsafe {
        lua.exec_raw::<()>(slow.rest, |l| {
            ffi::lua_rawsetp(
                l,
                ffi::LUA_REGISTRYINDEX,
                &REST as *const u8 as *const c_void,
            );
        })
    }
}

/// The mlua functions the raw ones fall back on, unwrapped.
pub struct Slow {
    pub wsreceive: Function,
    pub receive: Function,
    pub getfd: Function,
    pub dirty: Function,
    pub wssend: Function,
    pub send: Function,
    pub wait: Function,
    /// `receive_rest(conn, began_open, nbytes)`: the rest of a call from its first event that
    /// the raw loop does not handle (given back with `Session::unread`).
    pub rest: Function,
}

/// Its address is the registry key of `Slow::rest`.
static REST: u8 = 0;

/// A raw function as a C closure: upvalue 1 is the mlua version, upvalue 2 the conn metatable
/// once `conn_at` has found it (nil until then), upvalue 3 the module's `Last`.
fn closure(lua: &Lua, f: ffi::lua_CFunction, slow: Function) -> mlua::Result<Function> {
    // SAFETY: inside mlua's protected call with `slow` pushed; lua_pushcclosure pops it, the
    // nil and the `Last` (from the registry, where `install` put it) as the closure's
    // upvalues and pushes the closure, the call's one result.
    unsafe {
        lua.exec_raw::<Function>(slow, |l| {
            ffi::lua_pushnil(l);
            ffi::lua_rawgetp(
                l,
                ffi::LUA_REGISTRYINDEX,
                &LAST as *const u8 as *const c_void,
            );
            ffi::lua_pushcclosure(l, f, 3);
        })
    }
}

/// The `Conn` of the value at `idx`, if it is a live conn.
///
/// SAFETY (callers): `l` is the running state, inside a closure made by `closure`; the returned reference is valid while the
/// value stays on the stack (a conn on the stack cannot be collected; mlua replaces the
/// metatable of a destroyed one, so the check below fails for it).
#[inline]
unsafe fn conn_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a Conn> {
    // SAFETY: upvalue 3 is the module's `Last` (`closure`); see `seen::Last` for why its entry
    // is never stale.
    unsafe {
        let last = ffi::lua_touserdata(l, ffi::lua_upvalueindex(3)) as *const Last;
        let block = ffi::lua_touserdata(l, idx) as *const c_void;
        if let Some(last) = last.as_ref() {
            // (A light userdata with the block's address would pass too, and stand for that
            // conn, which is alive: harmless, so its type is not looked at.)
            if !block.is_null() && block == last.block.get() {
                return (last.conn.get() as *const Conn).as_ref();
            }
        }
        let conn = identify(l, idx)?;
        if let Some(last) = last.as_ref() {
            last.enter(block, (conn as *const Conn).cast(), &conn.seen);
        }
        Some(conn)
    }
}

/// `conn_at` without the cache: the metatable, then the `Conn` address in the user values.
///
/// SAFETY (callers): as `conn_at`.
#[inline(never)]
unsafe fn identify<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a Conn> {
    // SAFETY: plain stack reads and raw gets on tables; each push is popped before returning.
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TUSERDATA || ffi::lua_getmetatable(l, idx) == 0 {
            return None;
        }
        // The running closure keeps the metatable it found last (upvalue 2): a registry lookup
        // less per call.
        if ffi::lua_rawequal(l, -1, ffi::lua_upvalueindex(2)) != 0 {
            ffi::lua_settop(l, -2);
        } else {
            ffi::lua_rawgetp(l, ffi::LUA_REGISTRYINDEX, key());
            let same = ffi::lua_rawequal(l, -1, -2) != 0;
            if same {
                ffi::lua_replace(l, ffi::lua_upvalueindex(2));
            }
            ffi::lua_settop(l, if same { -2 } else { -3 });
            if !same {
                return None;
            }
        }
        // Every conn has its table of user values (unless the debug library replaced it).
        raw::getuservalue(l, idx);
        if ffi::lua_type(l, -1) != ffi::LUA_TTABLE {
            ffi::lua_settop(l, -2);
            return None;
        }
        raw::rawgeti(l, -1, SLOT as c_int);
        let p = ffi::lua_touserdata(l, -1) as *const Conn;
        ffi::lua_settop(l, -3);
        // The address was taken from the userdata's own `Conn` (`note_conn`), which lives as
        // long as the userdata.
        p.as_ref()
    }
}

/// Lua's type name of the value at `idx`, as mlua's adapters word it; None for types they
/// would name otherwise (left to the mlua version).
unsafe fn type_name(l: *mut ffi::lua_State, idx: c_int) -> Option<&'static str> {
    // SAFETY: reads the type tag of a stack slot.
    Some(match unsafe { ffi::lua_type(l, idx) } {
        ffi::LUA_TNONE | ffi::LUA_TNIL => "nil",
        ffi::LUA_TBOOLEAN => "boolean",
        ffi::LUA_TLIGHTUSERDATA => "lightuserdata",
        ffi::LUA_TNUMBER => "number",
        ffi::LUA_TSTRING => "string",
        ffi::LUA_TTABLE => "table",
        ffi::LUA_TFUNCTION => "function",
        ffi::LUA_TUSERDATA => "userdata",
        ffi::LUA_TTHREAD => "thread",
        _ => return None,
    })
}

/// Whether the running C function was called as `obj:method(...)` (luaL_argerror's test).
unsafe fn called_as_method(l: *mut ffi::lua_State) -> bool {
    // SAFETY: lua_getstack/lua_getinfo on level 0, the running function, into a zeroed record;
    // namewhat points to a static string of the VM.
    unsafe {
        let mut ar: ffi::lua_Debug = std::mem::zeroed();
        if ffi::lua_getstack(l, 0, &mut ar) == 0 || ffi::lua_getinfo(l, c"n".as_ptr(), &mut ar) == 0
        {
            return false;
        }
        !ar.namewhat.is_null() && std::ffi::CStr::from_ptr(ar.namewhat).to_bytes() == b"method"
    }
}

/// For a call whose argument 1 is not a conn: nil or false go to the mlua version (LuWS
/// answers "not connected" for them); anything else is misuse (`not_a_conn`).
unsafe fn nil_or_not_a_conn(l: *mut ffi::lua_State, func: &'static str) -> c_int {
    // SAFETY: the caller is a raw function on `l`; `slow` and `not_a_conn` are its last act.
    unsafe {
        match ffi::lua_type(l, 1) {
            ffi::LUA_TNONE | ffi::LUA_TNIL => slow(l),
            ffi::LUA_TBOOLEAN if ffi::lua_toboolean(l, 1) == 0 => slow(l),
            _ => not_a_conn(l, func),
        }
    }
}

/// Raises a misuse error about argument 1 not being a conn, in the words of `conn::this`
/// through `args::api`; or hands the call to the mlua version for a type it names otherwise.
unsafe fn not_a_conn(l: *mut ffi::lua_State, func: &'static str) -> c_int {
    // SAFETY: the caller is a raw function on `l`; `misuse` and `slow` are its last act.
    unsafe {
        match type_name(l, 1) {
            Some(got) => misuse(l, 1, func, format!("luws connection expected, got {got}")),
            None => slow(l),
        }
    }
}

/// Raises a misuse error about argument `pos` as `args::bad` through `args::api` words it:
/// called as `obj:method(...)`, arguments count from after `self` (and a bad `self` says so).
/// The mlua versions cannot tell how a raw function was called, so misuse is raised here.
unsafe fn misuse(l: *mut ffi::lua_State, pos: u8, func: &'static str, msg: String) -> c_int {
    // SAFETY: the caller is a raw function on `l`; `raise` is its last act.
    unsafe {
        let e = if !called_as_method(l) {
            Error::BadArgument { pos, func, msg }
        } else if pos <= 1 {
            Error::BadSelf { func, msg }
        } else {
            Error::BadArgument {
                pos: pos - 1,
                func,
                msg,
            }
        };
        raise(l, e.to_string())
    }
}

/// Raises `text` as a plain string error. Nothing with a destructor may be live in the
/// calling frames up to the C function (lua_error unwinds past them): `text` is moved here and
/// dropped before the raise.
unsafe fn raise(l: *mut ffi::lua_State, text: String) -> c_int {
    // SAFETY: lua_pushlstring copies the bytes; `text` is dropped before lua_error, which does
    // not return.
    unsafe {
        ffi::lua_pushlstring(l, text.as_ptr().cast(), text.len());
        drop(text);
        ffi::lua_error(l)
    }
}

/// Calls the mlua version (upvalue 1) with this call's arguments; returns its results, or
/// raises its error as a plain string (its first line's traceback dropped, as the wrapper did).
unsafe fn slow(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: the upvalue is the function `closure` stored; lua_insert puts it below the
    // arguments for lua_pcall. On error the message is converted and re-raised from this C
    // frame, which holds nothing with a destructor at that point.
    unsafe {
        let nargs = ffi::lua_gettop(l);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
        ffi::lua_insert(l, 1);
        if ffi::lua_pcall(l, nargs, ffi::LUA_MULTRET, 0) == 0 {
            return ffi::lua_gettop(l);
        }
        let text = error_text(l);
        raise(l, text)
    }
}

/// The error on top of the stack as the plain-errors wrapper wrote it: `tostring(e)` without
/// mlua's appended traceback.
unsafe fn error_text(l: *mut ffi::lua_State) -> String {
    // SAFETY: luaL_tolstring pushes the converted string (its bytes valid while it is there);
    // both pushes are popped.
    unsafe {
        let mut len = 0usize;
        let p = ffi::luaL_tolstring(l, -1, &mut len);
        let bytes = if p.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(p.cast::<u8>(), len)
        };
        let s = String::from_utf8_lossy(bytes);
        let s = match s.find("\nstack traceback:") {
            Some(i) => s[..i].to_string(),
            None => s.into_owned(),
        };
        ffi::lua_settop(l, -3);
        s
    }
}

/// Runs `f` with panics caught; a panic is raised as a plain error.
unsafe fn guarded(l: *mut ffi::lua_State, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(n) => n,
        // SAFETY: the panic's payload is dropped before the raise.
        Err(_) => unsafe { raise(l, PANIC_TEXT.to_string()) },
    }
}

fn push_int(l: *mut ffi::lua_State, n: i64) {
    // lua_Integer is 32-bit on 32-bit targets (Vera), 64-bit elsewhere.
    #[allow(clippy::unnecessary_fallible_conversions)]
    let n = ffi::lua_Integer::try_from(n).unwrap_or(ffi::lua_Integer::MAX);
    // SAFETY: pushes one number; every raw function has LUA_MINSTACK (20) free slots.
    unsafe { ffi::lua_pushinteger(l, n) }
}

/// `conn:getfd()`.
unsafe extern "C-unwind" fn getfd(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: `l` is the state calling us; see `conn_at`.
    unsafe {
        let Some(conn) = conn_at(l, 1) else {
            return not_a_conn(l, "getfd");
        };
        guarded(l, || {
            push_int(l, i64::from(conn.raw_fd()));
            1
        })
    }
}

/// `conn:dirty()`.
unsafe extern "C-unwind" fn dirty(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: as in `getfd`.
    unsafe {
        let Some(conn) = conn_at(l, 1) else {
            return not_a_conn(l, "dirty");
        };
        guarded(l, || {
            let d = conn.session.borrow().dirty();
            ffi::lua_pushboolean(l, c_int::from(d));
            1
        })
    }
}

/// `wsreceive(conn)`: nil or false for a conn answers `nil, "not connected"` (LuWS).
unsafe extern "C-unwind" fn wsreceive(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: as in `getfd`.
    unsafe {
        match conn_at(l, 1) {
            Some(conn) => receive_on(l, conn),
            None => nil_or_not_a_conn(l, "wsreceive"),
        }
    }
}

/// `conn:receive()`.
unsafe extern "C-unwind" fn receive(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: as in `getfd`.
    unsafe {
        match conn_at(l, 1) {
            Some(conn) => receive_on(l, conn),
            None => not_a_conn(l, "receive"),
        }
    }
}

/// `wssend(conn, opcode, data)`: nil or false for a conn answers `false, "not connected"`.
unsafe extern "C-unwind" fn wssend(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: as in `getfd`.
    unsafe {
        match conn_at(l, 1) {
            Some(conn) => send_on(l, conn, "wssend"),
            None => nil_or_not_a_conn(l, "wssend"),
        }
    }
}

/// `conn:send(opcode, data)`.
unsafe extern "C-unwind" fn send(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: as in `getfd`.
    unsafe {
        match conn_at(l, 1) {
            Some(conn) => send_on(l, conn, "send"),
            None => not_a_conn(l, "send"),
        }
    }
}

/// The send of `luws_api::send` for a Text or Binary message from a Lua string on a conn
/// without `reconnect`: `true, nil` | `false, err`. Misuse is raised here; other opcodes, other
/// data (numbers, nil, LTN12 sources) and reconnecting conns take the mlua path.
unsafe fn send_on(l: *mut ffi::lua_State, conn: &Conn, func: &'static str) -> c_int {
    // SAFETY: stack reads of the arguments; `slow`, `misuse` and `raise` are each the last act.
    unsafe {
        // The checks of `Opcode::read`, then of `payload`, in that order.
        if ffi::lua_type(l, 2) != ffi::LUA_TNUMBER {
            return match type_name(l, 2) {
                Some(got) => misuse(l, 2, func, format!("number expected, got {got}")),
                None => slow(l),
            };
        }
        let op = ffi::lua_tonumber(l, 2);
        let text = if op == 1.0 {
            Some(true)
        } else if op == 2.0 {
            Some(false)
        } else if op == 8.0 || op == 9.0 || op == 10.0 {
            None
        } else {
            return misuse(l, 2, func, "opcode must be 1, 2, 8, 9 or 10".to_string());
        };
        match ffi::lua_type(l, 3) {
            ffi::LUA_TSTRING => {}
            ffi::LUA_TNONE | ffi::LUA_TNIL | ffi::LUA_TNUMBER | ffi::LUA_TFUNCTION => {
                return slow(l);
            }
            _ => {
                return match type_name(l, 3) {
                    Some(got) => misuse(
                        l,
                        3,
                        func,
                        format!("string or function expected, got {got}"),
                    ),
                    None => slow(l),
                };
            }
        }
        let Some(text) = text else {
            return slow(l);
        };
        if !conn.revival.try_borrow().is_ok_and(|r| r.is_none()) {
            return slow(l);
        }
        let mut len = 0usize;
        let p = ffi::lua_tolstring(l, 3, &mut len);
        if p.is_null() {
            return slow(l);
        }
        // The string stays on the stack (argument 3) for the whole call, and Lua strings never
        // move; `send_data` copies what it keeps.
        let data: &[u8] = std::slice::from_raw_parts(p.cast::<u8>(), len);
        let sent = catch_unwind(AssertUnwindSafe(|| {
            let mut s = conn.session.try_borrow_mut().ok()?;
            Some(s.send_data(text, data).map_err(|e| e.to_string()))
        }));
        match sent {
            Ok(Some(Ok(()))) => {
                ffi::lua_pushboolean(l, 1);
                ffi::lua_pushnil(l);
                2
            }
            Ok(Some(Err(text))) => {
                ffi::lua_pushboolean(l, 0);
                ffi::lua_pushlstring(l, text.as_ptr().cast(), text.len());
                2
            }
            // The session is in use (a send from inside its own receive's bookkeeping): the
            // mlua version gives the answer it always gave.
            Ok(None) => slow(l),
            Err(_) => raise(l, PANIC_TEXT.to_string()),
        }
    }
}

/// How many conns the raw `luws.wait` takes; longer lists take the mlua path.
const WAIT_MAX: usize = FEW;

/// `luws.wait(conns [, timeout])` for a list of up to `WAIT_MAX` luws conns (no Vera sockets).
/// Misuse is raised here; Vera sockets and longer lists take the mlua path (`wait::wait`).
unsafe extern "C-unwind" fn wait(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: stack reads and raw gets, each push popped; `slow` and `raise` are each the last
    // act, with nothing that has a destructor live.
    unsafe {
        // The checks of `wait::wait`, in its order.
        if ffi::lua_type(l, 1) != ffi::LUA_TTABLE {
            return match type_name(l, 1) {
                Some(got) => misuse(l, 1, "wait", format!("table expected, got {got}")),
                None => slow(l),
            };
        }
        let limit = match ffi::lua_type(l, 2) {
            ffi::LUA_TNONE | ffi::LUA_TNIL => None,
            ffi::LUA_TNUMBER => {
                let t = ffi::lua_tonumber(l, 2);
                if t < 0.0 {
                    None
                } else if t.is_finite() {
                    // 0 <= t <= 1e9 s, so the nanoseconds fit (and no range check is needed).
                    Some(Duration::from_nanos((t.min(1e9) * 1e9) as u64))
                } else {
                    return misuse(l, 2, "wait", "finite number expected".to_string());
                }
            }
            _ => {
                return match type_name(l, 2) {
                    Some(got) => misuse(l, 2, "wait", format!("number expected, got {got}")),
                    None => slow(l),
                };
            }
        };
        // `sequence_values` (the mlua version) stops at the first nil; t[#t + 1] is nil (#t
        // is a border), so reading up to #t and stopping at a nil is the same walk.
        let len = ffi::lua_rawlen(l, 1);
        // The loop on one conn, without the list's bookkeeping.
        if len == 1 {
            raw::rawgeti(l, 1, 1);
            let at = ffi::lua_gettop(l);
            if let Some(conn) = conn_at(l, at) {
                // The conn stays on the stack (at `at`) for the whole call.
                let ready = catch_unwind(AssertUnwindSafe(|| wait_one(conn.poll_info(), limit)));
                return match ready {
                    Ok(Ok(true)) => {
                        ffi::lua_createtable(l, 1, 0);
                        ffi::lua_pushvalue(l, at);
                        ffi::lua_rawseti(l, -2, 1);
                        1
                    }
                    Ok(Ok(false)) => {
                        ffi::lua_createtable(l, 0, 0);
                        1
                    }
                    Ok(Err(e)) => raise(l, e.to_string()),
                    Err(_) => raise(l, PANIC_TEXT.to_string()),
                };
            }
            ffi::lua_settop(l, -2);
        }
        let mut waits: [Option<PollInfo>; WAIT_MAX] = [None; WAIT_MAX];
        let mut n = 0usize;
        while n < len {
            raw::rawgeti(l, 1, n as c_int + 1);
            let at = ffi::lua_gettop(l);
            let conn = conn_at(l, at);
            let (kind, got) = match conn {
                Some(_) => (ffi::LUA_TUSERDATA, None),
                None => (ffi::lua_type(l, at), type_name(l, at)),
            };
            ffi::lua_settop(l, -2);
            let conn = match conn {
                Some(c) if n < WAIT_MAX => c,
                // Longer lists.
                Some(_) => return slow(l),
                None if kind == ffi::LUA_TNIL => break,
                // Vera sockets (and other userdata: the mlua version names them).
                None if kind == ffi::LUA_TUSERDATA => return slow(l),
                None => {
                    let Some(got) = got else {
                        return slow(l);
                    };
                    let msg = format!("luws connection expected at index {}, got {got}", n + 1);
                    return misuse(l, 1, "wait", msg);
                }
            };
            // The conn stays alive in the list (argument 1) for the whole call.
            match catch_unwind(AssertUnwindSafe(|| conn.poll_info())) {
                Ok(p) => waits[n] = p,
                Err(_) => return raise(l, PANIC_TEXT.to_string()),
            }
            n += 1;
        }
        let ready = match catch_unwind(AssertUnwindSafe(|| wait_few(&waits[..n], limit))) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return raise(l, e.to_string()),
            Err(_) => return raise(l, PANIC_TEXT.to_string()),
        };
        let count = ready.iter().filter(|&&r| r).count();
        ffi::lua_createtable(l, count as c_int, 0);
        let mut k: ffi::lua_Integer = 0;
        for (i, &r) in ready[..n].iter().enumerate() {
            if r {
                k += 1;
                raw::rawgeti(l, 1, i as c_int + 1);
                ffi::lua_rawseti(l, -2, k);
            }
        }
        1
    }
}

/// How a raw receive ended.
enum Done {
    /// `more, nbytes` (pushed by the caller).
    Count(bool, usize),
    /// `nil, text`.
    Nil(String),
    /// The mlua continuation returned this many values, on the stack top.
    Handed(c_int),
    /// The continuation raised this (plain) error.
    Raised(String),
}

/// The receive of `luws_api::receive` for an open conn without `reconnect`, outside any
/// handler: messages go to the handler straight from the session's bytes; any other event
/// hands the rest of the call to `luws_api::receive_rest`.
unsafe fn receive_on(l: *mut ffi::lua_State, conn: &Conn) -> c_int {
    // Reconnecting conns and nested calls (a handler receiving) take the mlua path.
    let plain = conn.depth.get() == 0
        && conn.revival.try_borrow().is_ok_and(|r| r.is_none())
        && conn.session.try_borrow_mut().is_ok();
    if !plain {
        // SAFETY: nothing with a destructor is live here.
        return unsafe { slow(l) };
    }
    let base = unsafe { ffi::lua_gettop(l) };
    // SAFETY: `guarded` catches panics; `events` only pushes, calls under lua_pcall and pops.
    let done = catch_unwind(AssertUnwindSafe(|| unsafe { events(l, conn, base) }));
    conn.depth.set(0);
    if let Ok(s) = conn.session.try_borrow() {
        s.receive_done();
    }
    // SAFETY: results are pushed above `base`; `raise` is the last act, with nothing live.
    unsafe {
        match done {
            Ok(Done::Count(more, n)) => {
                ffi::lua_settop(l, base);
                ffi::lua_pushboolean(l, c_int::from(more));
                push_int(l, n as i64);
                2
            }
            Ok(Done::Nil(text)) => {
                ffi::lua_settop(l, base);
                ffi::lua_pushnil(l);
                ffi::lua_pushlstring(l, text.as_ptr().cast(), text.len());
                2
            }
            Ok(Done::Handed(n)) => n,
            Ok(Done::Raised(text)) => raise(l, text),
            Err(_) => raise(l, PANIC_TEXT.to_string()),
        }
    }
}

/// The receive loop. Leaves the results to `receive_on`, or for `Handed` on the stack top.
unsafe fn events(l: *mut ffi::lua_State, conn: &Conn, base: c_int) -> Done {
    conn.depth.set(1);
    let began_open = conn.session.borrow_mut().begin_receive();
    let mut nbytes = 0usize;
    // The handler and its handler_args on the stack, once looked up.
    let mut handler: Option<Handler> = None;
    loop {
        // What to do once the session is no longer borrowed (the event itself is not moved
        // out: it is large and nearly always a message or `Idle`).
        let next = {
            let mut s = conn.session.borrow_mut();
            let ev = s.next_event();
            nbytes = nbytes.max(s.bytes_read());
            match ev {
                // SAFETY: pushes within the slots checked by `push_call`, called and popped by
                // `finish_call`. The message's bytes are the session's until its next step, so
                // they are pushed (copied) while it is borrowed; the handler runs after.
                Event::Message { text } => unsafe {
                    let h = *handler.get_or_insert_with(|| push_handler(l, conn, base));
                    push_call(l, h, if text { 1 } else { 2 }, s.message())
                },
                Event::Idle => return Done::Count(false, nbytes),
                Event::Paused => return Done::Count(true, nbytes),
                Event::Ended(e) => {
                    if began_open && e == Error::NotConnected {
                        return Done::Count(false, nbytes);
                    }
                    return Done::Nil(e.receive_return_text());
                }
                other => {
                    s.unread(other);
                    drop(s);
                    // SAFETY: see `hand_over`.
                    return unsafe { hand_over(l, began_open, nbytes) };
                }
            }
        };
        match next {
            // SAFETY: the call `push_call` prepared.
            Some(call) => unsafe { finish_call(l, call) },
            // As the mlua path's failed call: logged, and the messages after it still come.
            // SAFETY: `log_error` leaves the stack as it was.
            None => unsafe {
                log_error(
                    l,
                    "message handler error: stack overflow (too many handler_args)",
                )
            },
        }
    }
}

/// Where `push_handler` put the handler (its handler_args in the next slot), and whether the
/// handler_args are a table.
#[derive(Clone, Copy)]
struct Handler {
    slot: c_int,
    args: bool,
}

/// Pushes the conn's user-value table, its handler and its handler_args (user values
/// `HANDLER` and `ARGS`, copied there by `note_conn`) above `base`, the stack's top: looked up
/// once per call. Neither changes after `wsopen`; the handler_args table's contents are read
/// per message (a handler may change them).
unsafe fn push_handler(l: *mut ffi::lua_State, conn: &Conn, base: c_int) -> Handler {
    // SAFETY: the conn at slot 1 has a user-value table (`conn_at` checked it).
    unsafe {
        debug_assert_eq!(ffi::lua_gettop(l), base);
        raw::getuservalue(l, 1);
        raw::rawgeti(l, base + 1, HANDLER as c_int);
        raw::rawgeti(l, base + 1, ARGS as c_int);
        Handler {
            slot: base + 2,
            args: conn.args_table.get(),
        }
    }
}

/// A handler call pushed and ready: where the stack was, and how many arguments.
#[derive(Clone, Copy)]
struct Call {
    top: c_int,
    nargs: c_int,
}

/// Pushes the handler, the conn, the opcode, the data and the handler_args (the handler's
/// slot is `handler`, its handler_args table next to it); `None` when the stack has no room.
unsafe fn push_call(
    l: *mut ffi::lua_State,
    handler: Handler,
    opcode: i64,
    data: &[u8],
) -> Option<Call> {
    // SAFETY: every push is counted against lua_checkstack.
    unsafe {
        let top = ffi::lua_gettop(l);
        let args = handler.slot + 1;
        let n = if handler.args {
            ffi::lua_rawlen(l, args) as c_int
        } else {
            0
        };
        if n > 0 && ffi::lua_checkstack(l, n + 4) == 0 {
            return None;
        }
        ffi::lua_pushvalue(l, handler.slot);
        ffi::lua_pushvalue(l, 1);
        push_int(l, opcode);
        raw::pushlstring(l, data.as_ptr().cast(), data.len());
        for i in 1..=n {
            raw::rawgeti(l, args, i);
        }
        Some(Call { top, nargs: 3 + n })
    }
}

/// Runs a call `push_call` prepared, under lua_pcall (a handler's error is logged); the stack
/// returns to where it was.
unsafe fn finish_call(l: *mut ffi::lua_State, call: Call) {
    // SAFETY: the function and its arguments are the top `nargs + 1` slots.
    unsafe {
        if ffi::lua_pcall(l, call.nargs, 0, 0) != 0 {
            let text = error_text(l);
            log_error(l, &format!("message handler error: runtime error: {text}"));
        }
        ffi::lua_settop(l, call.top);
    }
}

/// Logs through `luws_api`'s logger (the mlua continuation's Lua handle is not at hand here):
/// `luup.log(line, 1)` when there is a Luup, else stderr.
unsafe fn log_error(l: *mut ffi::lua_State, msg: &str) {
    let line = format!("luws: {msg}");
    // SAFETY: looks up the global `luup.log` and calls it under lua_pcall; the stack returns to
    // where it was.
    unsafe {
        let top = ffi::lua_gettop(l);
        let mut logged = false;
        ffi::lua_getglobal(l, c"luup".as_ptr());
        if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
            ffi::lua_getfield(l, -1, c"log".as_ptr());
            if ffi::lua_type(l, -1) == ffi::LUA_TFUNCTION {
                ffi::lua_pushlstring(l, line.as_ptr().cast(), line.len());
                push_int(l, 1);
                logged = ffi::lua_pcall(l, 2, 0, 0) == 0;
            }
        }
        ffi::lua_settop(l, top);
        if !logged {
            eprintln!("{line}");
        }
    }
}

/// Calls `receive_rest(conn, began_open, nbytes)` for the rest of the call.
unsafe fn hand_over(l: *mut ffi::lua_State, began_open: bool, nbytes: usize) -> Done {
    // SAFETY: the registry holds `rest` under REST's address (`install`).
    let found = unsafe {
        ffi::lua_rawgetp(
            l,
            ffi::LUA_REGISTRYINDEX,
            &REST as *const u8 as *const c_void,
        )
    };
    if found != ffi::LUA_TFUNCTION {
        return Done::Raised(PANIC_TEXT.to_string());
    }
    // SAFETY: the function then its three arguments; lua_pcall pops them.
    unsafe {
        let before = ffi::lua_gettop(l) - 1;
        ffi::lua_pushvalue(l, 1);
        ffi::lua_pushboolean(l, c_int::from(began_open));
        push_int(l, nbytes as i64);
        if ffi::lua_pcall(l, 3, ffi::LUA_MULTRET, 0) != 0 {
            return Done::Raised(error_text(l));
        }
        Done::Handed(ffi::lua_gettop(l) - before)
    }
}

#[cfg(all(test, feature = "vendored"))]
mod tests {
    use super::*;

    /// A WebSocket echo server for one connection.
    fn echo_server() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut ws = tungstenite::accept(stream).unwrap();
            while let Ok(msg) = ws.read() {
                if msg.is_text() && ws.send(msg).is_err() {
                    return;
                }
            }
        });
        port
    }

    /// The module's `Last`: (block, conn) as addresses.
    fn last(lua: &Lua) -> (usize, usize) {
        // SAFETY: the registry holds the `Last` `install` made; it is read, then popped.
        unsafe {
            lua.exec_raw::<(usize, usize)>((), |l| {
                ffi::lua_rawgetp(
                    l,
                    ffi::LUA_REGISTRYINDEX,
                    &LAST as *const u8 as *const c_void,
                );
                let p = &*(ffi::lua_touserdata(l, -1) as *const Last);
                let (b, c) = (p.block.get() as usize, p.conn.get() as usize);
                ffi::lua_settop(l, -2);
                ffi::lua_pushinteger(l, b as ffi::lua_Integer);
                ffi::lua_pushinteger(l, c as ffi::lua_Integer);
            })
            .unwrap()
        }
    }

    #[test]
    fn the_conn_seen_last_is_forgotten_when_it_is_collected() {
        let lua = Lua::new();
        lua.globals()
            .set("luws", crate::exports(&lua).unwrap())
            .unwrap();
        let port = echo_server();
        lua.load(format!(
            r#"conn = assert(luws.wsopen("ws://127.0.0.1:{port}/", function() end))
               assert(luws.wssend(conn, 1, "hello"))"#
        ))
        .exec()
        .unwrap();
        let (block, conn) = last(&lua);
        assert_ne!(block, 0, "a hot call caches the conn it saw");
        let ud: AnyUserData = lua.globals().get("conn").unwrap();
        assert_eq!(conn, &*ud.borrow::<Conn>().unwrap() as *const Conn as usize);
        drop(ud);
        lua.load("conn = nil; collectgarbage(); collectgarbage()")
            .exec()
            .unwrap();
        // Its memory may now hold another conn: the entry must not point there.
        assert_eq!(last(&lua), (0, 0));
    }
}
