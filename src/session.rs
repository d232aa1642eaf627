//! One WebSocket connection after its handshake: non-blocking receive in bounded steps, sends
//! bounded by a timeout, the closing handshake, and the receive-timeout and keepalive timers.
//!
//! The caller pulls one `Event` at a time and holds no borrow while it runs user code, so a
//! message handler may send, receive or close on the same connection.
//!
//! Only `send` (for `send_timeout`) and `close` (for `close_timeout`) may wait. Everything a
//! receive queues — pongs, the echo of a peer's Close, the Close of a failure — is written as
//! the socket allows, by this and later calls; output is capped (`send_buffer`), and output
//! that makes no progress for `send_timeout` fails the connection.

use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Utf8Bytes};

use crate::clock::Clock;
use crate::deflate::{Deflater, Inflater};
use crate::error::{Error, IoFailure, ReceiveFailure, SendFailure};
use crate::extension::DeflateParams;
use crate::incoming::{Fault, Incoming, Item};
use crate::outbox::{Compression, Kind, Outbox};
use crate::stream::{NoBlock, Stream};
use crate::sys::Interest;
use crate::wire::{Transport, Wire};

/// The WebSocket on its byte stream: the receiving half, the sending half.
struct Ws<W> {
    io: Stream<W>,
    rx: Incoming,
    tx: Outbox,
    /// `send_buffer`: the bound on queued output.
    cap: usize,
    /// A Close went out (ours, or the echo of the peer's): nothing may follow it.
    close_sent: bool,
}

impl<W: Wire> Ws<W> {
    fn get_ref(&self) -> &Stream<W> {
        &self.io
    }

    fn get_mut(&mut self) -> &mut Stream<W> {
        &mut self.io
    }

    /// The next frame's worth of progress, without blocking.
    fn read(&mut self) -> Result<Option<Item>, Fault> {
        self.rx.next(&mut self.io)
    }

    /// Writes queued output; `Ok(None)` while some of it still waits for the socket.
    fn flush(&mut self) -> io::Result<Option<()>> {
        self.tx
            .write_to(&mut self.io, self.cap)
            .map(|done| done.then_some(()))
    }

    /// Queues a Close (once: RFC 6455 §5.5.1), taken whatever the buffer holds.
    fn queue_close(&mut self, frame: Option<&CloseFrame>) {
        self.queue_close_body(&close_body(frame));
    }

    fn queue_close_body(&mut self, body: &[u8]) {
        if std::mem::replace(&mut self.close_sent, true) {
            return;
        }
        self.tx.drop_pong();
        self.tx.push(Kind::Close, body, usize::MAX);
    }
}

/// A Close frame's payload: the code and the reason, or nothing.
fn close_body(frame: Option<&CloseFrame>) -> Vec<u8> {
    frame.map_or_else(Vec::new, |f| {
        let mut b = u16::from(f.code).to_be_bytes().to_vec();
        b.extend_from_slice(f.reason.as_bytes());
        b
    })
}

/// Tunables of an open connection (the LuWS options that matter after the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Fail with `message timeout` when no frame arrives for this long.
    pub receive_timeout: Option<Duration>,
    /// Send a ping after this much silence; fail when nothing answers within as long again.
    pub keepalive: Option<Duration>,
    /// How long a send may wait for the socket to take its data, and how long queued output
    /// may make no progress before the connection fails; zero: sends never wait, and stalled
    /// output fails after `STALL_DEFAULT`.
    pub send_timeout: Duration,
    /// Whether a send waits (up to `send_timeout`) until its message is on the wire; if not,
    /// the rest stays buffered and goes out on later calls (inside a Luup host).
    pub sends_wait: bool,
    /// Bytes of unsent output beyond which a new message is refused (`send error: buffer
    /// full`) and automatic pongs are coalesced to the latest; a message sent when nothing is
    /// pending is taken whatever its size.
    pub send_buffer: usize,
    /// How long `close` waits for the peer's Close.
    pub close_timeout: Duration,
    /// Largest socket read, in bytes (LuWS `receive_chunk_size`).
    pub chunk_size: usize,
    /// Bytes one `wsreceive` call may read before it returns `more = true`.
    pub receive_budget: usize,
    /// Largest message, single frame or reassembled (LuWS `max_payload_size`).
    pub max_payload_size: usize,
    /// Mask outgoing frames (RFC 6455 §5.3); LuWS's `use_masking = false` turns it off for
    /// servers that cannot unmask.
    pub masking: bool,
    /// permessage-deflate as agreed in the handshake (RFC 7692), if it was.
    pub deflate: Option<DeflateParams>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            receive_timeout: None,
            keepalive: None,
            send_timeout: STALL_DEFAULT,
            sends_wait: true,
            send_buffer: 1 << 20,
            close_timeout: Duration::from_secs(1),
            chunk_size: 4096,
            receive_budget: 64 * 1024,
            max_payload_size: 65535,
            masking: true,
            deflate: None,
        }
    }
}

