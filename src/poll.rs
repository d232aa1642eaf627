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
    let now = Instant::now();
    let mut wake = limit.map(|l| now + l);
    let mut fds = Vec::with_capacity(items.len());
    let mut owner = Vec::with_capacity(items.len());
    let mut ready: Vec<usize> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(p) = item else { continue };
        if p.ready_now(now) {
            ready.push(i);
        }
        if let Some(d) = p.due {
            wake = Some(wake.map_or(d, |w| w.min(d)));
        }
        if p.fd >= 0 {
            fds.push(libc::pollfd {
                fd: p.fd,
                // Input counts while waiting to write: the peer's Close, say, is work too.
                events: match p.interest {
                    Interest::Read => libc::POLLIN,
                    Interest::Write => libc::POLLIN | libc::POLLOUT,
                },
                revents: 0,
            });
            owner.push(i);
        }
    }
    let timeout = if ready.is_empty() {
        wake.map(|w| w.saturating_duration_since(Instant::now()))
    } else {
        Some(Duration::ZERO)
    };
    if !fds.is_empty() || timeout.is_some() {
        poll(&mut fds, timeout)?;
    }
    let after = Instant::now();
    for (k, p) in fds.iter().enumerate() {
        let i = owner[k];
        let due = items[i].is_some_and(|p| p.due.is_some_and(|d| d <= after));
        if (p.revents != 0 || due) && !ready.contains(&i) {
            ready.push(i);
        }
    }
    for (i, item) in items.iter().enumerate() {
        // Timers of items without a descriptor.
        if item.is_some_and(|p| p.fd < 0 && p.ready_now(after)) && !ready.contains(&i) {
            ready.push(i);
        }
    }
    ready.sort_unstable();
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn buffered_data_and_due_timers_are_ready_without_waiting() {
        let (a, _b) = UnixStream::pair().unwrap();
        let quiet = PollInfo {
            fd: a.as_raw_fd(),
            interest: Interest::Read,
            dirty: false,
            due: None,
        };
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
        let p = PollInfo {
            fd: a.as_raw_fd(),
            interest: Interest::Read,
            dirty: false,
            due: None,
        };
        assert!(
            wait_any(&[Some(p)], Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
        std::io::Write::write_all(&mut b, b"x").unwrap();
        assert_eq!(wait_any(&[Some(p)], None).unwrap(), vec![0]);
    }
}
