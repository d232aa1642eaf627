//! Opening a connection without ever blocking — the one opener of both APIs (`wsopen` drives it
//! with a poll loop, `open`; verawebsockets' `loop()` steps it): name resolution on a helper
//! thread, a non-blocking TCP connect (or a socket the caller connected: the `connect` option),
//! the proxy exchange when there is a proxy (`tunnel`), TLS stepped through its mid-handshake
//! state (end to end, through the tunnel), and the upgrade written and read as the socket
//! allows. The owner calls `advance` whenever `interest` says the socket is ready (or the
//! deadline passes).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Instant;

use socket2::{Domain, Socket, Type};

use crate::error::{Error, IoFailure, ProxyFailure, UpgradeFailure};
use crate::handshake::{self, Request, Verdict};
use crate::proxy::{Proxy, ProxyKind};
use crate::session::Session;
use crate::spec::OpenSpec;
use crate::stream::NoBlock;
use crate::sys::Interest;
use crate::tcp;
use crate::tls::{Connector, Handshake, MidHandshake, TlsStream};
use crate::tunnel::{Target, Tunnel, Want};
use crate::wire::{Transport, Wire};

/// Where the opening stands.
enum Stage {
    /// A helper thread resolves the name; it writes a byte to `wake` when done.
    Resolving {
        answer: mpsc::Receiver<Resolved>,
        wake: UnixStream,
    },
    /// A TCP connect (to the peer, or to the proxy) is in flight; `rest` are the addresses to
    /// try next.
    Tcp {
        sock: Socket,
        rest: Vec<SocketAddr>,
    },
    /// Asking the proxy for a tunnel.
    Tunnel {
        tcp: TcpStream,
        tunnel: Box<Tunnel>,
    },
    Tls(Box<MidHandshake>),
    /// Writing the request (`sent` bytes so far), then reading the response into `buf`.
    Upgrade {
        transport: Transport,
        req: Request,
        sent: usize,
        buf: Vec<u8>,
    },
    /// Failed before anything started (`proxy = "env"` found a bad value).
    Failed(Error),
    /// Finished or failed; nothing more to do.
    Over,
}

/// A lookup's answer.
type Lookup = Option<Result<Vec<SocketAddr>, IoFailure>>;

/// What the resolver found: where to connect (the peer, or the proxy; nothing when the caller
/// brought a socket), the `notify` target, and the peer's address for a `socks5` proxy (which
/// resolves nothing itself).
struct Resolved {
    first_hop: Lookup,
    notify: Lookup,
    socks_target: Lookup,
}

/// A connection being opened.
pub struct Connecting {
    spec: OpenSpec,
    stage: Stage,
    /// The `notify` target's address, once resolved.
    notify_addr: Option<SocketAddr>,
    /// A socket the caller connected (the `connect` option), used once names are resolved.
    socket: Option<TcpStream>,
    connect_deadline: Instant,
    handshake_deadline: Option<Instant>,
    /// Redirects still allowed, and the URLs visited (a loop is an error).
    redirects_left: u32,
    visited: Vec<String>,
    /// The caller brought the socket: it leads to one place, so redirects are not followed.
    socket_given: bool,
    /// The proxy of the current hop, if any.
    proxy: Option<Proxy>,
    /// Where a `socks5` proxy is to connect (resolved here).
    socks_target: Option<SocketAddr>,
}

/// What `advance` achieved.
pub enum Progress {
    Pending,
    Ready(Box<Session>),
}

impl Connecting {
    /// Starts opening; returns at once. `socket`: a TCP connection the caller made (the
    /// `connect` option), which enters at the TLS or upgrade stage.
    pub fn start(spec: OpenSpec, socket: Option<TcpStream>) -> Connecting {
        let mut c = Connecting {
            connect_deadline: Instant::now() + spec.connect_timeout,
            redirects_left: spec.follow_redirects,
            visited: vec![spec.endpoint.url()],
            socket_given: socket.is_some(),
            spec,
            stage: Stage::Over,
            notify_addr: None,
            socket,
            handshake_deadline: None,
            proxy: None,
            socks_target: None,
        };
        c.stage = c.resolving();
        c
    }