impl SessionConfig {
    /// How long output may make no progress before the connection fails.
    fn stall_limit(&self) -> Duration {
        if self.send_timeout.is_zero() {
            STALL_DEFAULT
        } else {
            self.send_timeout
        }
    }
}

/// The default `send_timeout`, and the stall limit when `send_timeout` is zero.
pub const STALL_DEFAULT: Duration = Duration::from_secs(5);

/// Where the connection stands.
enum Link<W> {
    /// Messages flow both ways.
    Open(Box<Ws<W>>),
    /// We sent a Close (RFC 6455 §7.1.2): we still read, we may not send data.
    Closing(Box<Ws<W>>),
    /// The application has been told the connection ended, but queued output (the echo of the
    /// peer's Close, or our Close after a failure) still drains, without blocking, until
    /// `until`; then the socket closes.
    Draining(Box<Drain<W>>),
    /// The socket is closed; why is kept for the calls that follow.
    Closed(Ending),
}

/// A connection whose end was reported, finishing its output.
struct Drain<W> {
    ws: Ws<W>,
    until: Instant,
    /// After the output: half-close and discard input until the peer closes, so that unread
    /// data does not turn our close into a reset that destroys the Close frame in flight.
    linger: bool,
    /// The write side is shut down (linger).
    shut: bool,
    /// Everything queued has been written.
    flushed: bool,
    why: Ending,
}

impl<W: Wire> Drain<W> {
    /// Makes what progress the socket allows; true when nothing is left to do.
    fn progress(&mut self, now: Instant) -> bool {
        let timed_out = now >= self.until;
        if !self.flushed {
            match self.ws.flush() {
                Ok(Some(())) => self.flushed = true,
                Ok(None) => return timed_out,
                Err(_) => return true,
            }
        }
        if !self.linger {
            return true;
        }
        let stream = self.ws.get_mut();
        if !self.shut {
            self.shut = true;
            stream.wire_mut().shutdown_write();
        }
        let mut sink = [0u8; 4096];
        loop {
            match stream.wire_mut().read_raw(&mut sink).no_block() {
                Ok(Some(0)) | Err(_) => return true,
                Ok(Some(_)) => {}
                Ok(None) => return timed_out,
            }
        }
    }

    /// What the socket must become ready for to make progress.
    fn interest(&self) -> Interest {
        if self.flushed {
            Interest::Read
        } else {
            Interest::Write
        }
    }
}

/// Why a connection is closed.
#[derive(Debug, Clone)]
enum Ending {
    /// The application closed it.
    Local,
    /// The peer closed it, cleanly or not.
    Peer,
    /// An error ended it.
    Failed(Error),
}

impl<W> Link<W> {
    /// The WebSocket while the application may still use it.
    fn ws(&mut self) -> Option<&mut Ws<W>> {
        match self {
            Link::Open(ws) | Link::Closing(ws) => Some(ws),
            Link::Draining(_) | Link::Closed(_) => None,
        }
    }
}

/// What one receive step produced.
#[derive(Debug)]
pub enum Event {
    /// A complete data message (text already checked as UTF-8); its bytes are
    /// `Session::message()` until the next call on the session.
    Message {
        text: bool,
    },
    /// A Ping; its Pong is already queued (a pong sent before the next step replaces it).
    Ping(Bytes),
    Pong(Bytes),
    /// The peer's Close (`None`: no status code); the echo is already queued and the
    /// connection is over for the application.
    Close(Option<CloseFrame>),
    /// The connection just failed; the socket is closed.
    Failed(Error),
    /// The connection was already closed: nothing more will come.
    Ended(Error),
    /// Nothing more can be read without waiting.
    Idle,
    /// The call's read budget is spent; more data may be waiting.
    Paused,
}

/// What a send carries (`Bytes`, so a Lua string can be lent without a copy).
pub enum Outgoing {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A Close, with a status code or without (`close_frame` reads a user's body).
    Close(Option<CloseFrame>),
}

/// One open (or formerly open) WebSocket connection.
pub struct Session<W: Wire = Transport> {
    /// The Luup notification watcher, if any; stopped before the socket closes.
    notifier: Option<crate::notify::Notifier>,
    link: Link<W>,
    config: SessionConfig,
    clock: Clock,
    /// When the last frame of any kind arrived.
    last_frame: Instant,
    /// When bytes last arrived, a whole frame or part of one: the clock of `receive_timeout`
    /// and `keepalive`, which detect a dead peer; a peer that is still sending is alive.
    last_activity: Instant,
    /// Wall clock at `opened`, to report `last_frame` as a time of day.
    opened: (Instant, SystemTime),
    /// When the keepalive ping went out, while unanswered.
    ping_sent: Option<Instant>,
    /// Data may wait in buffers where poll(2) cannot see it (TLS, decoder, budget stop).
    maybe_buffered: bool,
    /// An event taken by `next_event` and given back (`unread`): the next call returns it.
    unread: Option<Event>,
    /// Some outgoing bytes wait for the socket.
    pending_out: bool,
    /// Since when pending output has made no progress, and the byte count it had then.
    stalled: Option<(Instant, u64)>,
    /// The application sent a Close (the closing handshake is ours).
    we_closed: bool,
    /// The server's 101 answer.
    response: Option<crate::response::Response>,
    /// The URL it opened, after any redirect.
    url: String,
}

impl<W: Wire> Session<W> {
    /// Wraps a transport that finished its handshake; `leftover` holds bytes read past the
    /// response header, already part of the WebSocket stream.
    pub fn new(transport: W, leftover: Vec<u8>, config: SessionConfig) -> Session<W> {
        Session::with_clock(transport, leftover, config, Clock::System)
    }

