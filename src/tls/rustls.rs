//! The rustls backend: self-contained TLS (ring crypto, webpki verification), for release
//! artifacts that cannot count on the target's OpenSSL. Same interface as `native`; the
//! handshake is driven by hand so it works on blocking sockets with timeouts and on
//! non-blocking ones alike.

use std::io;
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    OtherError, RootCertStore, SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::{TlsFailure, TlsSettings, TlsVersion, VerifyFailure, read_file};
use crate::error::io_words;

pub type TlsStream = rustls::StreamOwned<ClientConnection, TcpStream>;

/// The server's certificate (DER), for `ssl_pin`.
pub fn leaf_certificate(s: &TlsStream) -> Option<Vec<u8>> {
    Some(s.conn.peer_certificates()?.first()?.to_vec())
}

/// SHA-256 from ring, which rustls already links.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn tcp_of(s: &TlsStream) -> &TcpStream {
    s.get_ref()
}

/// A configured TLS client, built once per connection from `TlsSettings`.
pub struct Connector(Arc<ClientConfig>);

/// A handshake that finished, or one waiting for the socket.
pub enum Handshake {
    Done(TlsStream),
    Pending(MidHandshake),
}

/// A handshake interrupted by `WouldBlock` (or a socket timeout); resume it when the socket
/// is ready.
pub struct MidHandshake {
    conn: ClientConnection,
    tcp: TcpStream,
}

/// Where Linux distributions (and OpenWrt, the base of Vera firmware) keep the CA bundle;
/// `SSL_CERT_FILE` goes first, as with OpenSSL.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The versions a settings range allows, in rustls's terms. rustls has no TLS 1.0/1.1, so a
/// range that only allows those cannot be honoured.
fn versions(s: &TlsSettings) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let lo = s.min_version.unwrap_or(TlsVersion::V1_0);
    let hi = s.max_version.unwrap_or(TlsVersion::V1_3);
    let allowed = |v| lo <= v && v <= hi;
    let mut out = Vec::with_capacity(2);
    if allowed(TlsVersion::V1_3) {
        out.push(&rustls::version::TLS13);
    }
    if allowed(TlsVersion::V1_2) {
        out.push(&rustls::version::TLS12);
    }
    if out.is_empty() {
        return Err("rustls supports only TLS 1.2 and 1.3".into());
    }
    Ok(out)
}

/// Certificates of a PEM file the user named; an empty or malformed file is an error.
fn user_certs(what: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad {what} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("bad {what} {path}: no certificate found"));
    }
    Ok(certs)
}

/// Trust anchors from the first readable bundle of `paths` holding any certificate; when there
/// is none (bare firmware without a CA package), the compiled-in Mozilla set if the build has
/// it (`bundled-roots`; left out of the Vera build for size: give `ssl_cafile` there).
fn roots_from(paths: &[String]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for path in paths {
        let Ok(pem) = std::fs::read(path) else {
            continue;
        };
        // A bundle may hold entries webpki cannot use; skip those, keep the rest.
        let (added, _) = roots
            .add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        if added > 0 {
            return roots;
        }
    }
    #[cfg(feature = "bundled-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// The system roots, parsed once per process: a bundle holds ~150 certificates, too many to
/// re-read for every connection on a small controller.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let env = std::env::var("SSL_CERT_FILE")
            .ok()
            .filter(|p| !p.is_empty());
        let paths: Vec<String> = env
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(|p| p.to_string()))
            .collect();
        roots_from(&paths)
    })
}

/// `ssl_verify = "peer"`: webpki verification against the roots, plus one case OpenSSL
/// allows and webpki does not: a server certificate listed verbatim in `ssl_cafile` that is
/// itself a CA certificate. That is what `openssl req -x509` makes by default, i.e. the
/// usual self-signed hub certificate a user pins with `ssl_cafile`.
#[derive(Debug)]
struct PinningVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

/// webpki's refusal of a CA certificate as the server's own. It checks the validity dates
/// before this, so a certificate refused for this reason alone is within its dates. By type,
/// not by text: webpki's Display is its Debug, which the Vera build compiles away.
fn ca_used_as_end_entity(e: &rustls::Error) -> bool {
    matches!(e, rustls::Error::InvalidCertificate(CertificateError::Other(o))
        if matches!(o.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)))
}

/// webpki's `UnknownIssuer` (or `CaUsedAsEndEntity`, for the usual CA:TRUE self-signed hub
/// certificate) for a server certificate that names itself as its issuer: OpenSSL calls that
/// `self-signed certificate`, and so does luws, on both backends.
#[derive(Debug)]
struct SelfSigned;

impl std::fmt::Display for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("self-signed certificate")
    }
}

impl std::error::Error for SelfSigned {}

fn self_signed() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(SelfSigned))))
}

/// One DER element: its tag, its whole encoding, its contents, and the input after it.
struct Der<'a> {
    tag: u8,
    whole: &'a [u8],
    contents: &'a [u8],
    rest: &'a [u8],
}

/// The DER element at the start of `input`. Definite lengths only (DER), up to 4 length bytes.
fn der_element(input: &[u8]) -> Option<Der<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some(Der {
        tag,
        whole: &input[..header + len],
        contents: &rest[..len],
        rest: &rest[len..],
    })
}

