//! Built-in Luup notification (SockProxy's `NTFY=` contract without SockProxy): a watcher
//! thread waits on the connection's socket and, when data arrives, asks Luup to run an action
//! with an HTTP GET on its port 3480. One request per arrival: the watcher then waits until the
//! application has received (`rearm`). A peer hang-up is reported at once, armed or not, and
//! again after each receive until the application has seen the close and stopped the watcher.
//!
//! The Lua thread never waits for the watcher: in a one-threaded host (openLuup) the watcher's
//! request is answered by the very thread that would wait, so stopping is a signal, and the
//! thread exits by itself (the library stays resident, `sys::keep_resident`). A gate shared
//! with `stop` makes "stopped" and "request written" mutually exclusive, so no request is
//! written once the application has been told the connection ended; the watcher holds it only
//! across one non-blocking send of the request. The thread never calls into Lua, and never
//! resolves a name: the host's address is resolved at open, within `connect_timeout`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    shared: Arc<Shared>,
    /// Writing a byte wakes the watcher (to stop, or to re-arm).
    wake: UnixStream,
}

/// What the Lua thread and the watcher share.
struct Shared {
    gate: Arc<Gate>,
    armed: AtomicBool,
}

/// Whether notifications may still be written, and the lock that makes "stopped" and "request
/// written" exclusive. A gate may have a parent (a reconnecting conn's): stopping the parent
/// stops every watcher under it.
#[derive(Debug, Default)]
pub struct Gate {
    stopped: AtomicBool,
    /// Held while checking `stopped` and writing a request (one non-blocking send), and while
    /// setting `stopped`.
    lock: Mutex<()>,
    parent: Option<Arc<Gate>>,
}

