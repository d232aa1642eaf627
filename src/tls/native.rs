//! The native-tls (system OpenSSL) backend. The handshake is driven by hand so it works on
//! blocking sockets with timeouts and on non-blocking ones alike (tungstenite's own TLS wrapper
//! panics when a non-blocking handshake would block).

use std::net::TcpStream;

use super::{TlsFailure, TlsSettings, TlsVersion, VerifyFailure, read_file, strip_source_paths};
use crate::error::io_words;

pub type TlsStream = native_tls::TlsStream<TcpStream>;

pub fn tcp_of(s: &TlsStream) -> &TcpStream {
    s.get_ref()
}

/// The server's certificate (DER), for `ssl_pin`.
pub fn leaf_certificate(s: &TlsStream) -> Option<Vec<u8>> {
    s.peer_certificate().ok().flatten()?.to_der().ok()
}

/// SHA-256 from the OpenSSL native-tls already links.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
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
        let mut roots = Vec::new();
        if let Some(path) = &s.cafile {
            let pem = read_file("ssl_cafile", path)?;
            roots = native_tls::Certificate::stack_from_pem(&pem)
                .map_err(|e| format!("bad ssl_cafile {path}: {}", openssl_text(&e.to_string())))?;
            if roots.is_empty() {
                return Err(format!("bad ssl_cafile {path}: no certificate found"));
            }
        }
        let mut identity = None;
        if let (Some(cert), Some(key)) = (&s.certificate, &s.key) {
            let cert_pem = read_file("ssl_certificate", cert)?;
            let key_pem = read_file("ssl_key", key)?;
            let id = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem).map_err(|e| {
                format!(
                    "bad ssl_certificate/ssl_key: {}",
                    openssl_text(&e.to_string())
                )
            })?;
            identity = Some(id);
        }
        let builder = |id: Option<&native_tls::Identity>| {
            let mut b = native_tls::TlsConnector::builder();
            b.danger_accept_invalid_certs(!s.verify);
            b.danger_accept_invalid_hostnames(!s.verify);
            b.min_protocol_version(s.min_version.map(version));
            b.max_protocol_version(s.max_version.map(version));
            for c in &roots {
                b.add_root_certificate(c.clone());
            }
            if let Some(id) = id {
                b.identity(id.clone());
            }
            b
        };
        match builder(identity.as_ref()).build() {
            Ok(c) => Ok(Connector(c)),
            Err(e) => {
                let why = openssl_text(&e.to_string());
                // The key and certificate are only checked against each other here (a key of
                // another certificate): name them when a connector without them builds.
                if identity.is_some() && builder(None).build().is_ok() {
                    Err(format!("bad ssl_certificate/ssl_key: {why}"))
                } else {
                    Err(why)
                }
            }
        }
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
        Err(native_tls::HandshakeError::Failure(e)) => Err(classify(&e).to_string()),
    }
}

/// A failed handshake in the shared words. A socket error comes as the `io::Error` it is;
/// anything else only as text (native-tls exposes neither the OpenSSL error queue nor the
/// verify result), which `classify_text` reads.
fn classify(e: &native_tls::Error) -> TlsFailure {
    use std::error::Error as _;
    if let Some(io) = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
        return match io_words(io).as_str() {
            "closed" => TlsFailure::Closed,
            words => TlsFailure::other(words),
        };
    }
    classify_text(&e.to_string())
}