    /// The first stage: the names to look up (the peer's or its proxy's, unless the caller
    /// brought a socket; the `notify` target's; the peer's for a `socks5` proxy).
    fn resolving(&mut self) -> Stage {
        let spec = &self.spec;
        let peer_too = !self.socket_given;
        self.proxy = match peer_too
            .then(|| {
                spec.proxy
                    .for_endpoint(&spec.endpoint, |k| std::env::var(k).ok())
            })
            .transpose()
        {
            Ok(p) => p.flatten(),
            Err(e) => return Stage::Failed(Error::Proxy(e)),
        };
        self.socks_target = None;
        let target = (spec.endpoint.host.clone(), spec.endpoint.port);
        let (first_hop, socks_target) = match &self.proxy {
            None => (peer_too.then_some(target), None),
            Some(p) => (
                Some((p.host.clone(), p.port)),
                (p.kind == ProxyKind::Socks5).then_some(target),
            ),
        };
        let notify = spec.notify.as_ref().map(|t| (t.host.clone(), t.port));
        let literal = |h: &Option<(String, u16)>| {
            h.as_ref()
                .is_none_or(|(h, _)| h.parse::<std::net::IpAddr>().is_ok())
        };
        let inline = literal(&first_hop) && literal(&notify) && literal(&socks_target);
        let (tx, answer) = mpsc::channel();
        match UnixStream::pair() {
            Ok((wake, signal)) => {
                let _ = wake.set_nonblocking(true);
                // The thread never touches Lua; if the opening is abandoned it just finds the
                // channel (and the wake socket) closed. The library is kept resident, so it
                // can outlive the state.
                let resolve = move || {
                    let look_up =
                        |h: &Option<(String, u16)>| h.as_ref().map(|(h, p)| tcp::resolve(h, *p));
                    let _ = tx.send(Resolved {
                        first_hop: look_up(&first_hop),
                        notify: look_up(&notify),
                        socks_target: look_up(&socks_target),
                    });
                    crate::sys::poke(signal.as_raw_fd());
                };
                if inline {
                    resolve(); // an IP literal needs no resolver thread
                    Stage::Resolving { answer, wake }
                } else {
                    match std::thread::Builder::new()
                        .name("luws-resolve".into())
                        .spawn(resolve)
                    {
                        Ok(_) => Stage::Resolving { answer, wake },
                        Err(_) => Stage::Over,
                    }
                }
            }
            Err(_) => Stage::Over,
        }
    }

    /// Follows a redirect: the same pipeline from the start, towards `Location`, with fresh
    /// deadlines. Credentials stay with their host (RFC 9110 §15.4: a client must not leak
    /// them elsewhere).
    fn follow(&mut self, refusal: &crate::response::Response) -> Result<Progress, Error> {
        let fail = |f: UpgradeFailure| Err(Error::Upgrade(f));
        let location = refusal.header("location").unwrap_or("").to_string();
        if self.redirects_left == 0 {
            return fail(UpgradeFailure::TooManyRedirects);
        }
        let Some(next) = self.spec.endpoint.redirected(&location) else {
            return fail(UpgradeFailure::BadRedirect(
                location.chars().take(200).collect(),
            ));
        };
        let url = next.url();
        if self.visited.contains(&url) {
            return fail(UpgradeFailure::RedirectLoop);
        }
        self.visited.push(url);
        self.redirects_left -= 1;
        let same_host = next.host.eq_ignore_ascii_case(&self.spec.endpoint.host);
        let mut next = next;
        if same_host {
            next.userinfo = next.userinfo.or(self.spec.endpoint.userinfo.take());
        } else {
            self.spec
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        }
        self.spec.endpoint = next;
        self.connect_deadline = Instant::now() + self.spec.connect_timeout;
        self.handshake_deadline = None;
        self.stage = self.resolving();
        Ok(Progress::Pending)
    }

    /// Whether a refused upgrade is a redirect to follow (`follow_redirects`).
    fn is_redirect(&self, r: &crate::response::Response) -> bool {
        self.spec.follow_redirects > 0
            && !self.socket_given
            && matches!(r.status, 301 | 302 | 303 | 307 | 308)
    }

