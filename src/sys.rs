//! The few OS calls std does not offer: poll(2) on one or many descriptors, TCP keepalive,
//! descriptor checks for a socket a Lua object hands over, and a wake-up byte without SIGPIPE.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Readiness to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
}

/// Waits until `fd` is ready or `timeout` passes. `Ok(false)` means the time ran out.
/// EINTR restarts the wait with what is left of the time.
pub fn wait_fd(fd: RawFd, interest: Interest, timeout: Duration) -> io::Result<bool> {
    let events = match interest {
        Interest::Read => libc::POLLIN,
        Interest::Write => libc::POLLOUT,
    };
    let mut fds = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    Ok(poll(&mut fds, Some(timeout))? > 0)
}

/// poll(2) over a set of descriptors; `None` waits without limit. Returns how many are ready.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    // The first poll needs no clock (a clock read is much of a hot `luws.wait`'s cost); a
    // signal's interruption starts a deadline, so the wait stays within twice `timeout`.
    let mut left = timeout;
    let mut deadline = None;
    loop {
        // Round up so a 0.4 ms wait does not become a busy 0 ms poll.
        let ms = left.map_or(-1, |l| {
            // In u64 (as_millis is a u128 division): secs * 1000 fits, as any Duration's does
            // up to 584 million years, and the result is capped at i32::MAX anyway.
            let ms = l
                .as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(l.subsec_nanos().div_ceil(1_000_000)));
            ms.min(i32::MAX as u64) as libc::c_int
        });
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
        if let Some(t) = timeout {
            let now = Instant::now();
            let d = *deadline.get_or_insert(now + t);
            left = Some(d.saturating_duration_since(now));
        }
    }
}

/// Writes one byte to a wake-up socket without blocking and without SIGPIPE (the other end may
/// be gone: a cdylib cannot count on the host ignoring SIGPIPE, as Rust programs do).
pub fn poke(fd: RawFd) {
    // SAFETY: sends one byte from a live local; an invalid or closed fd only yields an error.
    unsafe {
        libc::send(
            fd,
            [1u8].as_ptr().cast(),
            1,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        );
    }
}

/// SO_KEEPALIVE, as LuWS sets on its sockets: the kernel eventually notices a dead peer.
pub fn set_keepalive(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Closes a descriptor luws was handed and is now responsible for (the original of an adopted
/// socket, once its Lua object let go of it).
pub fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns `fd` and nothing refers to it any more; errors change nothing.
    unsafe {
        libc::close(fd);
    }
}

/// Duplicates a descriptor with close-on-exec set, so luws owns its own copy of a socket that a
/// Lua object (the `connect` option) also holds.
pub fn dup_cloexec(fd: RawFd) -> io::Result<RawFd> {
    // SAFETY: fcntl with F_DUPFD_CLOEXEC has no memory effects; an invalid fd yields EBADF.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r >= 0 {
        Ok(r)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True when `fd` is an open socket (used to validate a descriptor handed over from Lua).
pub fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat writes into the zeroed stat we own; an invalid fd yields an error.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// Keeps this shared library loaded for the life of the process. A Lua host unloads C modules
/// when its state closes; a luws thread still finishing (a resolver, a notifier) would then run
/// unmapped code. Best effort: where the loader cannot do it, nothing changes.
pub fn keep_resident() {
    // SAFETY: dladdr only reads the loader's tables for an address inside this library;
    // dlopen with RTLD_NOLOAD takes one more reference to the already loaded file.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let here = keep_resident as *const libc::c_void;
        if libc::dladdr(here, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            );
        }
    }
}