    /// The same, reading the time from `clock`.
    pub fn with_clock(
        transport: W,
        leftover: Vec<u8>,
        config: SessionConfig,
        clock: Clock,
    ) -> Session<W> {
        let maybe_buffered = !leftover.is_empty();
        let deflate = config.deflate.as_ref();
        let compression = deflate.and_then(|p| {
            Deflater::new(p).map(|deflater| Compression {
                deflater,
                threshold: p.threshold,
            })
        });
        let ws = Ws {
            io: Stream::new(transport),
            rx: Incoming::new(
                leftover,
                config.chunk_size,
                config.max_payload_size,
                deflate.map(Inflater::new),
            ),
            tx: Outbox::new(config.masking, compression),
            cap: config.send_buffer.max(1),
            close_sent: false,
        };
        let now = clock.now();
        Session {
            notifier: None,
            link: Link::Open(Box::new(ws)),
            config,
            clock,
            last_frame: now,
            last_activity: now,
            opened: (now, SystemTime::now()),
            ping_sent: None,
            maybe_buffered,
            unread: None,
            pending_out: false,
            stalled: None,
            we_closed: false,
            response: None,
            url: String::new(),
        }
    }

    pub fn set_url(&mut self, url: String) {
        self.url = url;
    }

    /// The URL it opened, after any redirect (`conn:url()`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Keeps the server's 101 answer (the opener has it).
    pub fn set_response(&mut self, r: crate::response::Response) {
        self.response = Some(r);
    }

    /// The server's 101 answer: status, reason, headers, the chosen subprotocol.
    pub fn response(&self) -> Option<&crate::response::Response> {
        self.response.as_ref()
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// True while messages may still be sent.
    pub fn is_open(&self) -> bool {
        matches!(self.link, Link::Open(_))
    }

    /// True until the application has been told the connection ended.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Open(_) | Link::Closing(_))
    }

    /// The socket's descriptor, or -1 once closed (LuaSocket's `select` skips -1).
    pub fn raw_fd(&self) -> i32 {
        match &self.link {
            Link::Open(ws) | Link::Closing(ws) => ws.get_ref().wire().raw_fd(),
            Link::Draining(_) | Link::Closed(_) => -1,
        }
    }

    /// The connection ended, and not because the application closed it (a peer's Close, a
    /// reset, a timeout, a protocol error): what `reconnect` reopens after.
    pub fn ended_unasked(&self) -> bool {
        let why = match &self.link {
            Link::Draining(d) => &d.why,
            Link::Closed(why) => why,
            _ => return false,
        };
        // A Close we sent (wssend of opcode 8, verawebsockets' close) was asked for too.
        !matches!(why, Ending::Local) && !self.we_closed
    }

    /// True while an ended connection still writes its last output (see `drain_interest`).
    pub fn is_draining(&self) -> bool {
        matches!(self.link, Link::Draining(_))
    }

    /// What an owner that polls waits for while the application uses the connection: its
    /// socket and timers (nothing once the application was told of the end).
    pub fn poll_info(&self) -> Option<crate::poll::PollInfo> {
        // `raw_fd`, `wants_write`, `dirty` and `next_deadline` with one look at the link (the
        // hot `luws.wait` asks this every time).
        let (Link::Open(ws) | Link::Closing(ws)) = &self.link else {
            return None;
        };
        let fd = ws.get_ref().wire().raw_fd();
        (fd >= 0).then(|| crate::poll::PollInfo {
            fd,
            interest: if self.pending_out {
                Interest::Write
            } else {
                Interest::Read
            },
            dirty: self.maybe_buffered,
            due: self.timer_deadline(),
        })
    }

    /// What a scheduler waits for to finish a draining connection (its last output, until its
    /// bound); `None` when not draining.
    pub fn drain_poll_info(&self) -> Option<crate::poll::PollInfo> {
        self.drain_interest()
            .map(|(fd, interest, until)| crate::poll::PollInfo {
                fd,
                interest,
                dirty: false,
                due: Some(until),
            })
    }

    /// For an owner that polls: what a draining connection waits for, and until when.
    pub fn drain_interest(&self) -> Option<(i32, Interest, Instant)> {
        match &self.link {
            Link::Draining(d) => Some((d.ws.get_ref().wire().raw_fd(), d.interest(), d.until)),
            _ => None,
        }
    }

    /// Data may be buffered where poll(2) cannot see it: call `receive` without waiting.
    pub fn dirty(&self) -> bool {
        self.is_connected() && self.maybe_buffered
    }