    /// The descriptor and readiness to wait for, if any.
    pub fn interest(&self) -> Option<(RawFd, Interest)> {
        match &self.stage {
            Stage::Resolving { wake, .. } => Some((wake.as_raw_fd(), Interest::Read)),
            Stage::Tcp { sock, .. } => Some((sock.as_raw_fd(), Interest::Write)),
            Stage::Tunnel { tcp, tunnel } => Some((
                tcp.as_raw_fd(),
                match tunnel.want() {
                    Want::Write => Interest::Write,
                    _ => Interest::Read,
                },
            )),
            Stage::Tls(mid) => Some((mid.tcp().as_raw_fd(), Interest::Read)),
            Stage::Upgrade {
                transport,
                req,
                sent,
                ..
            } => Some((
                transport.raw_fd(),
                if *sent < req.bytes.len() {
                    Interest::Write
                } else {
                    Interest::Read
                },
            )),
            Stage::Failed(_) | Stage::Over => None,
        }
    }

    /// What the owner waits for: the current step's descriptor and its deadline.
    pub fn poll_info(&self) -> Option<crate::poll::PollInfo> {
        self.interest().map(|(fd, interest)| crate::poll::PollInfo {
            fd,
            interest,
            dirty: false,
            due: Some(self.deadline()),
        })
    }

    /// When the current step times out.
    pub fn deadline(&self) -> Instant {
        self.handshake_deadline.unwrap_or(self.connect_deadline)
    }

    /// Makes all the progress possible without blocking.
    pub fn advance(&mut self) -> Result<Progress, Error> {
        let r = self.step_all();
        if r.is_err() {
            self.stage = Stage::Over;
        }
        r
    }

