//! The conn the raw functions (`fast`) recognised last, and each conn's link to it, which
//! forgets it when the conn goes.

use std::cell::Cell;
use std::ffi::c_void;

/// The conn a raw function recognised last, shared by all of them (their upvalue 3; a userdata
/// without a finalizer): the address of its userdata block, its `Conn` (type-erased here) and
/// that conn's `Seen`. A call on the same conn as the last one, the hot case, is then
/// recognised by the block's address alone, without the metatable and user-value lookups.
///
/// Why an entry is never stale: a conn's block is freed only after its finalizer ran (mlua's
/// `__gc`, which drops the `Conn`, whose `Seen` clears the entry first), and the entry outlives
/// every conn that may be in it, since each such conn holds it (as a user value). A conn is
/// entered only in the `Last` its own `Seen` points to.
#[repr(C)]
pub struct Last {
    pub block: Cell<*const c_void>,
    pub conn: Cell<*const c_void>,
    seen: Cell<*const Seen>,
}

impl Last {
    pub fn new() -> Last {
        Last {
            block: Cell::new(std::ptr::null()),
            conn: Cell::new(std::ptr::null()),
            seen: Cell::new(std::ptr::null()),
        }
    }

    /// Enters the conn at `conn` (userdata block `block`, link `seen`), if `seen` belongs here.
    pub fn enter(&self, block: *const c_void, conn: *const c_void, seen: &Seen) {
        if std::ptr::eq(seen.0.get(), self) {
            self.block.set(block);
            self.conn.set(conn);
            self.seen.set(seen);
        }
    }

    fn clear(&self) {
        self.block.set(std::ptr::null());
        self.conn.set(std::ptr::null());
        self.seen.set(std::ptr::null());
    }
}

/// A conn's link to the `Last` it may be entered in; clears the entry when the conn goes.
pub struct Seen(Cell<*const Last>);

impl Seen {
    pub fn new() -> Seen {
        Seen(Cell::new(std::ptr::null()))
    }

    /// Links to `last`, which the conn must keep alive for as long as it lives.
    pub fn link(&self, last: *const Last) {
        self.0.set(last);
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        // SAFETY: a non-null pointer was given by `link` from a live `Last`, which the conn
        // keeps alive until after its finalizer, where this runs.
        if let Some(last) = unsafe { self.0.get().as_ref() } {
            if std::ptr::eq(last.seen.get(), self) {
                last.clear();
            }
        }
    }
}
