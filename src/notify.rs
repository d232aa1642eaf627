//! Built-in Luup notification (SockProxy's `NTFY=` contract without SockProxy): a watcher
//! thread waits on the connection's socket and, when data arrives, asks Luup to run an action
//! with an HTTP GET on its port 3480. One request per arrival: the watcher then waits until the
//! application has received (`rearm`). A peer hang-up is reported at once, armed or not, and
//! again after each receive until the application has seen the close and stopped the watcher.
//!
//! The thread never calls into Lua. It is stopped and joined before its socket closes, so it
//! cannot watch a reused descriptor; the library stays resident (`sys::keep_resident`), so a
//! host that unloads the module while a watcher finishes cannot crash.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where and what to notify (the `notify` option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    pub host: String,
    pub port: u16,
    pub device: i64,
    pub service: String,
    pub action: String,
    /// Passed as `Pid=`, so one action can serve several connections.
    pub pid: String,
}

impl NotifyTarget {
    /// The request target, exactly as SockProxy sends it.
    pub fn path(&self) -> String {
        format!(
            "/data_request?id=action&output_format=json&DeviceNum={}&serviceId={}&action={}&Pid={}",
            self.device,
            encode(&self.service),
            encode(&self.action),
            encode(&self.pid)
        )
    }
}

/// Percent-encodes what would break a query value; service ids (`urn:a-b:serviceId:X1`) pass
/// unchanged.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A running watcher.
pub struct Notifier {
    stop: Arc<AtomicBool>,
    armed: Arc<AtomicBool>,
    /// Writing a byte wakes the watcher (to stop, or to re-arm).
    wake: UnixStream,
    thread: Option<JoinHandle<()>>,
}

/// How long the watcher waits for Luup: the request goes to a local process.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

impl Notifier {
    /// Starts watching `fd` (owned by the caller, who must `stop` before closing it);
    /// `pending` sends a first notification at once (data is already buffered).
    pub fn spawn(fd: RawFd, target: NotifyTarget, pending: bool) -> std::io::Result<Notifier> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let armed = Arc::new(AtomicBool::new(!pending));
        let (s, a) = (stop.clone(), armed.clone());
        let thread = std::thread::Builder::new()
            .name("luws-notify".into())
            .spawn(move || {
                if pending {
                    request(&target);
                }
                watch(fd, wake_rx, s, a, target)
            })?;
        Ok(Notifier {
            stop,
            armed,
            wake,
            thread: Some(thread),
        })
    }

    /// The application has received: notify again on the next arrival.
    pub fn rearm(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            let _ = (&self.wake).write(&[1]);
        }
    }

    /// Stops the watcher and waits for it (at most one notification request's time).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = (&self.wake).write(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(
    fd: RawFd,
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    armed: Arc<AtomicBool>,
    target: NotifyTarget,
) {
    let mut drain = [0u8; 64];
    // A hang-up is a lasting state, not an event: it is reported at once (armed or not), then
    // again after each receive that did not end the connection (a receive may stop before the
    // end of the stream, e.g. on its read budget or after a short read), until the
    // application has seen the close and stopped us.
    let mut hangup_reported = false;
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let armed_now = armed.load(Ordering::Acquire);
        // While armed, any input counts; while not, only the peer hanging up does, and once
        // that is reported, nothing (a negative fd is ignored by poll: POLLHUP/POLLERR would
        // otherwise wake us in a loop).
        let (watch_fd, want) = if armed_now {
            (fd, libc::POLLIN | libc::POLLRDHUP)
        } else if hangup_reported {
            (-1, 0)
        } else {
            (fd, libc::POLLRDHUP)
        };
        let mut fds = [
            libc::pollfd {
                fd: watch_fd,
                events: want,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if crate::sys::poll(&mut fds, None).is_err() {
            return;
        }
        if fds[1].revents != 0 {
            while matches!((&wake).read(&mut drain), Ok(n) if n > 0) {}
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        let rev = fds[0].revents;
        let hung_up = rev & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
        if hung_up {
            if !hangup_reported || armed.swap(false, Ordering::AcqRel) {
                armed.store(false, Ordering::Release);
                hangup_reported = true;
                request(&target);
            }
            continue;
        }
        if rev & libc::POLLIN != 0 && armed.swap(false, Ordering::AcqRel) {
            request(&target);
        }
    }
}

/// One GET to Luup. Only the status line is read: openLuup keeps connections open for ~90 s
/// whatever the request says, so reading to the end would stall every notification.
fn request(t: &NotifyTarget) {
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let Some(addr) = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT) else {
        return;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_write_timeout(Some(HTTP_TIMEOUT));
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: luws\r\n\r\n",
        t.path(),
        t.host,
        t.port
    );
    if s.write_all(req.as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 256];
    let mut seen = Vec::new();
    while !seen.windows(2).any(|w| w == b"\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_matches_sockproxy() {
        let t = NotifyTarget {
            host: "127.0.0.1".into(),
            port: 3480,
            device: 12,
            service: "urn:toggledbits-com:serviceId:SockProxy1".into(),
            action: "HandleReceive".into(),
            pid: "7".into(),
        };
        assert_eq!(
            t.path(),
            "/data_request?id=action&output_format=json&DeviceNum=12&serviceId=urn:toggledbits-com:serviceId:SockProxy1&action=HandleReceive&Pid=7"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