/// Reads native-tls's text of a failed handshake: OpenSSL's error queue (see `entries`),
/// then, when verification failed, ` (<verify result>)`, e.g.
/// `error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify
/// failed:../ssl/statem/statem_clnt.c:1889: (certificate has expired)`.
fn classify_text(msg: &str) -> TlsFailure {
    let (stack, verify) = split_verify_result(msg);
    let (_, queue) = entries(stack);
    let verify_failed = if queue.is_empty() {
        stack.contains("certificate verify failed")
    } else {
        queue
            .iter()
            .any(|e| e.reason == "certificate verify failed")
    };
    if verify_failed {
        return TlsFailure::Verify(
            verify.map_or(VerifyFailure::Other(String::new()), verify_failure),
        );
    }
    if let Some(name) = queue.iter().find_map(alert_name) {
        return TlsFailure::Alert(name);
    }
    let eof = |t: &str| {
        t.eq_ignore_ascii_case("unexpected eof")
            || t.eq_ignore_ascii_case("unexpected eof while reading")
    };
    if eof(stack.trim()) || queue.iter().any(|e| eof(e.reason)) {
        return TlsFailure::Closed;
    }
    TlsFailure::other(&openssl_text(stack))
}

/// Splits off the ` (<verify result>)` native-tls appends when OpenSSL's verify result is not
/// OK. That result is also set when verification is off, so it counts only when the queue
/// says `certificate verify failed`.
fn split_verify_result(msg: &str) -> (&str, Option<&str>) {
    if let Some(body) = msg.strip_suffix(')') {
        if let Some(at) = body.rfind(" (") {
            let result = &body[at + 2..];
            if !result.is_empty() && !result.contains([':', '(']) {
                return (&msg[..at], Some(result));
            }
        }
    }
    (msg, None)
}

/// OpenSSL's verify results (`X509_verify_cert_error_string`, 1.1 and 3.x spellings) in the
/// shared words.
fn verify_failure(result: &str) -> VerifyFailure {
    let words = result
        .trim()
        .to_ascii_lowercase()
        .replace("self signed", "self-signed");
    match words.as_str() {
        "certificate has expired" => VerifyFailure::Expired,
        "certificate is not yet valid" => VerifyFailure::NotYetValid,
        "hostname mismatch" | "ip address mismatch" => VerifyFailure::HostnameMismatch,
        "self-signed certificate" => VerifyFailure::SelfSigned,
        "unable to get local issuer certificate"
        | "unable to get issuer certificate"
        | "self-signed certificate in certificate chain"
        | "unable to verify the first certificate" => VerifyFailure::UnknownIssuer,
        "certificate signature failure" | "unable to decrypt certificate's signature" => {
            VerifyFailure::BadSignature
        }
        "certificate revoked" => VerifyFailure::Revoked,
        "unsuitable certificate purpose" | "unsupported certificate purpose" => {
            VerifyFailure::InvalidPurpose
        }
        _ => VerifyFailure::Other(strip_source_paths(&words)),
    }
}

/// One entry of OpenSSL's error queue as the openssl crate prints it:
/// `error:<code>:<library>:<function>:<reason>:<source file>:<line>:<data>`.
struct Entry<'a> {
    reason: &'a str,
    data: &'a str,
}

/// The text before the first entry, and the entries (the openssl crate joins them with `, `).
fn entries(msg: &str) -> (&str, Vec<Entry<'_>>) {
    let b = msg.as_bytes();
    let starts: Vec<usize> = msg
        .match_indices("error:")
        .map(|(at, _)| at)
        .filter(|&at| {
            let code = at + 6..at + 14;
            b.get(code.clone())
                .is_some_and(|c| c.iter().all(u8::is_ascii_hexdigit))
                && b.get(code.end) == Some(&b':')
        })
        .collect();
    let Some(&first) = starts.first() else {
        return (msg, Vec::new());
    };
    let mut out = Vec::with_capacity(starts.len());
    for (k, &at) in starts.iter().enumerate() {
        let seg = match starts.get(k + 1) {
            Some(&next) => {
                let seg = &msg[at..next];
                seg.strip_suffix(", ").unwrap_or(seg)
            }
            None => &msg[at..],
        };
        let fields: Vec<&str> = seg.splitn(8, ':').collect();
        out.push(Entry {
            reason: fields.get(4).copied().unwrap_or("").trim(),
            data: fields.get(7).copied().unwrap_or("").trim(),
        });
    }
    (&msg[..first], out)
}