/// Whether a certificate's issuer and subject names are the same (byte for byte). Reads
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity, subject, … }, … }` (RFC 5280 §4.1).
fn self_issued(cert: &[u8]) -> bool {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    let sequence = |input| der_element(input).filter(|e| e.tag == SEQUENCE);
    let names = || -> Option<(&[u8], &[u8])> {
        let tbs = sequence(sequence(cert)?.contents)?.contents;
        let mut field = der_element(tbs)?;
        if field.tag == VERSION {
            field = der_element(field.rest)?; // the serial number
        }
        let algorithm = der_element(field.rest)?;
        let issuer = sequence(algorithm.rest)?;
        let validity = der_element(issuer.rest)?;
        let subject = sequence(validity.rest)?;
        Some((issuer.whole, subject.whole))
    };
    names().is_some_and(|(issuer, subject)| issuer == subject)
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(e) if ca_used_as_end_entity(&e) && self.pinned.iter().any(|p| p == end_entity) => {
                // Trusted by the user as is; the host name must still match.
                let cert = ParsedCertificate::try_from(end_entity)?;
                verify_server_name(&cert, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if self_issued(end_entity) =>
            {
                Err(self_signed())
            }
            Err(e) if ca_used_as_end_entity(&e) && self_issued(end_entity) => Err(self_signed()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `ssl_verify = "none"`: any certificate chain and name are accepted, but the handshake
/// signatures are still checked, so the peer must hold the key of the certificate it shows
/// (otherwise the session keys would not be bound to anything at all).
#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

impl Connector {
    pub fn new(s: &TlsSettings) -> Result<Connector, String> {
        s.validate()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(s)?)
            .map_err(|e| e.to_string())?;
        // Read the CA file even when not verifying, so a wrong path is reported the same way
        // whatever `ssl_verify` says (as the native backend does).
        let extra = match &s.cafile {
            Some(path) => user_certs("ssl_cafile", path)?,
            None => Vec::new(),
        };
        let builder = if s.verify {
            let mut roots = system_roots().clone();
            for c in &extra {
                roots.add(c.clone()).map_err(|e| {
                    let why = match &e {
                        rustls::Error::InvalidCertificate(c) => certificate_words(c).to_string(),
                        other => describe(other).to_string(),
                    };
                    format!(
                        "bad ssl_cafile {}: {why}",
                        s.cafile.as_deref().unwrap_or("")
                    )
                })?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
            let verifier = PinningVerifier {
                webpki,
                pinned: extra,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            let verifier = AcceptAnyCert(provider.signature_verification_algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        };
        let config = match (&s.certificate, &s.key) {
            (Some(cert), Some(key)) => {
                let chain = user_certs("ssl_certificate", cert)?;
                let key_pem = read_file("ssl_key", key)?;
                // PKCS#8, PKCS#1 (RSA) and SEC1 (EC) are told apart by the PEM label.
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| format!("bad ssl_key {key}: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("bad ssl_certificate/ssl_key: {}", key_words(&e)))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Connector(Arc::new(config)))
    }

    /// Starts the handshake. SNI is sent for host names; IP literals are checked against the
    /// certificate's IP addresses and send no SNI (RFC 6066).
    pub fn start(&self, host: &str, tcp: TcpStream) -> Result<Handshake, String> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("invalid host name '{host}'"))?;
        let conn =
            ClientConnection::new(self.0.clone(), name).map_err(|e| describe(&e).to_string())?;
        drive(MidHandshake { conn, tcp })
    }
}

impl MidHandshake {
    pub fn resume(self) -> Result<Handshake, String> {
        drive(self)
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

/// "Try again later": a non-blocking socket not ready, or a blocking one's timeout (which
/// Linux reports as EAGAIN, other systems as ETIMEDOUT). The caller owns the deadline.
fn later(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Moves the handshake as far as the socket allows. Done only once the handshake is over
/// *and* our last flight (the client Finished) is on the wire, so the caller never starts
/// the upgrade with TLS bytes still queued.
fn drive(m: MidHandshake) -> Result<Handshake, String> {
    drive_tls(m).map_err(|e| e.to_string())
}

fn drive_tls(mut m: MidHandshake) -> Result<Handshake, TlsFailure> {
    let io_failure = |e: &io::Error| match io_words(e).as_str() {
        "closed" => TlsFailure::Closed,
        words => TlsFailure::other(words),
    };
    loop {
        while m.conn.wants_write() {
            match m.conn.write_tls(&mut m.tcp) {
                Ok(0) => return Err(TlsFailure::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if later(&e) => return Ok(Handshake::Pending(m)),
                Err(e) => return Err(io_failure(&e)),
            }
        }
        if !m.conn.is_handshaking() {
            return Ok(Handshake::Done(rustls::StreamOwned::new(m.conn, m.tcp)));
        }
        match m.conn.read_tls(&mut m.tcp) {
            Ok(0) => return Err(TlsFailure::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if later(&e) => return Ok(Handshake::Pending(m)),
            Err(e) => return Err(io_failure(&e)),
        }
        if let Err(e) = m.conn.process_new_packets() {
            // Tell the server why (the alert rustls queued); it is about to be hung up on.
            let _ = m.conn.write_tls(&mut m.tcp);
            return Err(describe(&e));
        }
    }
}

/// rustls errors in the words the native backend uses, so scripts see one set of messages.
fn describe(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(c) => TlsFailure::Verify(certificate_words(c)),
        rustls::Error::AlertReceived(a) => TlsFailure::Alert(alert_words(*a)),
        other => TlsFailure::other(&other.to_string()),
    }
}

/// webpki's reasons in the shared words; the ones the native backend never reports keep
/// OpenSSL's words for the same check where it has one.
fn certificate_words(c: &CertificateError) -> VerifyFailure {
    use CertificateError as C;
    let other = |words: &str| VerifyFailure::Other(words.into());
    match c {
        C::UnknownIssuer => VerifyFailure::UnknownIssuer,
        C::NotValidForName | C::NotValidForNameContext { .. } => VerifyFailure::HostnameMismatch,
        C::Expired | C::ExpiredContext { .. } => VerifyFailure::Expired,
        C::NotValidYet | C::NotValidYetContext { .. } => VerifyFailure::NotYetValid,
        C::BadSignature => VerifyFailure::BadSignature,
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => VerifyFailure::InvalidPurpose,
        C::Revoked => VerifyFailure::Revoked,
        C::BadEncoding => other("bad certificate encoding"),
        C::UnhandledCriticalExtension => other("unhandled critical extension"),
        C::UnknownRevocationStatus => other("unknown revocation status"),
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
            other("crl has expired")
        }
        // (The deprecated unit variant comes out the same through the catch-all below.)
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            other("unsupported signature algorithm")
        }
        C::Other(o) if o.0.downcast_ref::<SelfSigned>().is_some() => VerifyFailure::SelfSigned,
        // webpki's own reasons (e.g. `CaUsedAsEndEntity`), passed through rustls as text.
        C::Other(o) => VerifyFailure::Other(spaced(&o.to_string())),
        other => VerifyFailure::Other(spaced(variant_name(&format!("{other:?}")))),
    }
}

/// Why a client certificate and key were refused; a key of another certificate in OpenSSL's
/// words, as the native backend reports it.
fn key_words(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "key values mismatch".into()
        }
        other => describe(other).to_string(),
    }
}

/// An alert's name as OpenSSL words it (`UnknownCA` → `unknown ca`).
fn alert_words(a: AlertDescription) -> String {
    match a {
        AlertDescription::UnrecognisedName => "unrecognized name".into(),
        AlertDescription::UserCanceled => "user cancelled".into(),
        AlertDescription::Unknown(n) => format!("alert {n}"),
        // The variant's name from rustls itself, not its Debug text: the Vera build compiles
        // Debug output away.
        other => other
            .as_str()
            .map_or_else(|| format!("alert {}", u8::from(other)), spaced),
    }
}

/// `Foo { .. }` or `Foo(..)` → `Foo`.
fn variant_name(debug: &str) -> &str {
    debug.split([' ', '{', '(']).next().unwrap_or(debug)
}

/// `UnknownCA` → `unknown ca`, `UnknownPSKIdentity` → `unknown psk identity`: rustls names
/// alerts and errors in CamelCase.
fn spaced(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &ch) in chars.iter().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push(' ');
            }
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

/// Sends close_notify (best effort; the socket is about to close anyway).
pub fn shutdown(s: &mut TlsStream) -> io::Result<()> {
    s.conn.send_close_notify();
    while s.conn.wants_write() {
        match s.conn.write_tls(&mut s.sock) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! Certificates below are EC P-256, valid 2000–9999, made with the openssl CLI:
    //! a test CA; `localhost` (DNS localhost, IP 127.0.0.1 and ::1, SEC1 key) and a client
    //! certificate, both issued by it; a self-signed `localhost` (CA:TRUE, PKCS#8 key).

    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use rustls::crypto::CryptoProvider;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ProtocolVersion, ServerConfig, ServerConnection};

    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBYTCCAQegAwIBAgIBEDAKBggqhkjOPQQDAjAXMRUwEwYDVQQDDAxsdXdzIHRl
c3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPOTk5OTEyMzEyMzU5NTlaMBcxFTATBgNV
BAMMDGx1d3MgdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNRG1E8L
3LRFwi+1o8U8gAKiEJtEdz6kv8UrQRVaZVtdqsyne5iH67mrzmp1EqPidDl7EbOC
xaOIGNryW1Ml3GKjQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIE
MB0GA1UdDgQWBBRP/aQE16qQ/ue+sEGH17IXyy2C3jAKBggqhkjOPQQDAgNIADBF
AiEAgLb4ymwoYOQ8YlNZFZ4cD+AbQWKrfCxKBe6l87fUqKwCIESrZ2IsnZraEUd0
1t/GVoPfbKh3i60ZKJ3SFhh77fs8
-----END CERTIFICATE-----
";
    const SERVER: &str = "-----BEGIN CERTIFICATE-----
MIIBsDCCAVegAwIBAgIBETAKBggqhkjOPQQDAjAXMRUwEwYDVQQDDAxsdXdzIHRl
c3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPOTk5OTEyMzEyMzU5NTlaMBQxEjAQBgNV
BAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNMZSDtxd1uB
ML6XyXzQ2ujdsox4eB0F0/SDIEjbuqD0guk/awdGeOZ8TARU4wj+dHLEDzmHgg21
wkY9uueSh9ejgZQwgZEwDAYDVR0TAQH/BAIwADAsBgNVHREEJTAjgglsb2NhbGhv
c3SHBH8AAAGHEAAAAAAAAAAAAAAAAAAAAAEwEwYDVR0lBAwwCgYIKwYBBQUHAwEw
HQYDVR0OBBYEFARBdZnjtbqjbcOo9fXfVK9xLbl+MB8GA1UdIwQYMBaAFE/9pATX
qpD+576wQYfXshfLLYLeMAoGCCqGSM49BAMCA0cAMEQCIA3oflhJLnUTlhBvG1Wv
PPdvy2SqIBMzZynjF2g3aQKVAiBy1wFe0e1wdjoSqSHV1JlK+ipY2tMJ/qmPm/H0
OUAF2g==
-----END CERTIFICATE-----
";
    const SERVER_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIC7l6fHxtjq/Qoot3cfK3VIxmGCX1CtZn8/aYIWZlczvoAoGCCqGSM49
AwEHoUQDQgAE0xlIO3F3W4EwvpfJfNDa6N2yjHh4HQXT9IMgSNu6oPSC6T9rB0Z4
5nxMBFTjCP50csQPOYeCDbXCRj2655KH1w==
-----END EC PRIVATE KEY-----
";
    const CLIENT: &str = "-----BEGIN CERTIFICATE-----
MIIBgjCCASmgAwIBAgIBEjAKBggqhkjOPQQDAjAXMRUwEwYDVQQDDAxsdXdzIHRl
c3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPOTk5OTEyMzEyMzU5NTlaMBYxFDASBgNV
BAMMC2x1d3MgY2xpZW50MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEibiw530D
akj1GYyCkfh7W44ss4UuEDo92ZUNxmhp5MtlWg3HISbbgewdmMffV2fthieMWX29
rv9rrevN82YzqqNlMGMwDAYDVR0TAQH/BAIwADATBgNVHSUEDDAKBggrBgEFBQcD
AjAdBgNVHQ4EFgQU4NyqVWetyq0ZTA3JYfnLP82kvBcwHwYDVR0jBBgwFoAUT/2k
BNeqkP7nvrBBh9eyF8stgt4wCgYIKoZIzj0EAwIDRwAwRAIgU3qUCq4hMLxe7pcZ
5pi9FI+C1dNlY4ziIRNaYnuJyu4CIBd4ej8hH+5fUrSDEs2F0kDeUvFJgHIhCj/4
ubll0/lu
-----END CERTIFICATE-----
";
    const CLIENT_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg19RFHTKhrv6tfrVM
YNbBcjx/jUxfhSoLyWz3ofopkZWhRANCAASJuLDnfQNqSPUZjIKR+HtbjiyzhS4Q
Oj3ZlQ3GaGnky2VaDcchJtuB7B2Yx99XZ+2GJ4xZfb2u/2ut683zZjOq
-----END PRIVATE KEY-----
";
    const SELF: &str = "-----BEGIN CERTIFICATE-----
MIIBaDCCAQ2gAwIBAgIBEzAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwIBcNMDAwMTAxMDAwMDAwWhgPOTk5OTEyMzEyMzU5NTlaMBQxEjAQBgNVBAMM
CWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABOrPO8za5XqeFXMl
eh7aTZlpP9RF3vPknAZCFZLqVuGl0M8/ipOSJv5APGGEsw5fsTYx1uKoEuQrBrVS
kjoAPFGjTjBMMA8GA1UdEwEB/wQFMAMBAf8wGgYDVR0RBBMwEYIJbG9jYWxob3N0
hwR/AAABMB0GA1UdDgQWBBRG23Bf/sr7ymgssuhlgJiTn/hGODAKBggqhkjOPQQD
AgNJADBGAiEApwinm0fGhPOMCTMptadn5Lp9vk01fkGWzvahlOjTzFsCIQDnNt26
HIGOGXUL7Pu/d2B6UiH2eIl8ZBL6xYybW0S+WA==
-----END CERTIFICATE-----
";
    const SELF_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnmuTLOzOK/z7WK5l
kd+k3h+b6SwgmUiMvyYxojml1cqhRANCAATqzzvM2uV6nhVzJXoe2k2ZaT/URd7z
5JwGQhWS6lbhpdDPP4qTkib+QDxhhLMOX7E2MdbiqBLkKwa1UpI6ADxR
-----END PRIVATE KEY-----
";

    const WAIT: Duration = Duration::from_secs(10);

    /// Writes `text` to a fresh file in the temp dir; tests run in parallel, names are unique.
    fn temp_file(text: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path: PathBuf =
            std::env::temp_dir().join(format!("luws-rustls-{}-{n}.pem", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(Result::unwrap)
            .collect()
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn err_of<T>(r: Result<T, String>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    /// How the test server is set up.
    struct Serve {
        chain: &'static str,
        key: &'static str,
        versions: &'static [&'static SupportedProtocolVersion],
        client_ca: Option<&'static str>,
        /// Show `chain` but sign with this key instead (a server without the cert's key).
        wrong_key: Option<&'static str>,
    }

    impl Serve {
        fn new(chain: &'static str, key: &'static str) -> Serve {
            Serve {
                chain,
                key,
                versions: rustls::ALL_VERSIONS,
                client_ca: None,
                wrong_key: None,
            }
        }

        /// A one-connection rustls server on loopback that echoes 2 bytes; the thread returns
        /// the negotiated version or the server's error.
        fn spawn(self) -> (u16, JoinHandle<Result<ProtocolVersion, String>>) {
            let p = provider();
            let b = ServerConfig::builder_with_provider(p.clone())
                .with_protocol_versions(self.versions)
                .unwrap();
            let b = match self.client_ca {
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    roots.add_parsable_certificates(certs(ca));
                    let v = WebPkiClientVerifier::builder_with_provider(roots.into(), p.clone())
                        .build()
                        .unwrap();
                    b.with_client_cert_verifier(v)
                }
                None => b.with_no_client_auth(),
            };
            let key_pem = self.wrong_key.unwrap_or(self.key);
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
            let signer = p.key_provider.load_private_key(key).unwrap();
            let ck = rustls::sign::CertifiedKey::new(certs(self.chain), signer);
            let config =
                Arc::new(b.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck))));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let t = std::thread::spawn(move || {
                let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
                tcp.set_read_timeout(Some(WAIT)).unwrap();
                let conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 2];
                s.read_exact(&mut buf).map_err(|e| e.to_string())?;
                s.write_all(&buf).map_err(|e| e.to_string())?;
                s.flush().map_err(|e| e.to_string())?;
                let v = s.conn.protocol_version().ok_or("no version")?;
                // Let the client read the echo before the socket goes.
                let _ = s.read(&mut buf);
                Ok(v)
            });
            (port, t)
        }
    }

    /// Connects as `open.rs` does: blocking socket, timeouts, resume until done.
    fn handshake_blocking(c: &Connector, host: &str, port: u16) -> Result<TlsStream, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        tcp.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + WAIT;
        let mut step = c.start(host, tcp)?;
        loop {
            match step {
                Handshake::Done(s) => return Ok(s),
                Handshake::Pending(m) if Instant::now() < deadline => step = m.resume()?,
                Handshake::Pending(_) => return Err("timeout".into()),
            }
        }
    }

    /// Sends "hi" and expects it back; on a non-blocking stream, retries on WouldBlock.
    /// The server's certificate names localhost and 127.0.0.1: both pass, another name fails.
    fn accepted_by_name_and_ip_only(c: &Connector, cert: &'static str, key: &'static str) {
        for host in ["localhost", "127.0.0.1"] {
            let (port, server) = Serve::new(cert, key).spawn();
            let mut s = handshake_blocking(c, host, port).unwrap();
            echo(&mut s);
            assert!(server.join().unwrap().is_ok());
        }
        let (port, _server) = Serve::new(cert, key).spawn();
        assert_eq!(
            err_of(handshake_blocking(c, "example.com", port)),
            "certificate verify failed: hostname mismatch"
        );
    }

    fn echo(s: &mut TlsStream) {
        let deadline = Instant::now() + WAIT;
        s.write_all(b"hi").unwrap();
        loop {
            match s.flush() {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("flush: {e}"),
            }
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < 2 {
            match s.read(&mut buf) {
                Ok(0) => panic!("eof before echo"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(got, b"hi");
        shutdown(s).unwrap();
    }

    fn settings(verify: bool) -> TlsSettings {
        TlsSettings {
            verify,
            ..TlsSettings::default()
        }
    }

    #[test]
    fn version_ranges_map_onto_tls12_and_tls13() {
        let range = |lo, hi| TlsSettings {
            min_version: lo,
            max_version: hi,
            ..settings(false)
        };
        let names = |s: &TlsSettings| -> Vec<ProtocolVersion> {
            versions(s).unwrap().iter().map(|v| v.version).collect()
        };
        let both = vec![ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2];
        assert_eq!(names(&range(None, None)), both);
        assert_eq!(names(&range(Some(TlsVersion::V1_0), None)), both);
        assert_eq!(
            names(&range(None, Some(TlsVersion::V1_2))),
            vec![ProtocolVersion::TLSv1_2]
        );
        assert_eq!(
            names(&range(Some(TlsVersion::V1_3), None)),
            vec![ProtocolVersion::TLSv1_3]
        );
        let old = range(Some(TlsVersion::V1_0), Some(TlsVersion::V1_1));
        assert_eq!(
            err_of(versions(&old)),
            "rustls supports only TLS 1.2 and 1.3"
        );
        let mut pinned = settings(false);
        pinned.apply_protocol("tlsv1").unwrap();
        assert_eq!(
            err_of(Connector::new(&pinned)),
            "rustls supports only TLS 1.2 and 1.3"
        );
    }

    #[test]
    fn settings_are_checked() {
        assert!(Connector::new(&settings(false)).is_ok());
        assert!(Connector::new(&settings(true)).is_ok());
        let key_only = TlsSettings {
            key: Some(temp_file(SERVER_KEY)),
            ..settings(false)
        };
        assert!(err_of(Connector::new(&key_only)).contains("together"));

        let missing = TlsSettings {
            cafile: Some("/nonexistent/ca.pem".into()),
            ..settings(true)
        };
        assert!(
            err_of(Connector::new(&missing))
                .starts_with("cannot read ssl_cafile /nonexistent/ca.pem: ")
        );
        let junk = TlsSettings {
            cafile: Some(temp_file("not a pem\n")),
            ..settings(true)
        };
        assert!(err_of(Connector::new(&junk)).starts_with("bad ssl_cafile "));
        // The file is checked even when verification is off, as with native-tls.
        let junk = TlsSettings {
            cafile: Some(temp_file("")),
            ..settings(false)
        };
        assert!(err_of(Connector::new(&junk)).ends_with("no certificate found"));
        let two = TlsSettings {
            cafile: Some(temp_file(&format!("{CA}{SELF}"))),
            ..settings(true)
        };
        assert!(Connector::new(&two).is_ok());

        // Client identity: SEC1 and PKCS#8 keys load; a key of another certificate does not.
        let id = |c: &str, k: &str| TlsSettings {
            certificate: Some(temp_file(c)),
            key: Some(temp_file(k)),
            ..settings(false)
        };
        assert!(Connector::new(&id(CLIENT, CLIENT_KEY)).is_ok());
        assert!(Connector::new(&id(SERVER, SERVER_KEY)).is_ok());
        assert_eq!(
            err_of(Connector::new(&id(CLIENT, SERVER_KEY))),
            "bad ssl_certificate/ssl_key: key values mismatch"
        );
        assert!(err_of(Connector::new(&id(CLIENT, CLIENT))).starts_with("bad ssl_key "));
        assert!(
            err_of(Connector::new(&id(CLIENT_KEY, CLIENT_KEY))).ends_with("no certificate found")
        );
    }

    #[test]
    fn pkcs1_keys_are_recognised() {
        // The label decides the format; the body only has to be base64 here.
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs1(_)));
    }

    #[test]
    fn system_roots_fall_back_to_the_builtin_set() {
        let none = roots_from(&["/nonexistent/bundle.pem".into()]);
        #[cfg(feature = "bundled-roots")]
        assert_eq!(none.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        #[cfg(not(feature = "bundled-roots"))]
        assert_eq!(none.len(), 0);
        let ours = roots_from(&["/nonexistent".into(), temp_file(&format!("junk\n{CA}"))]);
        assert_eq!(ours.len(), 1);
    }

    #[test]
    fn no_verify_accepts_any_chain_but_knows_the_signature_schemes() {
        let p = provider();
        let v = AcceptAnyCert(p.signature_verification_algorithms);
        let chain = certs(SELF);
        let name = ServerName::try_from("not.the.name").unwrap();
        assert!(
            v.verify_server_cert(&chain[0], &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        let chain = certs(&format!("{SERVER}{CA}"));
        assert!(
            v.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert!(
            v.supported_verify_schemes()
                .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
        );
    }

    #[test]
    fn error_words() {
        assert_eq!(spaced("UnknownCA"), "unknown ca");
        assert_eq!(spaced("HandshakeFailure"), "handshake failure");
        assert_eq!(spaced("UnknownPSKIdentity"), "unknown psk identity");
        assert_eq!(spaced("CaUsedAsEndEntity"), "ca used as end entity");
        assert_eq!(
            variant_name("NotValidForNameContext { expected: x }"),
            "NotValidForNameContext"
        );
        assert_eq!(variant_name("Unknown(7)"), "Unknown");
        let cert = |c| describe(&rustls::Error::InvalidCertificate(c)).to_string();
        let cases = [
            (CertificateError::UnknownIssuer, "unknown issuer"),
            (CertificateError::Expired, "certificate has expired"),
            (
                CertificateError::NotValidYet,
                "certificate is not yet valid",
            ),
            (CertificateError::NotValidForName, "hostname mismatch"),
            (CertificateError::BadSignature, "bad signature"),
            (CertificateError::Revoked, "certificate revoked"),
            (
                CertificateError::InvalidPurpose,
                "unsuitable certificate purpose",
            ),
            (CertificateError::BadEncoding, "bad certificate encoding"),
            (
                CertificateError::UnhandledCriticalExtension,
                "unhandled critical extension",
            ),
            (
                CertificateError::ApplicationVerificationFailure,
                "application verification failure",
            ),
            (
                CertificateError::Other(OtherError(Arc::new(SelfSigned))),
                "self-signed certificate",
            ),
        ];
        for (c, words) in cases {
            assert_eq!(cert(c), format!("certificate verify failed: {words}"));
        }
        let alert = |a| describe(&rustls::Error::AlertReceived(a)).to_string();
        assert_eq!(
            alert(AlertDescription::HandshakeFailure),
            "tls alert: handshake failure"
        );
        assert_eq!(
            alert(AlertDescription::ProtocolVersion),
            "tls alert: protocol version"
        );
        assert_eq!(alert(AlertDescription::UnknownCA), "tls alert: unknown ca");
        assert_eq!(
            alert(AlertDescription::CertificateRequired),
            "tls alert: certificate required"
        );
        assert_eq!(
            alert(AlertDescription::UnrecognisedName),
            "tls alert: unrecognized name"
        );
        assert_eq!(
            alert(AlertDescription::UnknownPSKIdentity),
            "tls alert: unknown psk identity"
        );
        assert_eq!(
            alert(AlertDescription::Unknown(200)),
            "tls alert: alert 200"
        );
        assert_eq!(
            describe(&rustls::Error::DecryptError).to_string(),
            rustls::Error::DecryptError.to_string()
        );
    }

    #[test]
    fn self_issued_reads_the_names() {
        assert!(self_issued(&certs(SELF)[0]));
        assert!(self_issued(&certs(CA)[0]));
        assert!(!self_issued(&certs(SERVER)[0]));
        assert!(!self_issued(&certs(CLIENT)[0]));
        // Truncated or foreign input is not self-issued, and never panics.
        let der = certs(SELF)[0].to_vec();
        for n in 0..der.len() {
            assert!(!self_issued(&der[..n]), "{n}");
        }
        assert!(!self_issued(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]));
        assert!(!self_issued(&[0x30, 0x85, 1, 1, 1, 1, 1]));
        let e = der_element(&[0x02, 0x01, 0x05, 0xaa]).unwrap();
        assert_eq!(
            (e.tag, e.whole, e.contents, e.rest),
            (0x02, &[0x02, 0x01, 0x05][..], &[0x05][..], &[0xaa][..])
        );
        let long = der_element(&[0x04, 0x81, 0x01, 0x07]).unwrap();
        assert_eq!((long.whole.len(), long.contents), (4, &[0x07][..]));
    }

    #[test]
    fn verifier_reasons_for_dates_names_and_issuers() {
        let verifier = |cafile: &str| {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certs(cafile));
            PinningVerifier {
                webpki: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .unwrap(),
                pinned: certs(cafile),
            }
        };
        let words = |v: &PinningVerifier, cert: &str, host: &str, secs: u64| {
            let chain = certs(cert);
            let name = ServerName::try_from(host.to_owned()).unwrap();
            let at = UnixTime::since_unix_epoch(Duration::from_secs(secs));
            match v.verify_server_cert(&chain[0], &chain[1..], &name, &[], at) {
                Ok(_) => "ok".to_string(),
                Err(e) => describe(&e).to_string(),
            }
        };
        let now = UnixTime::now().as_secs();
        let ca = verifier(CA);
        assert_eq!(words(&ca, SERVER, "localhost", now), "ok");
        // The test certificates are valid from 2000-01-01 to 9999-12-31.
        assert_eq!(
            words(&ca, SERVER, "localhost", 946_684_799),
            "certificate verify failed: certificate is not yet valid"
        );
        assert_eq!(
            words(&ca, SERVER, "localhost", 253_402_300_800),
            "certificate verify failed: certificate has expired"
        );
        assert_eq!(
            words(&ca, SERVER, "wrong.example", now),
            "certificate verify failed: hostname mismatch"
        );
        assert_eq!(
            words(&ca, SERVER, "10.0.0.1", now),
            "certificate verify failed: hostname mismatch"
        );
        // Issued by a CA the verifier does not know; a self-signed server certificate.
        let other = verifier(SELF);
        assert_eq!(
            words(&other, SERVER, "localhost", now),
            "certificate verify failed: unknown issuer"
        );
        assert_eq!(
            words(&ca, SELF, "localhost", now),
            "certificate verify failed: self-signed certificate"
        );
        assert_eq!(words(&other, SELF, "localhost", now), "ok");
        assert_eq!(
            words(&other, SELF, "wrong.example", now),
            "certificate verify failed: hostname mismatch"
        );
    }

    #[test]
    fn loopback_without_verification_accepts_self_signed() {
        let (port, server) = Serve::new(SELF, SELF_KEY).spawn();
        let c = Connector::new(&settings(false)).unwrap();
        let mut s = handshake_blocking(&c, "whatever.example", port).unwrap();
        echo(&mut s);
        assert_eq!(server.join().unwrap(), Ok(ProtocolVersion::TLSv1_3));
    }

    #[test]
    fn loopback_without_verification_still_checks_the_signature() {
        let serve = Serve {
            wrong_key: Some(SERVER_KEY),
            ..Serve::new(SELF, SELF_KEY)
        };
        let (port, server) = serve.spawn();
        let c = Connector::new(&settings(false)).unwrap();
        let e = err_of(handshake_blocking(&c, "localhost", port));
        assert!(e.starts_with("certificate verify failed"), "{e}");
        assert!(server.join().unwrap().is_err());
    }

    #[test]
    fn loopback_verified_by_cafile_and_name() {
        let ca = TlsSettings {
            cafile: Some(temp_file(CA)),
            ..settings(true)
        };
        let c = Connector::new(&ca).unwrap();
        accepted_by_name_and_ip_only(&c, SERVER, SERVER_KEY);
        // Without the CA file, the system roots do not know our test CA.
        let c = Connector::new(&settings(true)).unwrap();
        let (port, _server) = Serve::new(SERVER, SERVER_KEY).spawn();
        assert_eq!(
            err_of(handshake_blocking(&c, "localhost", port)),
            "certificate verify failed: unknown issuer"
        );
    }

    #[test]
    fn loopback_pinned_self_signed_ca_certificate() {
        // OpenSSL trusts a self-signed CA:TRUE server certificate given as the CA file.
        let pinned = TlsSettings {
            cafile: Some(temp_file(SELF)),
            ..settings(true)
        };
        let c = Connector::new(&pinned).unwrap();
        accepted_by_name_and_ip_only(&c, SELF, SELF_KEY);
        // Not pinned: webpki's refusal stands, in OpenSSL's words for a self-signed server.
        let other = TlsSettings {
            cafile: Some(temp_file(CA)),
            ..settings(true)
        };
        let (port, _server) = Serve::new(SELF, SELF_KEY).spawn();
        assert_eq!(
            err_of(handshake_blocking(
                &Connector::new(&other).unwrap(),
                "localhost",
                port
            )),
            "certificate verify failed: self-signed certificate"
        );
        // Pinned, but the server lacks the key: the handshake signature still fails.
        let serve = Serve {
            wrong_key: Some(SERVER_KEY),
            ..Serve::new(SELF, SELF_KEY)
        };
        let (port, _server) = serve.spawn();
        let e = err_of(handshake_blocking(&c, "localhost", port));
        assert!(e.starts_with("certificate verify failed"), "{e}");
    }

    #[test]
    fn loopback_tls12_and_version_mismatch() {
        let mut s12 = settings(false);
        s12.apply_protocol("tlsv1_2").unwrap();
        let (port, server) = Serve::new(SERVER, SERVER_KEY).spawn();
        let mut s = handshake_blocking(&Connector::new(&s12).unwrap(), "localhost", port).unwrap();
        echo(&mut s);
        assert_eq!(server.join().unwrap(), Ok(ProtocolVersion::TLSv1_2));

        let mut s13 = settings(false);
        s13.apply_protocol("tlsv1_3").unwrap();
        static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
        let serve = Serve {
            versions: TLS12_ONLY,
            ..Serve::new(SERVER, SERVER_KEY)
        };
        let (port, _server) = serve.spawn();
        let e = err_of(handshake_blocking(
            &Connector::new(&s13).unwrap(),
            "localhost",
            port,
        ));
        assert_eq!(e, "tls alert: protocol version");
    }

    #[test]
    fn loopback_client_certificate() {
        let with_id = TlsSettings {
            certificate: Some(temp_file(CLIENT)),
            key: Some(temp_file(CLIENT_KEY)),
            ..settings(false)
        };
        let serve = Serve {
            client_ca: Some(CA),
            ..Serve::new(SERVER, SERVER_KEY)
        };
        let (port, server) = serve.spawn();
        let mut s =
            handshake_blocking(&Connector::new(&with_id).unwrap(), "localhost", port).unwrap();
        echo(&mut s);
        assert!(server.join().unwrap().is_ok());

        // Without one, the server refuses (in TLS 1.3 the client learns it on first read).
        let serve = Serve {
            client_ca: Some(CA),
            ..Serve::new(SERVER, SERVER_KEY)
        };
        let (port, server) = serve.spawn();
        if let Ok(mut s) = handshake_blocking(
            &Connector::new(&settings(false)).unwrap(),
            "localhost",
            port,
        ) {
            let _ = s.write_all(b"hi");
            let _ = s.flush();
            assert!(s.read(&mut [0u8; 2]).is_err());
        }
        assert!(server.join().unwrap().is_err());
    }

    #[test]
    fn loopback_non_blocking() {
        let (port, server) = Serve::new(SERVER, SERVER_KEY).spawn();
        let c = Connector::new(&settings(false)).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut step = c.start("localhost", tcp).unwrap();
        let mut s = loop {
            match step {
                Handshake::Done(s) => break s,
                Handshake::Pending(m) => {
                    assert!(Instant::now() < deadline, "handshake stuck");
                    std::thread::sleep(Duration::from_millis(1));
                    step = m.resume().unwrap();
                }
            }
        };
        echo(&mut s);
        assert!(server.join().unwrap().is_ok());
    }

    #[test]
    fn blocking_timeout_is_pending_and_hangup_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = Connector::new(&settings(false)).unwrap();

        // A server that never answers: the socket timeout surfaces as Pending, again and again.
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_silent, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let Handshake::Pending(m) = c.start("localhost", tcp).unwrap() else {
            panic!("handshake finished with a silent server")
        };
        let Handshake::Pending(_) = m.resume().unwrap() else {
            panic!("handshake finished with a silent server")
        };

        // A server that hangs up.
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        drop(listener.accept().unwrap());
        assert_eq!(err_of(c.start("localhost", tcp).map(|_| ())), "closed");
    }
}
