//! What an owner waits for on one connection — descriptor, readiness, data already buffered,
//! the next timer — computed by the connection itself, and waiting on many at once. Both
//! `luws.wait` and verawebsockets' `loop()` use it.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::sys::{Interest, poll};

/// What to wait for on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollInfo {
    /// The descriptor, or -1 when there is none to poll (work is due anyway).
    pub fd: RawFd,
    pub interest: Interest,
    /// Data is already buffered where poll(2) cannot see it: ready without waiting.
    pub dirty: bool,
    /// When a timer needs a call, if one runs.
    pub due: Option<Instant>,
}

impl PollInfo {
    fn ready_now(&self, now: Instant) -> bool {
        self.dirty || self.due.is_some_and(|d| d <= now)
    }
}

/// Waits until some of `items` have work (readable or writable as asked, buffered data, a due
/// timer) or `limit` passes (`None`: no limit); returns their indexes, in order. An item that
/// is `None` waits for nothing.
pub fn wait_any(items: &[Option<PollInfo>], limit: Option<Duration>) -> io::Result<Vec<usize>> {
    let mut fds = vec![NO_FD; items.len()];
    let mut owner = vec![0; items.len()];
    let mut ready = vec![false; items.len()];
    wait_into(items, limit, &mut fds, &mut owner, &mut ready)?;
    Ok((0..items.len()).filter(|&i| ready[i]).collect())
}

/// How many items `wait_few` takes.
pub const FEW: usize = 8;

/// `wait_any` for at most `FEW` items (any further ones are not waited for) without
/// allocating: which are ready, by index.
pub fn wait_few(items: &[Option<PollInfo>], limit: Option<Duration>) -> io::Result<[bool; FEW]> {
    let items = &items[..items.len().min(FEW)];
    let n = items.len();
    let mut ready = [false; FEW];
    if let [Some(p)] = items {
        if let Some(r) = poll_plain(p, limit) {
            ready[0] = r?;
            return Ok(ready);
        }
    }
    let mut fds = [NO_FD; FEW];
    let mut owner = [0; FEW];
    wait_into(
        items,
        limit,
        &mut fds[..n],
        &mut owner[..n],
        &mut ready[..n],
    )?;
    Ok(ready)
}

/// `wait_few` for one item: whether it is ready.
pub fn wait_one(item: Option<PollInfo>, limit: Option<Duration>) -> io::Result<bool> {
    match item.as_ref().and_then(|p| poll_plain(p, limit)) {
        Some(r) => r,
        None => Ok(wait_few(&[item], limit)?[0]),
    }
}

/// The wait of a loop on one connection with nothing buffered and no timer: one poll(2) on
/// its descriptor, as `wait_into` would make it (the hot `luws.wait`). `None` for any other.
fn poll_plain(p: &PollInfo, limit: Option<Duration>) -> Option<io::Result<bool>> {
    if p.fd < 0 || p.dirty || p.due.is_some() {
        return None;
    }
    let mut fd = [libc::pollfd {
        fd: p.fd,
        events: events(p.interest),
        revents: 0,
    }];
    Some(poll(&mut fd, limit).map(|_| fd[0].revents != 0))
}

fn events(interest: Interest) -> libc::c_short {
    match interest {
        Interest::Read => libc::POLLIN,
        // Input counts while waiting to write: the peer's Close, say, is work too.
        Interest::Write => libc::POLLIN | libc::POLLOUT,
    }
}

const NO_FD: libc::pollfd = libc::pollfd {
    fd: -1,
    events: 0,
    revents: 0,
};