    /// Outgoing bytes wait for the socket (poll for writability too).
    pub fn wants_write(&self) -> bool {
        self.is_connected() && self.pending_out
    }

    /// When a timer (receive timeout, keepalive) next needs a receive call, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.is_connected() {
            return None;
        }
        self.timer_deadline()
    }

    /// `next_deadline` of a connected session.
    fn timer_deadline(&self) -> Option<Instant> {
        let timeout = self.config.receive_timeout.map(|t| self.last_activity + t);
        let keepalive = self.config.keepalive.map(|k| match self.ping_sent {
            Some(sent) => sent + k,
            None => self.last_activity + k,
        });
        match (timeout, keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Seconds since the epoch when the last frame arrived (LuWS `wslastping`).
    pub fn last_frame_time(&self) -> f64 {
        let at = self.opened.1 + self.last_frame.saturating_duration_since(self.opened.0);
        at.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Starts the Luup notification watcher on this connection's socket; `addr` is the
    /// target's host, resolved by the opener.
    /// `announce`: tell Luup at once even without data (a reconnection is news); `parent`: a
    /// gate that stops this watcher too (the reconnecting conn's).
    pub fn start_notifier(
        &mut self,
        target: crate::notify::NotifyTarget,
        addr: std::net::SocketAddr,
        announce: bool,
        parent: Option<std::sync::Arc<crate::notify::Gate>>,
    ) -> io::Result<()> {
        let fd = self.raw_fd();
        if fd < 0 {
            return Err(io::ErrorKind::NotConnected.into());
        }
        // Bytes that came with the 101 are already buffered: tell Luup about them at once.
        self.notifier = Some(crate::notify::Notifier::spawn(
            fd,
            target,
            addr,
            self.maybe_buffered || announce,
            parent,
        )?);
        Ok(())
    }

    /// Stops the notifier (a signal, never a wait): the application is closing or has been
    /// told of the end, so nothing more is news for Luup.
    pub fn stop_notifier(&mut self) {
        if let Some(mut n) = self.notifier.take() {
            n.stop();
        }
    }

    /// Ends a receive call: the notifier may report the next arrival.
    pub fn receive_done(&self) {
        if let Some(n) = &self.notifier {
            n.rearm();
        }
    }

    /// Starts a receive call: resets the read budget. Returns false when closed.
    pub fn begin_receive(&mut self) -> bool {
        let budget = self.config.receive_budget;
        match self.link.ws() {
            Some(ws) => {
                ws.get_mut().set_budget(budget);
                true
            }
            None => false,
        }
    }

    /// Bytes read from the socket since `begin_receive`.
    pub fn bytes_read(&self) -> usize {
        match &self.link {
            Link::Open(ws) | Link::Closing(ws) => ws.get_ref().read_in_call(),
            Link::Draining(_) | Link::Closed(_) => 0,
        }
    }

    /// Gives an event back: the next `next_event` returns it (a caller that handles only some
    /// events hands the rest of its call to one that handles all).
    pub fn unread(&mut self, event: Event) {
        self.unread = Some(event);
    }

    /// The next thing that happened on the connection, without blocking.
    #[inline]
    pub fn next_event(&mut self) -> Event {
        // The usual case goes straight to the read: nothing given back, nothing to write.
        if self.unread.is_none() && !self.pending_out && self.is_connected() {
            return self.read_step();
        }
        self.step()
    }

    /// `next_event`'s every case.
    fn step(&mut self) -> Event {
        // (Tested before it is taken: moving the large Option out costs every call.)
        if self.unread.is_some() {
            if let Some(ev) = self.unread.take() {
                return ev;
            }
        }
        if self.pending_out {
            if let Err(e) = self.pump_out() {
                return Event::Failed(e);
            }
        }
        self.read_step()
    }

    /// `next_event` once what was given back and what waited to be written are dealt with.
    fn read_step(&mut self) -> Event {
        let Some(ws) = self.link.ws() else {
            self.progress_drain();
            return Event::Ended(self.ending_error());
        };
        // No complete frame buffered and nothing in the socket: the read could only say
        // WouldBlock.
        if ws.get_ref().nothing_to_read() && ws.rx.needs_read() {
            self.maybe_buffered = false;
            return self.check_timers();
        }
        let before = ws.get_ref().read_in_call();
        let result = ws.read();
        // Any byte is a sign of life, even the middle of a frame that trickles in. (One clock
        // read per step: it is much of a small message's cost.)
        let got_bytes = ws.get_ref().read_in_call() != before;
        if got_bytes || matches!(result, Ok(Some(_))) {
            self.last_activity = self.clock.now();
            self.ping_sent = None;
        }
        match result {
            Ok(Some(item)) => {
                self.last_frame = self.last_activity;
                self.on_item(item)
            }
            Ok(None) => {
                let paused = ws.get_ref().paused();
                self.maybe_buffered = paused;
                if paused {
                    Event::Paused
                } else {
                    self.check_timers()
                }
            }
            Err(fault) => self.on_fault(fault),
        }
    }

    /// The bytes of the message `next_event` just returned.
    pub fn message(&self) -> &[u8] {
        match &self.link {
            Link::Open(ws) | Link::Closing(ws) => ws.rx.message(),
            Link::Draining(_) | Link::Closed(_) => &[],
        }
    }

    fn on_item(&mut self, item: Item) -> Event {
        match item {
            Item::Message { text } => Event::Message { text },
            Item::Ping(p) => {
                // The pong is queued; the next step writes it, unless the control handler
                // sends its own in its place.
                if let Some(ws) = self.link.ws() {
                    if !ws.close_sent {
                        ws.tx.set_pong(p.clone());
                        self.note_pending();
                    }
                }
                Event::Ping(p)
            }
            Item::Pong(p) => Event::Pong(p),
            Item::Close(frame) => {
                // Echo the peer's Close (RFC 6455 §5.5.1), unless this answers ours: it
                // drains as the socket allows, then the socket goes.
                if let Some(ws) = self.link.ws() {
                    ws.queue_close(frame.as_ref());
                }
                self.end(Ending::Peer, false);
                Event::Close(frame)
            }
        }
    }

    fn on_fault(&mut self, fault: Fault) -> Event {
        let (failure, code) = match fault {
            Fault::Protocol(words) => (ReceiveFailure::Protocol(words), Some(CloseCode::Protocol)),
            Fault::InvalidUtf8 => (ReceiveFailure::InvalidUtf8, Some(CloseCode::Invalid)),
            Fault::BadCompression => (ReceiveFailure::BadCompression, Some(CloseCode::Invalid)),
            Fault::TooBig { size } => (
                ReceiveFailure::TooBig {
                    size,
                    max: self.config.max_payload_size,
                },
                Some(CloseCode::Size),
            ),
            Fault::Closed => (ReceiveFailure::Closed, None),
            Fault::Io(io) => match IoFailure::from(&io) {
                IoFailure::Closed => (ReceiveFailure::Closed, None),
                f => (ReceiveFailure::Io(f), None),
            },
        };
        self.fail(Error::Receive(failure), code)
    }

    /// Receive timeout and keepalive, checked when the socket has nothing to read.
    #[inline]
    fn check_timers(&mut self) -> Event {
        if self.config.receive_timeout.is_none() && self.config.keepalive.is_none() {
            // No timer: no clock read, no call (the idle wsreceive's budget).
            return Event::Idle;
        }
        self.run_timers()
    }

    #[inline(never)]
    fn run_timers(&mut self) -> Event {
        let now = self.clock.now();
        let silent = now.saturating_duration_since(self.last_activity);
        if let Some(limit) = self.config.receive_timeout {
            if silent >= limit {
                return self.fail(Error::MessageTimeout, Some(CloseCode::Away));
            }
        }
        if let Some(every) = self.config.keepalive {
            match self.ping_sent {
                Some(sent) if now.saturating_duration_since(sent) >= every => {
                    return self.fail(
                        Error::Receive(ReceiveFailure::KeepaliveTimeout),
                        Some(CloseCode::Away),
                    );
                }
                None if silent >= every => {
                    self.ping_sent = Some(now);
                    if let Some(ws) = self.link.ws() {
                        // A full buffer refuses it: the stall limit then ends the connection.
                        let cap = ws.cap;
                        ws.tx.push(Kind::Ping, b"luws-keepalive", cap);
                    }
                    if let Err(e) = self.pump_out() {
                        return Event::Failed(e);
                    }
                }
                _ => {}
            }
        }
        Event::Idle
    }

    /// Ends the connection after an error: best-effort Close with `code` (drained and lingered
    /// over later calls), then the socket goes.
    fn fail(&mut self, err: Error, code: Option<CloseCode>) -> Event {
        match (code, self.link.ws()) {
            (Some(code), Some(ws)) => {
                ws.queue_close(Some(&CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(""),
                }));
                self.end(Ending::Failed(err.clone()), true);
            }
            _ => self.drop_socket(Ending::Failed(err.clone())),
        }
        Event::Failed(err)
    }

    /// The application is about to be told the connection ended: the notifier stops, queued
    /// output drains (at once if the socket takes it, else over later calls), then the socket
    /// closes.
    fn end(&mut self, why: Ending, linger: bool) {
        self.stop_notifier();
        self.maybe_buffered = false;
        self.pending_out = false;
        self.stalled = None;
        let until = self.clock.now()
            + if linger {
                self.config.close_timeout.min(FAIL_LINGER)
            } else {
                self.config.close_timeout
            };
        self.link = match std::mem::replace(&mut self.link, Link::Closed(why.clone())) {
            Link::Open(ws) | Link::Closing(ws) => Link::Draining(Box::new(Drain {
                ws: *ws,
                until,
                linger,
                shut: false,
                flushed: false,
                why,
            })),
            other => other,
        };
        self.progress_drain();
    }

    /// Advances a draining connection without blocking; closes the socket when it is done.
    fn progress_drain(&mut self) {
        let now = self.clock.now();
        if let Link::Draining(d) = &mut self.link {
            if d.progress(now) {
                let why = d.why.clone();
                self.link = Link::Closed(why);
            }
        }
    }

    fn drop_socket(&mut self, why: Ending) {
        self.stop_notifier();
        self.link = Link::Closed(why);
        self.maybe_buffered = false;
        self.pending_out = false;
        self.stalled = None;
    }

    fn ending_error(&self) -> Error {
        let why = match &self.link {
            Link::Closed(why) => why,
            Link::Draining(d) => &d.why,
            _ => return Error::NotConnected,
        };
        match why {
            Ending::Peer => Error::Receive(ReceiveFailure::Closed),
            Ending::Failed(e) => e.clone(),
            Ending::Local => Error::NotConnected,
        }
    }

    /// Sends one message. Returns once it is on the wire, or buffered when `send_timeout` is
    /// zero; fails (and gives the connection up) when the peer takes nothing for `send_timeout`.
    pub fn send(&mut self, out: Outgoing) -> Result<(), Error> {
        match &self.link {
            Link::Open(_) => {}
            // After a Close either way, LuWS answers "closing"; after anything else the
            // connection is simply gone.
            Link::Closing(_) => return Err(Error::Closing),
            Link::Draining(d) if matches!(d.why, Ending::Peer) => return Err(Error::Closing),
            Link::Closed(Ending::Peer) => return Err(Error::Closing),
            Link::Draining(_) | Link::Closed(_) => return Err(Error::NotConnected),
        }
        let (kind, payload) = to_frame(out).map_err(Error::Send)?;
        let is_close = kind == Kind::Close;
        // A pong takes the place of a queued automatic one (one waits at most).
        let is_pong = kind == Kind::Pong;
        let wait = self.send_wait();
        // Output left from earlier goes first, as far as the socket takes it now.
        if self.pending_out && !is_pong {
            self.pump_out()?;
        }
        let mut refused = self.write_message(kind, &payload)?;
        if refused && !wait.is_zero() {
            // Over the cap: wait (within send_timeout) for the backlog to drain, then retry.
            self.flush_for(wait)?;
            refused = self.write_message(kind, &payload)?;
        }
        if refused {
            return Err(Error::Send(SendFailure::BufferFull));
        }
        if is_close {
            self.we_closed = true;
            if let Link::Open(ws) = std::mem::replace(&mut self.link, Link::Closed(Ending::Local)) {
                self.link = Link::Closing(ws);
            }
        }
        self.flush_for(wait)
    }

    /// `send` of a Text (`text`) or Binary message from borrowed bytes: the same checks,
    /// answers and waits. With nothing queued before it (a loop whose socket keeps up) it is
    /// formatted straight from `data`; otherwise it is copied and queued as `send` queues it.
    pub fn send_data(&mut self, text: bool, data: &[u8]) -> Result<(), Error> {
        let direct = !self.pending_out && matches!(&self.link, Link::Open(ws) if !ws.close_sent);
        if !direct {
            let bytes = Bytes::copy_from_slice(data);
            return self.send(if text {
                Outgoing::Text(bytes)
            } else {
                Outgoing::Binary(bytes)
            });
        }
        if text && !crate::utf8::is_utf8(data) {
            return Err(Error::Send(SendFailure::InvalidUtf8));
        }
        let wait = self.send_wait();
        let flushed = self.link.ws().map(|ws| {
            // Nothing pending: taken whatever its size, as `write_message` takes it.
            let kind = if text { Kind::Text } else { Kind::Binary };
            ws.tx.push(kind, data, usize::MAX);
            ws.flush()
        });
        // The first round of `flush_for`, inline: the socket takes it at once (the usual case).
        match flushed {
            Some(Ok(Some(()))) => Ok(()),
            Some(Err(e)) => Err(self.fail_send(e)),
            // Sends that do not wait: the rest goes out on later calls (no second write now).
            Some(Ok(None)) if wait.is_zero() => {
                self.note_pending();
                Ok(())
            }
            _ => {
                self.pending_out = true;
                self.flush_for(wait)
            }
        }
    }

    /// How long a send may wait for the socket (`send_timeout`; zero when sends do not wait).
    fn send_wait(&self) -> Duration {
        if self.config.sends_wait {
            self.config.send_timeout
        } else {
            Duration::ZERO
        }
    }

    /// Queues one message. With nothing pending it is taken whatever its size; otherwise the
    /// cap applies. Returns true when the cap refused it.
    fn write_message(&mut self, kind: Kind, payload: &Bytes) -> Result<bool, Error> {
        let roomy = !self.pending_out;
        let Some(ws) = self.link.ws() else {
            return Err(Error::NotConnected);
        };
        if ws.close_sent {
            return Err(Error::Closing);
        }
        match kind {
            Kind::Pong => ws.tx.set_pong(payload.clone()),
            Kind::Close => ws.queue_close_body(payload),
            _ => {
                let cap = if roomy { usize::MAX } else { ws.cap };
                if !ws.tx.push(kind, payload, cap) {
                    return Ok(true);
                }
            }
        }
        // The stall clock starts only if the flush that follows (`send`) leaves output behind:
        // a send the socket takes at once reads no clock.
        self.pending_out = true;
        Ok(false)
    }

    /// Output is waiting for the socket: start the stall clock if it is not running.
    fn note_pending(&mut self) {
        self.pending_out = true;
        if self.stalled.is_none() {
            let written = self.link.ws().map_or(0, |ws| ws.get_ref().written());
            self.stalled = Some((self.clock.now(), written));
        }
    }

    /// Writes queued output as far as the socket takes it now; fails the connection when it
    /// has made no progress for the stall limit.
    fn pump_out(&mut self) -> Result<(), Error> {
        let Some(ws) = self.link.ws() else {
            return Err(self.ending_error());
        };
        let r = ws.flush();
        let written = ws.get_ref().written();
        match r {
            Ok(Some(())) => {
                self.pending_out = false;
                self.stalled = None;
                Ok(())
            }
            Ok(None) => {
                self.pending_out = true;
                let now = self.clock.now();
                match self.stalled {
                    Some((since, at)) if at == written => {
                        if now.saturating_duration_since(since) >= self.config.stall_limit() {
                            let err = Error::Send(SendFailure::Timeout);
                            self.drop_socket(Ending::Failed(err.clone()));
                            return Err(err);
                        }
                    }
                    _ => self.stalled = Some((now, written)),
                }
                Ok(())
            }
            Err(e) => Err(self.fail_send(e)),
        }
    }

    /// Writes buffered output, waiting up to `wait` for the socket. With `wait` zero the rest
    /// stays buffered; otherwise running out of time gives the connection up.
    fn flush_for(&mut self, wait: Duration) -> Result<(), Error> {
        // Read the clock only once the socket makes us wait.
        let mut deadline = None;
        loop {
            let Some(ws) = self.link.ws() else {
                return Err(self.ending_error());
            };
            match ws.flush() {
                Ok(Some(())) => {
                    self.pending_out = false;
                    self.stalled = None;
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => return Err(self.fail_send(e)),
            }
            if wait.is_zero() {
                self.note_pending();
                return Ok(());
            }
            let now = self.clock.now();
            let left = deadline
                .get_or_insert(now + wait)
                .saturating_duration_since(now);
            if left.is_zero() {
                let err = Error::Send(SendFailure::Timeout);
                self.drop_socket(Ending::Failed(err.clone()));
                return Err(err);
            }
            ws.get_ref().wire().wait(Interest::Write, left);
        }
    }

    fn fail_send(&mut self, e: io::Error) -> Error {
        let failure = match IoFailure::from(&e) {
            IoFailure::Closed => SendFailure::Closed,
            f => SendFailure::Io(f),
        };
        let err = Error::Send(failure);
        self.drop_socket(Ending::Failed(err.clone()));
        err
    }

    /// Starts the closing handshake without waiting: queues Close `code` (sent as the socket
    /// allows); the peer's answer arrives as `Event::Close` from `next_event`.
    pub fn begin_close(&mut self, code: CloseCode) -> Result<(), Error> {
        self.stop_notifier();
        let sends_wait = std::mem::replace(&mut self.config.sends_wait, false);
        let r = self.send(Outgoing::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        })));
        self.config.sends_wait = sends_wait;
        r
    }

    /// An ended connection the application has now closed itself: later calls answer `not
    /// connected`, not the old end's reason.
    pub fn forget_ending(&mut self) {
        if !self.is_connected() {
            self.drop_socket(Ending::Local);
        }
    }

    /// Closes the socket at once, without a closing handshake (a Close that got no answer).
    pub fn abandon(&mut self) {
        if self.is_connected() || self.is_draining() {
            self.drop_socket(Ending::Local);
        }
    }

    /// Closes: sends Close `code` if open, waits up to `close_timeout` for the peer's Close
    /// (or for a draining connection's last output), then closes the socket. Safe in any
    /// state, any number of times.
    pub fn close(&mut self, code: u16) {
        self.stop_notifier();
        let deadline = self.clock.now() + self.config.close_timeout;
        while self.is_draining() {
            self.progress_drain();
            let Link::Draining(d) = &self.link else {
                break;
            };
            let left = deadline
                .min(d.until)
                .saturating_duration_since(self.clock.now());
            if left.is_zero() {
                self.link = Link::Closed(d.why.clone());
                break;
            }
            d.ws.get_ref().wire().wait(d.interest(), left);
        }
        if let Link::Open(ws) = &mut self.link {
            ws.queue_close(Some(&CloseFrame {
                code: CloseCode::from(code),
                reason: Utf8Bytes::from_static(""),
            }));
        }
        if let Some(ws) = self.link.ws() {
            ws.get_mut().set_budget(usize::MAX);
            await_peer_close(ws, deadline, &self.clock);
            ws.get_mut().wire_mut().close_notify();
        }
        if self.is_connected() {
            self.drop_socket(Ending::Local);
        }
    }
}

