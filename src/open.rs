//! Opening a connection the blocking way (`wsopen`): TCP, TLS and the upgrade, each bounded by
//! its timeout, on a blocking socket; then the socket turns non-blocking for the session.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::error::{Error, UpgradeFailure, io_words};
use crate::handshake::{self, Verdict};
use crate::session::{Session, SessionConfig};
use crate::stream::Transport;
use crate::tls::{Connector, Handshake, TlsSettings};

/// Everything needed to open one connection.
#[derive(Debug, Clone)]
pub struct OpenSpec {
    pub endpoint: Endpoint,
    pub headers: Vec<(String, String)>,
    pub tls: TlsSettings,
    /// Bounds name resolution, TCP connect and the TLS handshake (LuWS: 15 s).
    pub connect_timeout: Duration,
    /// Bounds the HTTP upgrade (LuWS: 5 s).
    pub handshake_timeout: Duration,
    pub session: SessionConfig,
    /// Luup notification on data arrival (the `notify` option).
    pub notify: Option<crate::notify::NotifyTarget>,
}

impl OpenSpec {
    pub fn new(endpoint: Endpoint) -> OpenSpec {
        OpenSpec {
            endpoint,
            headers: Vec::new(),
            tls: TlsSettings::default(),
            connect_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(5),
            session: SessionConfig::default(),
            notify: None,
        }
    }
}

/// Opens a connection, blocking for at most the two timeouts. `tcp` is a socket the caller
/// already connected (the `connect` option); otherwise luws connects itself.
pub fn open_blocking(spec: &OpenSpec, tcp: Option<TcpStream>) -> Result<Session, Error> {
    let ep = &spec.endpoint;
    let connect_deadline = Instant::now() + spec.connect_timeout;
    let notify_addr = match &spec.notify {
        Some(t) => Some(crate::tcp::resolve_notify(t, connect_deadline)?),
        None => None,
    };
    let tcp = match tcp {
        Some(s) => s,
        None => crate::tcp::connect(ep, connect_deadline)?,
    };
    let io_fail = |e: std::io::Error| Error::Connect {
        host: ep.host.clone(),
        port: ep.port,
        reason: io_words(&e),
    };
    tcp.set_nonblocking(false).map_err(io_fail)?;

    let mut transport = if ep.secure {
        Transport::Tls(Box::new(tls_blocking(spec, tcp, connect_deadline)?))
    } else {
        Transport::Plain(tcp)
    };

    let leftover = upgrade_blocking(spec, &mut transport)?;
    let tcp = transport.tcp();
    tcp.set_read_timeout(None).map_err(io_fail)?;
    tcp.set_write_timeout(None).map_err(io_fail)?;
    tcp.set_nonblocking(true).map_err(io_fail)?;
    let mut session = Session::new(transport, leftover, spec.session.clone());
    if let (Some(t), Some(addr)) = (&spec.notify, notify_addr) {
        session.start_notifier(t.clone(), addr).map_err(io_fail)?;
    }
    Ok(session)
}

/// Socket timeouts cannot be zero; an expired deadline is reported by the caller instead.
fn left(deadline: Instant) -> Option<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    (!d.is_zero()).then_some(d)
}

fn tls_blocking(
    spec: &OpenSpec,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<crate::tls::TlsStream, Error> {
    let timeout = || Error::Tls("timeout".into());
    let connector = Connector::new(&spec.tls).map_err(Error::Tls)?;
    let arm = |s: &TcpStream| -> Result<(), Error> {
        let d = left(deadline).ok_or_else(timeout)?;
        s.set_read_timeout(Some(d))
            .and_then(|_| s.set_write_timeout(Some(d)))
            .map_err(|e| Error::Tls(io_words(&e)))
    };
    arm(&tcp)?;
    let mut step = connector
        .start(&spec.endpoint.host, tcp)
        .map_err(Error::Tls)?;
    loop {
        match step {
            Handshake::Done(s) => return Ok(s),
            // On a blocking socket, "would block" means the socket timeout fired.
            Handshake::Pending(mid) => {
                arm(mid.tcp())?;
                step = mid.resume().map_err(Error::Tls)?;
            }
        }
    }
}

/// Sends the upgrade request and reads the response; returns bytes read past the header.
fn upgrade_blocking(spec: &OpenSpec, t: &mut Transport) -> Result<Vec<u8>, Error> {
    let fail = |f: UpgradeFailure| Error::Upgrade(f);
    let deadline = Instant::now() + spec.handshake_timeout;
    let req = handshake::build_request(&spec.endpoint, &spec.headers)
        .map_err(|e| fail(UpgradeFailure::Io(io_words(&e))))?;
    let arm = |t: &Transport| -> Result<(), Error> {
        let d = left(deadline).ok_or(fail(UpgradeFailure::Timeout))?;
        t.tcp()
            .set_read_timeout(Some(d))
            .and_then(|_| t.tcp().set_write_timeout(Some(d)))
            .map_err(|e| fail(UpgradeFailure::Io(io_words(&e))))
    };
    let io_fail = |e: std::io::Error| match io_words(&e).as_str() {
        "timeout" => fail(UpgradeFailure::Timeout),
        "closed" => fail(UpgradeFailure::Closed),
        w => fail(UpgradeFailure::Io(w.to_string())),
    };
    arm(t)?;
    t.write_all(&req.bytes).map_err(io_fail)?;
    t.flush().map_err(io_fail)?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        arm(t)?;
        let n = t.read(&mut chunk).map_err(io_fail)?;
        if n == 0 {
            return Err(fail(UpgradeFailure::Closed));
        }
        buf.extend_from_slice(&chunk[..n]);
        match handshake::judge(&buf, &req).map_err(fail)? {
            Verdict::Incomplete => {}
            Verdict::Upgraded { header_len } => return Ok(buf.split_off(header_len)),
        }
    }
}