/// The wait of `wait_any`, in the caller's storage (each slice as long as `items`); sets the
/// flags in `ready` of the items that have work.
fn wait_into(
    items: &[Option<PollInfo>],
    limit: Option<Duration>,
    fds: &mut [libc::pollfd],
    owner: &mut [usize],
    ready: &mut [bool],
) -> io::Result<()> {
    // Only timers need the clock (a clock read is much of a hot `luws.wait`'s cost).
    let any_due = items.iter().flatten().any(|p| p.due.is_some());
    let now = if any_due { Some(Instant::now()) } else { None };
    let mut wake = now.and_then(|now| limit.map(|l| now + l));
    let mut any_ready = false;
    let mut n = 0;
    for (i, item) in items.iter().enumerate() {
        let Some(p) = item else { continue };
        if p.dirty || now.is_some_and(|now| p.ready_now(now)) {
            ready[i] = true;
            any_ready = true;
        }
        if let Some(d) = p.due {
            wake = Some(wake.map_or(d, |w| w.min(d)));
        }
        if p.fd >= 0 {
            fds[n] = libc::pollfd {
                fd: p.fd,
                events: events(p.interest),
                revents: 0,
            };
            owner[n] = i;
            n += 1;
        }
    }
    let timeout = match now {
        _ if any_ready => Some(Duration::ZERO),
        Some(now) => wake.map(|w| w.saturating_duration_since(now)),
        None => limit,
    };
    if n > 0 || timeout.is_some() {
        poll(&mut fds[..n], timeout)?;
    }
    // Only timers need the time after the wait.
    let after = now.map(|_| Instant::now());
    let is_due = |p: &PollInfo| after.is_some_and(|a| p.due.is_some_and(|d| d <= a));
    for (k, p) in fds[..n].iter().enumerate() {
        let i = owner[k];
        let due = items[i].as_ref().is_some_and(is_due);
        if p.revents != 0 || due {
            ready[i] = true;
        }
    }
    for (i, item) in items.iter().enumerate() {
        // Timers of items without a descriptor.
        if item.is_some_and(|p| p.fd < 0 && (p.dirty || is_due(&p))) {
            ready[i] = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// Waiting to read `s`, with nothing buffered and no timer.
    fn quiet(s: &UnixStream) -> PollInfo {
        PollInfo {
            fd: s.as_raw_fd(),
            interest: Interest::Read,
            dirty: false,
            due: None,
        }
    }

    #[test]
    fn buffered_data_and_due_timers_are_ready_without_waiting() {
        let (a, _b) = UnixStream::pair().unwrap();
        let quiet = quiet(&a);
        let dirty = PollInfo {
            dirty: true,
            ..quiet
        };
        let due = PollInfo {
            fd: -1,
            due: Some(Instant::now()),
            ..quiet
        };
        let t = Instant::now();
        let ready = wait_any(&[Some(quiet), None, Some(dirty), Some(due)], None).unwrap();
        assert_eq!(ready, vec![2, 3]);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_readable_descriptor_wakes_and_the_limit_ends_a_quiet_wait() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let p = quiet(&a);
        assert!(
            wait_any(&[Some(p)], Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
        std::io::Write::write_all(&mut b, b"x").unwrap();
        assert_eq!(wait_any(&[Some(p)], None).unwrap(), vec![0]);
    }

    #[test]
    fn a_few_wait_as_many_do() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let p = quiet(&a);
        let mut items = [None; FEW];
        items[1] = Some(p);
        items[3] = Some(PollInfo { dirty: true, ..p });
        let ready = wait_few(&items, Some(Duration::from_millis(20))).unwrap();
        assert_eq!(ready.iter().filter(|&&r| r).count(), 1);
        assert!(ready[3]);
        items[3] = None;
        assert_eq!(
            wait_few(&items, Some(Duration::ZERO)).unwrap(),
            [false; FEW]
        );
        std::io::Write::write_all(&mut b, b"x").unwrap();
        assert!(wait_few(&items, None).unwrap()[1]);
    }

    #[test]
    fn one_waits_as_many_do() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let p = quiet(&a);
        let soon = Some(Duration::from_millis(20));
        assert!(!wait_one(Some(p), soon).unwrap());
        // Buffered data and a due timer are ready without a readable socket; nothing to wait
        // for waits out the limit.
        assert!(wait_one(Some(PollInfo { dirty: true, ..p }), None).unwrap());
        let due = Some(Instant::now());
        assert!(wait_one(Some(PollInfo { fd: -1, due, ..p }), None).unwrap());
        assert!(!wait_one(None, soon).unwrap());
        std::io::Write::write_all(&mut b, b"x").unwrap();
        assert!(wait_one(Some(p), None).unwrap());
    }
}