impl<W: Wire> Drop for Session<W> {
    /// A connection dropped without `close` (garbage collection) still says goodbye without
    /// waiting: one non-blocking attempt to send Close 1001 (or a draining connection's last
    /// output), then the socket closes.
    fn drop(&mut self) {
        self.stop_notifier();
        match &mut self.link {
            Link::Open(ws) => {
                ws.queue_close(Some(&CloseFrame {
                    code: CloseCode::Away,
                    reason: Utf8Bytes::from_static(""),
                }));
                let _ = ws.flush();
            }
            Link::Draining(d) => {
                d.progress(self.clock.now());
            }
            _ => {}
        }
    }
}

/// How long a failing connection keeps reading after its Close, so that unread data does not
/// turn our close into a reset that destroys the Close frame before the peer reads it.
const FAIL_LINGER: Duration = Duration::from_millis(200);

/// Reads until the peer's Close arrives (or the socket ends, or time runs out).
fn await_peer_close<W: Wire>(ws: &mut Ws<W>, deadline: Instant, clock: &Clock) {
    loop {
        let left = deadline.saturating_duration_since(clock.now());
        match ws.flush() {
            Ok(Some(())) => {}
            Ok(None) if !left.is_zero() => {
                ws.get_ref().wire().wait(Interest::Write, left);
                continue;
            }
            _ => return,
        }
        match ws.read() {
            Ok(Some(Item::Close(_))) => {
                let _ = ws.flush();
                return;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if left.is_zero() || !ws.get_ref().wire().wait(Interest::Read, left) {
                    return;
                }
                // The stream remembers a short read as "the socket is empty"; it is not now.
                ws.get_mut().set_budget(usize::MAX);
            }
            Err(_) => return,
        }
    }
}