impl Gate {
    pub fn under(parent: Option<Arc<Gate>>) -> Gate {
        Gate {
            parent,
            ..Gate::default()
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        // Nothing panics while holding the gate; a poisoned one still guards nothing else.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Once this returns, no request is written under this gate (or a child's).
    pub fn stop(&self) {
        let _g = self.locked();
        self.stopped.store(true, Ordering::Release);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire) || self.parent.as_ref().is_some_and(|p| p.is_stopped())
    }

    /// Runs `write` unless this gate or a parent is stopped, holding their locks (child first,
    /// then parent: one order everywhere) so no stop can slip in between.
    fn write_unless_stopped(&self, write: impl FnOnce()) {
        let _mine = self.locked();
        let _parent = self.parent.as_ref().map(|p| p.locked());
        if !self.is_stopped() {
            write();
        }
    }
}

/// How long one notification may take, connect to the end of the reply: the request goes to a
/// local process, and the watcher is alone in waiting for it.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Reply bytes read (and discarded) at most; a reply is a few hundred bytes.
const REPLY_LIMIT: usize = 1 << 20;

impl Notifier {
    /// Starts watching `fd` (owned by the caller, who must `stop` before closing it), sending
    /// to `addr` (the target's host, resolved); `pending` sends a first notification at once
    /// (data is already buffered, or a reconnection is news). `parent`: a gate that stops this
    /// watcher too.
    pub fn spawn(
        fd: RawFd,
        target: NotifyTarget,
        addr: SocketAddr,
        pending: bool,
        parent: Option<Arc<Gate>>,
    ) -> std::io::Result<Notifier> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            gate: Arc::new(Gate::under(parent)),
            armed: AtomicBool::new(!pending),
        });
        let s = shared.clone();
        let request = Request { target, addr };
        std::thread::Builder::new()
            .name("luws-notify".into())
            .spawn(move || {
                if pending {
                    request.send(&s.gate);
                }
                watch(fd, wake_rx, &s, &request)
            })?;
        Ok(Notifier { shared, wake })
    }

    /// The application has received: notify again on the next arrival.
    pub fn rearm(&self) {
        if !self.shared.armed.swap(true, Ordering::AcqRel) {
            crate::sys::poke(self.wake.as_raw_fd());
        }
    }

    /// Stops the watcher without waiting for it: once this returns, it writes no request. The
    /// thread itself ends on its own, at the latest when a request in progress times out.
    pub fn stop(&mut self) {
        self.shared.gate.stop();
        crate::sys::poke(self.wake.as_raw_fd());
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(fd: RawFd, wake: UnixStream, shared: &Shared, request: &Request) {
    let mut drain = [0u8; 64];
    // A hang-up is a lasting state, not an event: it is reported at once (armed or not), then
    // again after each receive that did not end the connection (a receive may stop before the
    // end of the stream, e.g. on its read budget or after a short read), until the
    // application has seen the close and stopped us.
    let mut hangup_reported = false;
    let (gate, armed) = (&*shared.gate, &shared.armed);
    loop {
        // Checked before every poll: the descriptor may be closed (and its number reused) only
        // after `stopped` is set and the wake byte written, so a poll that starts before the
        // close returns at once.
        if gate.is_stopped() {
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
        if gate.is_stopped() {
            return;
        }
        let rev = fds[0].revents;
        let hung_up = rev & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
        if hung_up {
            if !hangup_reported || armed.swap(false, Ordering::AcqRel) {
                armed.store(false, Ordering::Release);
                hangup_reported = true;
                request.send(gate);
            }
            continue;
        }
        if rev & libc::POLLIN != 0 && armed.swap(false, Ordering::AcqRel) {
            request.send(gate);
        }
    }
}

/// One notification now, from a thread of luws's own (not a watcher): the reopener tells Luup
/// that reconnecting gave up, so a plugin that only receives from its job learns it.
pub fn tell(target: &NotifyTarget, addr: SocketAddr, gate: &Gate) {
    Request {
        target: target.clone(),
        addr,
    }
    .send(gate);
}

/// One notification: where to send it and what.
struct Request {
    target: NotifyTarget,
    addr: SocketAddr,
}

impl Request {
    /// One GET to Luup, then its reply read to the end (Content-Length, or chunked to the last
    /// chunk), so the host finishes writing before we close: openLuup logs an error for every
    /// reply it cannot write whole, and keeps the connection open ~90 s whatever the request
    /// says, so reading to the server's close would stall every notification.
    fn send(&self, gate: &Gate) {
        let deadline = Instant::now() + HTTP_TIMEOUT;
        if gate.is_stopped() {
            return;
        }
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, HTTP_TIMEOUT) else {
            return;
        };
        let _ = s.set_nodelay(true);
        let t = &self.target;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: luws\r\n\r\n",
            t.path(),
            t.host,
            t.port
        );
        if s.set_nonblocking(true).is_err() {
            return;
        }
        let mut written = false;
        gate.write_unless_stopped(|| {
            // A fresh connection takes a few hundred bytes at once; if it does not, the
            // notification is dropped rather than finished after a stop.
            written = matches!(s.write(req.as_bytes()), Ok(n) if n == req.len());
        });
        if written && s.set_nonblocking(false).is_ok() {
            read_reply(&mut s, deadline);
        }
    }
}

/// Reads one HTTP response to its end, or until `deadline`; the body is discarded. True when
/// the response ended as its framing says (not by the deadline or a broken stream).
fn read_reply(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut r = Reply {
        s,
        deadline,
        buf: Vec::new(),
        total: 0,
        eof: false,
    };
    let (head_len, framing) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&r.buf) {
            Ok(httparse::Status::Complete(n)) => break (n, Framing::of(&resp)),
            Ok(httparse::Status::Partial) if r.fill() => {}
            _ => return false,
        }
    };
    r.buf.drain(..head_len);
    match framing {
        Framing::Empty => true,
        Framing::Length(n) => r.skip(n),
        Framing::Chunked => r.chunks(),
        Framing::ToEof => {
            while r.fill() {
                r.buf.clear();
            }
            r.eof
        }
    }
}

/// How a response's body ends (RFC 9112 §6.3).
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    ToEof,
}