    fn step_all(&mut self) -> Result<Progress, Error> {
        loop {
            let now = Instant::now();
            let stage = std::mem::replace(&mut self.stage, Stage::Over);
            let next = match stage {
                Stage::Resolving { answer, wake } => match answer.try_recv() {
                    Ok(found) => {
                        if let (Some(t), Some(found)) = (&self.spec.notify, found.notify) {
                            self.notify_addr = Some(tcp::first_address(t, found)?);
                        }
                        match found.socks_target {
                            Some(Ok(addrs)) => self.socks_target = addrs.into_iter().next(),
                            Some(Err(reason)) => return Err(self.peer_error(reason)),
                            None => {}
                        }
                        match (self.socket.take(), found.first_hop) {
                            (Some(tcp), _) => self.connected(tcp)?,
                            (None, Some(Ok(addrs))) => self.connect_next(addrs)?,
                            (None, Some(Err(reason))) => return Err(self.connect_error(reason)),
                            (None, None) => return Err(self.connect_error(IoFailure::HostNotFound)),
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => {
                        if now >= self.connect_deadline {
                            return Err(self.connect_error(IoFailure::Timeout));
                        }
                        self.stage = Stage::Resolving { answer, wake };
                        return Ok(Progress::Pending);
                    }
                    Err(mpsc::TryRecvError::Disconnected) => {
                        return Err(self.connect_error(IoFailure::HostNotFound));
                    }
                },
                Stage::Tcp { sock, rest } => {
                    if let Some(e) = sock.take_error().ok().flatten() {
                        self.retry_or_fail(rest, IoFailure::from(&e))?
                    } else if sock.peer_addr().is_ok() {
                        self.connected(TcpStream::from(sock))?
                    } else if now >= self.connect_deadline {
                        return Err(self.connect_error(IoFailure::Timeout));
                    } else {
                        self.stage = Stage::Tcp { sock, rest };
                        return Ok(Progress::Pending);
                    }
                }
                Stage::Tunnel { tcp, tunnel } => match self.step_tunnel(tcp, tunnel)? {
                    Some(next) => next,
                    None => return Ok(Progress::Pending),
                },
                Stage::Tls(mid) => {
                    if now >= self.connect_deadline {
                        return Err(Error::Tls("timeout".into()));
                    }
                    match mid.resume().map_err(Error::Tls)? {
                        Handshake::Done(s) => self.secured(s)?,
                        Handshake::Pending(mid) => {
                            self.stage = Stage::Tls(Box::new(mid));
                            return Ok(Progress::Pending);
                        }
                    }
                }
                Stage::Upgrade {
                    transport,
                    req,
                    sent,
                    buf,
                } => return self.step_upgrade(transport, req, sent, buf),
                Stage::Failed(e) => return Err(e),
                // The resolver thread or its wake-up socket could not be made.
                Stage::Over => return Err(self.connect_error(IoFailure::HostNotFound)),
            };
            self.stage = next;
        }
    }

    /// A failure to reach the first hop: the peer, or the proxy.
    fn connect_error(&self, reason: IoFailure) -> Error {
        match &self.proxy {
            Some(p) => Error::Proxy(ProxyFailure::Connect {
                host: p.host.clone(),
                port: p.port,
                reason,
            }),
            None => self.peer_error(reason),
        }
    }

    /// A failure to reach the peer itself (or to resolve its name).
    fn peer_error(&self, reason: IoFailure) -> Error {
        Error::Connect {
            host: self.spec.endpoint.host.clone(),
            port: self.spec.endpoint.port,
            reason,
        }
    }

    /// Writes and reads the proxy exchange as far as the socket allows; `Some(stage)` once the
    /// tunnel is open, `None` to wait.
    fn step_tunnel(
        &mut self,
        mut tcp: TcpStream,
        mut tunnel: Box<Tunnel>,
    ) -> Result<Option<Stage>, Error> {
        let fail = |f: ProxyFailure| Err(Error::Proxy(f));
        let io_fail = |e: io::Error| match IoFailure::from(&e) {
            IoFailure::Closed => ProxyFailure::Closed,
            f => ProxyFailure::Io(f),
        };
        loop {
            match tunnel.want() {
                Want::Write => match tcp.write(tunnel.output()).no_block() {
                    Ok(Some(n)) => tunnel.wrote(n),
                    Ok(None) => break,
                    Err(e) => return fail(io_fail(e)),
                },
                Want::Read(n) => {
                    let mut chunk = [0u8; 8];
                    let n = n.min(chunk.len());
                    match tcp.read(&mut chunk[..n]).no_block() {
                        Ok(Some(0)) => return fail(ProxyFailure::Closed),
                        Ok(Some(got)) => {
                            tunnel.received(&chunk[..got]).map_err(Error::Proxy)?;
                        }
                        Ok(None) => break,
                        Err(e) => return fail(io_fail(e)),
                    }
                }
                Want::Done => return self.through(tcp).map(Some),
            }
        }
        if Instant::now() >= self.connect_deadline {
            return fail(ProxyFailure::Timeout);
        }
        self.stage = Stage::Tunnel { tcp, tunnel };
        Ok(None)
    }

    /// Starts a non-blocking connect to the first address that does not fail at once.
    fn connect_next(&mut self, mut addrs: Vec<SocketAddr>) -> Result<Stage, Error> {
        addrs.reverse();
        let mut last = IoFailure::Refused;
        while let Some(addr) = addrs.pop() {
            let sock = match Socket::new(Domain::for_address(addr), Type::STREAM, None) {
                Ok(s) => s,
                Err(e) => {
                    last = IoFailure::from(&e);
                    continue;
                }
            };
            if let Err(e) = sock.set_nonblocking(true) {
                last = IoFailure::from(&e);
                continue;
            }
            match sock.connect(&addr.into()) {
                Ok(()) => return self.connected(TcpStream::from(sock)),
                Err(e)
                    if e.raw_os_error() == Some(libc::EINPROGRESS)
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    addrs.reverse();
                    return Ok(Stage::Tcp { sock, rest: addrs });
                }
                Err(e) => last = IoFailure::from(&e),
            }
        }
        Err(self.connect_error(last))
    }

    fn retry_or_fail(&mut self, rest: Vec<SocketAddr>, reason: IoFailure) -> Result<Stage, Error> {
        if rest.is_empty() {
            Err(self.connect_error(reason))
        } else {
            self.connect_next(rest)
        }
    }

    /// Connected to the first hop: ask the proxy for a tunnel, or go on to the peer.
    fn connected(&mut self, tcp: TcpStream) -> Result<Stage, Error> {
        tcp::tune(&tcp);
        tcp.set_nonblocking(true)
            .map_err(|e| self.connect_error(IoFailure::from(&e)))?;
        if self.socket_given {
            return self.through(tcp);
        }
        let Some(proxy) = &self.proxy else {
            return self.through(tcp);
        };
        let target = match self.socks_target {
            Some(addr) => Target::Addr(addr),
            None => Target::Name(self.spec.endpoint.host.clone(), self.spec.endpoint.port),
        };
        let tunnel = Tunnel::new(proxy, &target).map_err(Error::Proxy)?;
        Ok(Stage::Tunnel {
            tcp,
            tunnel: Box::new(tunnel),
        })
    }

    /// A connection that leads to the peer: TLS (for `wss`), then the upgrade.
    fn through(&mut self, tcp: TcpStream) -> Result<Stage, Error> {
        if !self.spec.endpoint.secure {
            return self.upgrade(Transport::Plain(tcp));
        }
        let connector = Connector::new(&self.spec.tls).map_err(Error::Tls)?;
        let name = self
            .spec
            .tls
            .servername
            .as_deref()
            .unwrap_or(&self.spec.endpoint.host);
        match connector.start(name, tcp).map_err(Error::Tls)? {
            Handshake::Done(s) => self.secured(s),
            Handshake::Pending(mid) => Ok(Stage::Tls(Box::new(mid))),
        }
    }

    /// TLS is up: the pinned key must match (`ssl_pin`) before a byte is sent.
    fn secured(&mut self, s: TlsStream) -> Result<Stage, Error> {
        if !self.spec.tls.pins.is_empty() {
            crate::tls::check_pin(&s, &self.spec.tls.pins)
                .map_err(|f| Error::Tls(f.to_string()))?;
        }
        self.upgrade(Transport::Tls(Box::new(s)))
    }

    fn upgrade(&mut self, transport: Transport) -> Result<Stage, Error> {
        self.handshake_deadline = Some(Instant::now() + self.spec.handshake_timeout);
        let mut req = handshake::build_request(&self.spec.endpoint, &self.spec.headers)
            .map_err(|e| Error::Upgrade(UpgradeFailure::Io(IoFailure::from(&e))))?;
        if let Some(offer) = &self.spec.deflate {
            req.offer_deflate(offer.clone());
        }
        Ok(Stage::Upgrade {
            transport,
            req,
            sent: 0,
            buf: Vec::new(),
        })
    }

    fn step_upgrade(
        &mut self,
        mut transport: Transport,
        req: Request,
        mut sent: usize,
        mut buf: Vec<u8>,
    ) -> Result<Progress, Error> {
        let fail = |f: UpgradeFailure| Error::Upgrade(f);
        let io_fail = |e: io::Error| {
            fail(match IoFailure::from(&e) {
                IoFailure::Closed => UpgradeFailure::Closed,
                IoFailure::Timeout => UpgradeFailure::Timeout,
                f => UpgradeFailure::Io(f),
            })
        };
        while sent < req.bytes.len() {
            match transport
                .write(&req.bytes[sent..])
                .no_block()
                .map_err(io_fail)?
            {
                Some(n) => sent += n,
                None => break,
            }
        }
        if sent == req.bytes.len() {
            let _ = transport.flush();
            let mut chunk = [0u8; 1024];
            loop {
                match transport.read(&mut chunk).no_block().map_err(io_fail)? {
                    Some(0) => return Err(fail(UpgradeFailure::Closed)),
                    Some(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        let verdict = match handshake::judge(&buf, &req) {
                            Err(UpgradeFailure::Refused(r)) if self.is_redirect(&r) => {
                                return self.follow(&r);
                            }
                            other => other.map_err(fail)?,
                        };
                        if let Verdict::Upgraded {
                            header_len,
                            response,
                            deflate,
                        } = verdict
                        {
                            let leftover = buf.split_off(header_len);
                            let mut config = self.spec.session.clone();
                            config.deflate = deflate;
                            let mut session = Session::new(transport, leftover, config);
                            session.set_response(*response);
                            session.set_url(self.spec.endpoint.url());
                            if let (Some(t), Some(addr)) = (&self.spec.notify, self.notify_addr) {
                                // As wsopen reports it: the connection could not be set up.
                                session
                                    .start_notifier(
                                        t.clone(),
                                        addr,
                                        self.spec.announce,
                                        self.spec.notify_gate.clone(),
                                    )
                                    .map_err(|e| self.connect_error(IoFailure::from(&e)))?;
                            }
                            return Ok(Progress::Ready(Box::new(session)));
                        }
                    }
                    None => break,
                }
            }
        }
        if Instant::now() >= self.deadline() {
            return Err(fail(UpgradeFailure::Timeout));
        }
        self.stage = Stage::Upgrade {
            transport,
            req,
            sent,
            buf,
        };
        Ok(Progress::Pending)
    }
}