/// An OpenSSL message with each error-queue entry reduced to its reason: no codes, function
/// names or source paths.
fn openssl_text(msg: &str) -> String {
    let (before, queue) = entries(msg);
    if queue.is_empty() {
        return strip_source_paths(msg);
    }
    let mut reasons: Vec<&str> = Vec::with_capacity(queue.len());
    for e in &queue {
        if !e.reason.is_empty() && !reasons.contains(&e.reason) {
            reasons.push(e.reason);
        }
    }
    strip_source_paths(&format!("{before}{}", reasons.join(", ")))
}

/// A fatal alert from the peer: OpenSSL names it `sslv3 alert <name>`, `tlsv1 alert <name>`,
/// `tlsv13 alert <name>` or (alerts 110-115) `tlsv1 <name>`, with data `SSL alert number N`.
fn alert_name(e: &Entry<'_>) -> Option<String> {
    for prefix in ["sslv3 alert ", "tlsv1 alert ", "tlsv13 alert "] {
        if let Some(name) = e.reason.strip_prefix(prefix) {
            return Some(name.to_string());
        }
    }
    e.data.contains("SSL alert number").then(|| {
        e.reason
            .strip_prefix("tlsv1 ")
            .unwrap_or(e.reason)
            .to_string()
    })
}

/// Sends close_notify (best effort; the socket is about to close anyway).
pub fn shutdown(s: &mut TlsStream) -> std::io::Result<()> {
    s.shutdown()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What native-tls 0.2 printed for real handshakes against OpenSSL 3.0 (spec/tls_spec.lua's
    /// servers), and for OpenSSL 1.1 where its words differ.
    const VERIFY: &str = "error:0A000086:SSL routines:tls_post_process_server_certificate:\
                          certificate verify failed:../ssl/statem/statem_clnt.c:1889:";

    fn verify(result: &str) -> String {
        classify_text(&format!("{VERIFY} ({result})")).to_string()
    }

    #[test]
    fn verify_results_in_the_shared_words() {
        let cases = [
            ("certificate has expired", "certificate has expired"),
            (
                "certificate is not yet valid",
                "certificate is not yet valid",
            ),
            ("hostname mismatch", "hostname mismatch"),
            ("IP address mismatch", "hostname mismatch"),
            ("self-signed certificate", "self-signed certificate"),
            ("self signed certificate", "self-signed certificate"),
            ("unable to get local issuer certificate", "unknown issuer"),
            ("unable to get issuer certificate", "unknown issuer"),
            (
                "self-signed certificate in certificate chain",
                "unknown issuer",
            ),
            (
                "self signed certificate in certificate chain",
                "unknown issuer",
            ),
            ("unable to verify the first certificate", "unknown issuer"),
            ("certificate signature failure", "bad signature"),
            ("certificate revoked", "certificate revoked"),
            (
                "unsuitable certificate purpose",
                "unsuitable certificate purpose",
            ),
            (
                "unsupported certificate purpose",
                "unsuitable certificate purpose",
            ),
            (
                "path length constraint exceeded",
                "path length constraint exceeded",
            ),
        ];
        for (result, words) in cases {
            assert_eq!(
                verify(result),
                format!("certificate verify failed: {words}"),
                "{result}"
            );
        }
        // No verify result given: the bare words, never the queue.
        assert_eq!(
            classify_text(VERIFY).to_string(),
            "certificate verify failed"
        );
    }

    #[test]
    fn alerts_in_the_shared_words() {
        let alert = |reason: &str, n: u8| {
            classify_text(&format!(
                "error:0A000410:SSL routines:ssl3_read_bytes:{reason}:\
                 ../ssl/record/rec_layer_s3.c:1586:SSL alert number {n}"
            ))
            .to_string()
        };
        assert_eq!(
            alert("sslv3 alert handshake failure", 40),
            "tls alert: handshake failure"
        );
        assert_eq!(
            alert("tlsv1 alert protocol version", 70),
            "tls alert: protocol version"
        );
        assert_eq!(alert("tlsv1 alert unknown ca", 48), "tls alert: unknown ca");
        assert_eq!(
            alert("tlsv13 alert certificate required", 116),
            "tls alert: certificate required"
        );
        assert_eq!(
            alert("tlsv1 unrecognized name", 112),
            "tls alert: unrecognized name"
        );
        // A verify result left over from `ssl_verify = "none"` does not turn an alert into a
        // verification failure.
        assert_eq!(
            classify_text(
                "error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:\
                 ../ssl/record/rec_layer_s3.c:1586:SSL alert number 40 (self-signed certificate)"
            )
            .to_string(),
            "tls alert: handshake failure"
        );
    }

    #[test]
    fn other_failures_lose_codes_functions_and_paths() {
        assert_eq!(classify_text("unexpected EOF").to_string(), "closed");
        assert_eq!(
            classify_text(
                "error:0A000126:SSL routines:ssl3_read_n:unexpected eof while reading:\
                 ../ssl/record/rec_layer_s3.c:308:"
            ),
            TlsFailure::Closed
        );
        let wrong_version = "error:0A00010B:SSL routines:ssl3_get_record:wrong version number:\
                             ../ssl/record/ssl3_record.c:354:";
        assert_eq!(
            classify_text(wrong_version).to_string(),
            "wrong version number"
        );
        assert_eq!(
            classify_text(&format!("{wrong_version} (self-signed certificate)")).to_string(),
            "wrong version number"
        );
        // Two entries, one repeated; data such as `Expecting: CERTIFICATE` goes too.
        assert_eq!(
            openssl_text(
                "error:0480006C:PEM routines:get_name:no start line:\
                 ../crypto/pem/pem_lib.c:763:Expecting: CERTIFICATE, \
                 error:05800074:x509 certificate routines:X509_check_private_key:\
                 key values mismatch:../crypto/x509/x509_cmp.c:403:, \
                 error:0480006C:PEM routines:get_name:no start line:\
                 ../crypto/pem/pem_lib.c:763:"
            ),
            "no start line, key values mismatch"
        );
        // OpenSSL 1.1's layout, and unknown library/function/reason codes.
        assert_eq!(
            openssl_text(
                "error:1416F086:SSL routines:tls_process_server_certificate:\
                 certificate verify failed:ssl/statem/statem_clnt.c:1915:"
            ),
            "certificate verify failed"
        );
        assert_eq!(
            openssl_text("error:8000006F:lib(128):func(0):reason(111):crypto/bio/bio_sock.c:88:"),
            "reason(111)"
        );
        // Text around the queue stays; text without one only loses paths.
        assert_eq!(openssl_text("expected PKCS#8 PEM"), "expected PKCS#8 PEM");
        assert_eq!(openssl_text("OpenSSL error"), "OpenSSL error");
        for msg in [
            VERIFY,
            wrong_version,
            "error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:\
             ../ssl/record/rec_layer_s3.c:1586:SSL alert number 42",
        ] {
            let text = classify_text(msg).to_string();
            assert!(!text.contains(".c:") && !text.contains("error:"), "{text}");
        }
    }

    #[test]
    fn settings_errors_are_clean() {
        let dir = std::env::temp_dir();
        let write = |name: &str, text: &str| {
            let p = dir.join(format!("luws-native-{}-{name}", std::process::id()));
            std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
            p.to_string_lossy().into_owned()
        };
        let junk = write("junk.pem", "not a pem\n");
        let s = TlsSettings {
            verify: true,
            cafile: Some(junk.clone()),
            ..TlsSettings::default()
        };
        let e = Connector::new(&s).err().unwrap_or_default();
        assert!(e.starts_with(&format!("bad ssl_cafile {junk}: ")), "{e}");
        assert!(!e.contains(".c:") && !e.contains("error:"), "{e}");
    }
}