impl Framing {
    fn of(resp: &httparse::Response) -> Framing {
        if matches!(resp.code, Some(100..=199 | 204 | 304)) {
            return Framing::Empty;
        }
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        };
        if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
            return Framing::Chunked;
        }
        match header("content-length").map(|v| v.parse::<u64>()) {
            Some(Ok(n)) => Framing::Length(n),
            Some(Err(_)) => Framing::Empty,
            None => Framing::ToEof,
        }
    }
}

/// A response being read: bytes received and not yet consumed.
struct Reply<'a> {
    s: &'a mut TcpStream,
    deadline: Instant,
    buf: Vec<u8>,
    total: usize,
    /// The server closed its side.
    eof: bool,
}

impl Reply<'_> {
    /// Reads more; false at the end of the stream, on an error, on the deadline or the limit.
    fn fill(&mut self) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || self.total >= REPLY_LIMIT
            || self.s.set_read_timeout(Some(left)).is_err()
        {
            return false;
        }
        let mut chunk = [0u8; 4096];
        match self.s.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Err(_) => false,
            Ok(n) => {
                self.total += n;
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Consumes `n` body bytes; false when the stream ends first.
    fn skip(&mut self, mut n: u64) -> bool {
        loop {
            let here = (self.buf.len() as u64).min(n);
            self.buf.drain(..here as usize);
            n -= here;
            if n == 0 {
                return true;
            }
            if !self.fill() {
                return false;
            }
        }
    }

    /// Consumes a chunked body: chunks up to the zero-size one, then the trailer section.
    fn chunks(&mut self) -> bool {
        loop {
            match httparse::parse_chunk_size(&self.buf) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    self.buf.drain(..used);
                    break;
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    self.buf.drain(..used);
                    // The chunk and its CRLF.
                    if !self.skip(size.saturating_add(2)) {
                        return false;
                    }
                }
                Ok(httparse::Status::Partial) if self.fill() => {}
                _ => return false,
            }
        }
        // Trailer fields, then an empty line.
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let empty = i == 0;
                self.buf.drain(..i + 2);
                if empty {
                    return true;
                }
            } else if !self.fill() {
                return false;
            }
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

    /// A server that writes `pieces` with pauses and then keeps the connection open, as openLuup
    /// does; returns whether every piece was written and the client then closed (not the server).
    fn serve(pieces: Vec<&'static [u8]>) -> (SocketAddr, std::thread::JoinHandle<bool>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            for p in pieces {
                std::thread::sleep(Duration::from_millis(20));
                if c.write_all(p).is_err() {
                    return false;
                }
            }
            // The client must close first: wait for its end of stream (bounded).
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            matches!(c.read(&mut req), Ok(0))
        });
        (addr, t)
    }

    fn exchange(pieces: Vec<&'static [u8]>) -> (bool, bool) {
        let (addr, server) = serve(pieces);
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let complete = read_reply(&mut s, Instant::now() + Duration::from_secs(10));
        drop(s);
        (complete, server.join().unwrap())
    }

    #[test]
    fn a_chunked_reply_in_pieces_is_read_to_its_last_chunk_then_we_close() {
        // openLuup's shape: HTTP/1.1, chunked, keep-alive, written in several pieces.
        let (complete, server_ok) = exchange(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
            b"Connection: keep-alive\r\n\r\n",
            b"5\r\nhel",
            b"lo\r\n",
            b"0\r\n\r\n",
        ]);
        assert!(complete, "the reply was not read to its end");
        assert!(
            server_ok,
            "the server could not finish its reply, or closed first"
        );
    }

    #[test]
    fn a_content_length_reply_is_read_to_its_length() {
        let (complete, server_ok) = exchange(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            b"01234",
            b"56789",
        ]);
        assert!(complete && server_ok);
    }

    #[test]
    fn chunk_extensions_and_trailers_are_consumed() {
        let (complete, server_ok) = exchange(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3;ext=1\r\nabc\r\n0\r\n",
            b"X-Trailer: 1\r\n\r\n",
        ]);
        assert!(complete && server_ok);
    }
}