/// A send's frame kind and payload, checked (RFC 6455 §5.5: control payloads ≤ 125 bytes;
/// §5.6: text is UTF-8).
fn to_frame(out: Outgoing) -> Result<(Kind, Bytes), SendFailure> {
    let control = |v: Bytes| {
        if v.len() > 125 {
            Err(SendFailure::ControlTooLarge)
        } else {
            Ok(v)
        }
    };
    Ok(match out {
        Outgoing::Text(v) => {
            if !crate::utf8::is_utf8(&v) {
                return Err(SendFailure::InvalidUtf8);
            }
            (Kind::Text, v)
        }
        Outgoing::Binary(v) => (Kind::Binary, v),
        Outgoing::Ping(v) => (Kind::Ping, control(v)?),
        Outgoing::Pong(v) => (Kind::Pong, control(v)?),
        Outgoing::Close(f) => {
            if f.as_ref().is_some_and(|f| f.reason.len() > 123) {
                return Err(SendFailure::ControlTooLarge);
            }
            (Kind::Close, Bytes::from(close_body(f.as_ref())))
        }
    })
}

/// A Close body from user bytes (RFC 6455 §5.5.1, §7.4): empty, or a 2-byte code that may be
/// sent and a UTF-8 reason.
pub fn close_frame(body: Bytes) -> Result<Option<CloseFrame>, SendFailure> {
    if body.len() > 125 {
        return Err(SendFailure::ControlTooLarge);
    }
    if body.is_empty() {
        return Ok(None);
    }
    if body.len() < 2 {
        return Err(SendFailure::BadClosePayload);
    }
    let code = CloseCode::from(u16::from_be_bytes([body[0], body[1]]));
    if !code.is_allowed() {
        return Err(SendFailure::BadClosePayload);
    }
    let reason = Utf8Bytes::try_from(body.slice(2..)).map_err(|_| SendFailure::BadClosePayload)?;
    Ok(Some(CloseFrame { code, reason }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_bodies() {
        assert_eq!(close_frame(Bytes::new()), Ok(None));
        assert_eq!(
            close_frame(Bytes::from_static(b"\x03")),
            Err(SendFailure::BadClosePayload)
        );
        // 1005 and 999 may not be sent (RFC 6455 §7.4.1).
        assert_eq!(
            close_frame(Bytes::from_static(b"\x03\xed")),
            Err(SendFailure::BadClosePayload)
        );
        assert_eq!(
            close_frame(Bytes::from_static(b"\x03\xe7")),
            Err(SendFailure::BadClosePayload)
        );
        assert_eq!(
            close_frame(Bytes::from_static(b"\x03\xe8\xff")),
            Err(SendFailure::BadClosePayload)
        );
        let f = close_frame(Bytes::from_static(b"\x0f\xa0bye"))
            .ok()
            .flatten();
        assert_eq!(
            f.map(|f| (u16::from(f.code), f.reason.to_string())),
            Some((4000, "bye".into()))
        );
    }

    #[test]
    fn control_frames_are_limited_to_125_bytes() {
        assert!(matches!(
            to_frame(Outgoing::Ping(Bytes::from(vec![0; 125]))),
            Ok((Kind::Ping, _))
        ));
        assert_eq!(
            to_frame(Outgoing::Ping(Bytes::from(vec![0; 126]))).err(),
            Some(SendFailure::ControlTooLarge)
        );
        assert_eq!(
            to_frame(Outgoing::Text(Bytes::from(vec![0xff]))).err(),
            Some(SendFailure::InvalidUtf8)
        );
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod socket_free;
