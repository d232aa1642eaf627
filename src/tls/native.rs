//! The native-tls (system OpenSSL) backend. The handshake is driven by hand so it works on
//! blocking sockets with timeouts and on non-blocking ones alike (tungstenite's own TLS wrapper
//! panics when a non-blocking handshake would block).

use std::net::TcpStream;

use super::{TlsSettings, TlsVersion, read_file};

pub type TlsStream = native_tls::TlsStream<TcpStream>;

pub fn tcp_of(s: &TlsStream) -> &TcpStream {
    s.get_ref()
}

/// A configured TLS client, built once per connection from `TlsSettings`.
pub struct Connector(native_tls::TlsConnector);

/// A handshake that finished, or one waiting for the socket.
pub enum Handshake {
    Done(TlsStream),
    Pending(MidHandshake),
}

/// A handshake interrupted by `WouldBlock`; resume it when the socket is ready.
pub struct MidHandshake(native_tls::MidHandshakeTlsStream<TcpStream>);

fn version(v: TlsVersion) -> native_tls::Protocol {
    match v {
        TlsVersion::V1_0 => native_tls::Protocol::Tlsv10,
        TlsVersion::V1_1 => native_tls::Protocol::Tlsv11,
        TlsVersion::V1_2 => native_tls::Protocol::Tlsv12,
        TlsVersion::V1_3 => native_tls::Protocol::Tlsv13,
    }
}

/// Building a connector reads the system CA bundle (tens of ms of CPU and ~1 MB per
/// connector on a small box), so recent ones are kept, keyed by the settings and the
/// modification times of the files they name.
type CacheKey = (TlsSettings, Vec<Option<std::time::SystemTime>>);
static CACHE: std::sync::Mutex<Vec<(CacheKey, native_tls::TlsConnector)>> =
    std::sync::Mutex::new(Vec::new());
const CACHE_SIZE: usize = 4;

fn cache_key(s: &TlsSettings) -> CacheKey {
    let mtime = |p: &Option<String>| {
        p.as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    };
    (
        s.clone(),
        vec![mtime(&s.cafile), mtime(&s.certificate), mtime(&s.key)],
    )
}

impl Connector {
    pub fn new(s: &TlsSettings) -> Result<Connector, String> {
        let key = cache_key(s);
        if let Ok(cache) = CACHE.lock() {
            if let Some((_, c)) = cache.iter().find(|(k, _)| *k == key) {
                return Ok(Connector(c.clone()));
            }
        }
        let c = Self::build(s)?;
        if let Ok(mut cache) = CACHE.lock() {
            if cache.len() >= CACHE_SIZE {
                cache.remove(0);
            }
            cache.push((key, c.0.clone()));
        }
        Ok(c)
    }

    fn build(s: &TlsSettings) -> Result<Connector, String> {
        s.validate()?;
        let mut b = native_tls::TlsConnector::builder();
        b.danger_accept_invalid_certs(!s.verify);
        b.danger_accept_invalid_hostnames(!s.verify);
        b.min_protocol_version(s.min_version.map(version));
        b.max_protocol_version(s.max_version.map(version));
        if let Some(path) = &s.cafile {
            let pem = read_file("ssl_cafile", path)?;
            let certs = native_tls::Certificate::stack_from_pem(&pem)
                .map_err(|e| format!("bad ssl_cafile {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("bad ssl_cafile {path}: no certificate found"));
            }
            for c in certs {
                b.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&s.certificate, &s.key) {
            let cert_pem = read_file("ssl_certificate", cert)?;
            let key_pem = read_file("ssl_key", key)?;
            let id = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem)
                .map_err(|e| format!("bad ssl_certificate/ssl_key: {e}"))?;
            b.identity(id);
        }
        b.build().map(Connector).map_err(|e| e.to_string())
    }

    /// Starts the handshake. SNI is sent for host names (not for IP literals, per RFC 6066).
    pub fn start(&self, host: &str, tcp: TcpStream) -> Result<Handshake, String> {
        settle(self.0.connect(host, tcp))
    }
}

impl MidHandshake {
    pub fn resume(self) -> Result<Handshake, String> {
        settle(self.0.handshake())
    }

    pub fn tcp(&self) -> &TcpStream {
        self.0.get_ref()
    }
}

fn settle(
    r: Result<TlsStream, native_tls::HandshakeError<TcpStream>>,
) -> Result<Handshake, String> {
    match r {
        Ok(s) => Ok(Handshake::Done(s)),
        Err(native_tls::HandshakeError::WouldBlock(mid)) => {
            Ok(Handshake::Pending(MidHandshake(mid)))
        }
        Err(native_tls::HandshakeError::Failure(e)) => Err(tidy(&e.to_string())),
    }
}

/// OpenSSL's messages carry a verbose error stack; keep the part a user can act on.
fn tidy(msg: &str) -> String {
    if msg.contains("certificate verify failed") {
        let detail = msg
            .split("verify result: ")
            .nth(1)
            .map(|s| s.trim_end_matches(')').trim())
            .unwrap_or("");
        if detail.is_empty() {
            "certificate verify failed".into()
        } else {
            format!("certificate verify failed ({detail})")
        }
    } else if msg.contains("unexpected EOF") || msg.contains("Connection reset") {
        "closed".into()
    } else {
        msg.to_string()
    }
}

/// Sends close_notify (best effort; the socket is about to close anyway).
pub fn shutdown(s: &mut TlsStream) -> std::io::Result<()> {
    s.shutdown()
}
