//! TLS for `wss://`: the settings users give (LuaSec-style options) and the selected backend.
//!
//! Two backends with one interface: `native` (system OpenSSL via native-tls, for builds made on
//! the machine that runs them) and `rustls` (self-contained, for release artifacts such as the
//! Vera build). With `tls-rustls` enabled, rustls is used.

#[cfg(not(feature = "tls-rustls"))]
mod native;
#[cfg(not(feature = "tls-rustls"))]
pub use native::{Connector, Handshake, MidHandshake, TlsStream, shutdown, tcp_of};
#[cfg(not(feature = "tls-rustls"))]
use native::{leaf_certificate, sha256};

#[cfg(feature = "tls-rustls")]
mod rustls;
#[cfg(feature = "tls-rustls")]
pub use self::rustls::{Connector, Handshake, MidHandshake, TlsStream, shutdown, tcp_of};
#[cfg(feature = "tls-rustls")]
use self::rustls::{leaf_certificate, sha256};

mod pin;
pub use pin::{Pin, parse_pin};

/// Name of the compiled-in backend, for `luws.tls_backend`.
pub const BACKEND: &str = if cfg!(feature = "tls-rustls") {
    "rustls"
} else {
    "native-tls"
};

/// TLS protocol versions, as LuaSec names them (`tlsv1`, `tlsv1_1`, `tlsv1_2`, `tlsv1_3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

/// What the user asked of TLS. Verification is off by default, as in LuWS, so drop-in users
/// with self-signed hubs keep working; `ssl_verify = "peer"` turns it on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Verify the peer's certificate chain and host name.
    pub verify: bool,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// PEM file of trusted CA certificates (adds to the system roots).
    pub cafile: Option<String>,
    /// PEM client certificate (chain) and its private key, for servers that ask for one.
    pub certificate: Option<String>,
    pub key: Option<String>,
    /// The name sent as SNI and checked against the certificate, instead of the URL's host
    /// (`ssl_servername`: a hub reached by IP whose certificate names it).
    pub servername: Option<String>,
    /// Accepted server keys (`ssl_pin`); when not empty, the leaf's key must be one of them.
    pub pins: Vec<Pin>,
}

/// Whether the server's key is one of `pins` (`ssl_pin`), checked once TLS is up and before
/// anything is sent. With `ssl_verify = "none"` this alone authenticates the server.
pub fn check_pin(s: &TlsStream, pins: &[Pin]) -> Result<(), TlsFailure> {
    let cert = leaf_certificate(s).ok_or(TlsFailure::Verify(VerifyFailure::PinMismatch))?;
    let spki = pin::subject_public_key_info(&cert)
        .ok_or(TlsFailure::Verify(VerifyFailure::PinMismatch))?;
    if pins.contains(&sha256(spki)) {
        Ok(())
    } else {
        Err(TlsFailure::Verify(VerifyFailure::PinMismatch))
    }
}

impl TlsSettings {
    /// Applies a LuaSec `protocol` value: `any`/`sslv23` leave the range open; a version
    /// name pins that version (LuaSec's meaning: exactly that protocol).
    pub fn apply_protocol(&mut self, name: &str) -> Result<(), String> {
        let v = match name {
            "any" | "sslv23" => {
                self.min_version = None;
                self.max_version = None;
                return Ok(());
            }
            "tlsv1" => TlsVersion::V1_0,
            "tlsv1_1" => TlsVersion::V1_1,
            "tlsv1_2" => TlsVersion::V1_2,
            "tlsv1_3" => TlsVersion::V1_3,
            "sslv3" | "sslv2" => return Err(format!("{name} is not supported")),
            other => return Err(format!("unknown protocol '{other}'")),
        };
        self.min_version = Some(v);
        self.max_version = Some(v);
        Ok(())
    }

    /// Applies one LuaSec `options` flag. Version exclusions narrow the range; the other
    /// LuaSec flags are accepted for compatibility (modern TLS libraries already behave so).
    pub fn apply_option(&mut self, flag: &str) -> Result<(), String> {
        let raise_min = |s: &mut Self, v: TlsVersion| {
            if s.min_version.is_none_or(|m| m < v) {
                s.min_version = Some(v);
            }
        };
        match flag {
            "no_tlsv1" => raise_min(self, TlsVersion::V1_1),
            "no_tlsv1_1" => raise_min(self, TlsVersion::V1_2),
            "no_tlsv1_2" => raise_min(self, TlsVersion::V1_3),
            "no_tlsv1_3" => {
                if self.max_version.is_none_or(|m| m > TlsVersion::V1_2) {
                    self.max_version = Some(TlsVersion::V1_2);
                }
            }
            "all"
            | "no_sslv2"
            | "no_sslv3"
            | "no_compression"
            | "no_ticket"
            | "cipher_server_preference"
            | "single_dh_use"
            | "single_ecdh_use"
            | "no_session_resumption_on_renegotiation"
            | "no_renegotiation"
            | "legacy_server_connect"
            | "allow_unsafe_legacy_renegotiation"
            | "ephemeral_rsa"
            | "tls_rollback_bug"
            | "dont_insert_empty_fragments"
            | "microsoft_sess_id_bug"
            | "netscape_challenge_bug"
            | "no_query_mtu"
            | "cookie_exchange" => {}
            other => return Err(format!("unknown option '{other}'")),
        }
        Ok(())
    }

    /// Checks that the options make sense together (a key without a certificate, an empty range).
    pub fn validate(&self) -> Result<(), String> {
        self.check().map_err(|p| p.to_string())
    }

    /// What is wrong with these settings, so the caller can name the option at fault.
    pub fn check(&self) -> Result<(), SettingsProblem> {
        if self.certificate.is_some() != self.key.is_some() {
            return Err(SettingsProblem::HalfPair);
        }
        if let (Some(lo), Some(hi)) = (self.min_version, self.max_version) {
            if lo > hi {
                return Err(SettingsProblem::NoVersion);
            }
        }
        Ok(())
    }
}

/// TLS settings that cannot work together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettingsProblem {
    /// A client certificate without its key, or a key without its certificate.
    #[error("ssl_certificate and ssl_key must be given together")]
    HalfPair,
    /// `ssl_protocol` and `ssl_options` leave no version to use.
    #[error("the protocol options exclude every TLS version")]
    NoVersion,
}

/// Why TLS failed, in the words both backends share: the text after `Failed SSL negotation: `.
/// The backends return it as a `String` (`to_string()` at their public functions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The peer's certificate was refused: `certificate verify failed: <reason>`.
    Verify(VerifyFailure),
    /// The peer sent a fatal alert: `tls alert: <name>` (the RFC 8446 name in words, e.g.
    /// `handshake failure`, `protocol version`, `certificate required`).
    Alert(String),
    /// The peer hung up during the handshake.
    Closed,
    /// Anything else, in the library's words minus its source locations.
    Other(String),
}

impl TlsFailure {
    /// A failure the shared vocabulary has no word for; library source locations
    /// (`../ssl/statem/statem_clnt.c:1889:`) are removed from `text`.
    pub fn other(text: &str) -> TlsFailure {
        TlsFailure::Other(strip_source_paths(text))
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::Verify(VerifyFailure::Other(why)) if why.is_empty() => {
                f.write_str("certificate verify failed")
            }
            TlsFailure::Verify(why) => write!(f, "certificate verify failed: {why}"),
            TlsFailure::Alert(name) => write!(f, "tls alert: {name}"),
            TlsFailure::Closed => f.write_str("closed"),
            TlsFailure::Other(text) => f.write_str(text),
        }
    }
}

/// Why the peer's certificate was refused (`ssl_verify = "peer"`), the same for both backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFailure {
    /// `certificate has expired`: past its notAfter date (or a CA's in its chain).
    Expired,
    /// `certificate is not yet valid`: before its notBefore date.
    NotYetValid,
    /// `hostname mismatch`: issued for other names (or IP addresses) than the URL's host.
    HostnameMismatch,
    /// `self-signed certificate`: the server's certificate is its own issuer and is not
    /// trusted (give it as `ssl_cafile` to pin it).
    SelfSigned,
    /// `unknown issuer`: the chain does not lead to a trusted CA (system roots plus
    /// `ssl_cafile`).
    UnknownIssuer,
    /// `bad signature`: a signature in the chain does not verify.
    BadSignature,
    /// `certificate revoked`.
    Revoked,
    /// `unsuitable certificate purpose`: not issued for TLS servers.
    InvalidPurpose,
    /// `public key does not match ssl_pin`: the server's key is none of the pinned ones.
    PinMismatch,
    /// Another reason, in the backend's words (lowercase); empty when it gave none.
    Other(String),
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerifyFailure::Expired => "certificate has expired",
            VerifyFailure::NotYetValid => "certificate is not yet valid",
            VerifyFailure::HostnameMismatch => "hostname mismatch",
            VerifyFailure::SelfSigned => "self-signed certificate",
            VerifyFailure::UnknownIssuer => "unknown issuer",
            VerifyFailure::BadSignature => "bad signature",
            VerifyFailure::Revoked => "certificate revoked",
            VerifyFailure::InvalidPurpose => "unsuitable certificate purpose",
            VerifyFailure::PinMismatch => "public key does not match ssl_pin",
            VerifyFailure::Other(why) => why,
        })
    }
}

/// Removes source locations such as `../ssl/statem/statem_clnt.c:1889:` (a path ending in a
/// C, C++ or Rust file name, a colon and a line number) that TLS libraries put in their
/// messages; the words around them stay.
pub(crate) fn strip_source_paths(text: &str) -> String {
    const SOURCES: &[&str] = &[".c", ".h", ".cc", ".cpp", ".rs"];
    let path_byte = |c: u8| c.is_ascii_alphanumeric() || b"_./-+".contains(&c);
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut kept = 0; // text[kept..] not yet copied to out
    let mut i = 0;
    let mut removed = false;
    while i < b.len() {
        if !path_byte(b[i]) || (i > 0 && path_byte(b[i - 1])) {
            i += 1;
            continue;
        }
        // A run of path bytes starts at i (all ASCII, so every index here is a char boundary).
        let mut end = i;
        while end < b.len() && path_byte(b[end]) {
            end += 1;
        }
        let run = &text[i..end];
        let digits = b[end..]
            .strip_prefix(b":")
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        let is_source = SOURCES
            .iter()
            .any(|ext| run.len() > ext.len() && run.ends_with(ext));
        if is_source && digits > 0 {
            let mut stop = end + 1 + digits;
            if b.get(stop) == Some(&b':') {
                stop += 1;
            }
            out.push_str(&text[kept..i]);
            kept = stop;
            removed = true;
            i = stop;
        } else {
            i = end;
        }
    }
    out.push_str(&text[kept..]);
    if removed {
        let trimmed = out.trim().trim_end_matches(':').trim_end();
        trimmed.to_string()
    } else {
        out
    }
}

fn read_file(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|e| format!("cannot read {what} {path}: {}", crate::error::io_words(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luasec_protocol_names() {
        let mut s = TlsSettings::default();
        assert!(s.apply_protocol("tlsv1_2").is_ok());
        assert_eq!(
            (s.min_version, s.max_version),
            (Some(TlsVersion::V1_2), Some(TlsVersion::V1_2))
        );
        assert!(s.apply_protocol("any").is_ok());
        assert_eq!((s.min_version, s.max_version), (None, None));
        assert!(s.apply_protocol("sslv3").is_err());
        assert!(s.apply_protocol("bogus").is_err());
    }

    #[test]
    fn luasec_options_narrow_the_range() {
        let mut s = TlsSettings::default();
        for f in ["all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1"] {
            assert!(s.apply_option(f).is_ok(), "{f}");
        }
        assert_eq!(s.min_version, Some(TlsVersion::V1_2));
        assert!(s.apply_option("no_such_flag").is_err());
        s.apply_protocol("tlsv1").ok();
        s.apply_option("no_tlsv1").ok();
        assert!(s.validate().is_err());
    }

    #[test]
    fn failures_read_in_the_shared_words() {
        let v = |r| TlsFailure::Verify(r).to_string();
        assert_eq!(
            v(VerifyFailure::Expired),
            "certificate verify failed: certificate has expired"
        );
        assert_eq!(
            v(VerifyFailure::NotYetValid),
            "certificate verify failed: certificate is not yet valid"
        );
        assert_eq!(
            v(VerifyFailure::HostnameMismatch),
            "certificate verify failed: hostname mismatch"
        );
        assert_eq!(
            v(VerifyFailure::SelfSigned),
            "certificate verify failed: self-signed certificate"
        );
        assert_eq!(
            v(VerifyFailure::UnknownIssuer),
            "certificate verify failed: unknown issuer"
        );
        assert_eq!(
            v(VerifyFailure::BadSignature),
            "certificate verify failed: bad signature"
        );
        assert_eq!(
            v(VerifyFailure::Revoked),
            "certificate verify failed: certificate revoked"
        );
        assert_eq!(
            v(VerifyFailure::InvalidPurpose),
            "certificate verify failed: unsuitable certificate purpose"
        );
        assert_eq!(
            v(VerifyFailure::Other(
                "path length constraint exceeded".into()
            )),
            "certificate verify failed: path length constraint exceeded"
        );
        assert_eq!(
            v(VerifyFailure::Other(String::new())),
            "certificate verify failed"
        );
        assert_eq!(
            TlsFailure::Alert("handshake failure".into()).to_string(),
            "tls alert: handshake failure"
        );
        assert_eq!(TlsFailure::Closed.to_string(), "closed");
        assert_eq!(TlsFailure::other("timeout").to_string(), "timeout");
    }

    #[test]
    fn source_paths_are_stripped() {
        assert_eq!(
            strip_source_paths(
                "error:0A000086:SSL routines:tls_post_process_server_certificate:\
                 certificate verify failed:../ssl/statem/statem_clnt.c:1889:"
            ),
            "error:0A000086:SSL routines:tls_post_process_server_certificate:\
             certificate verify failed"
        );
        assert_eq!(
            strip_source_paths("x:ssl/record/rec_layer_s3.c:1586:SSL alert number 40"),
            "x:SSL alert number 40"
        );
        assert_eq!(
            strip_source_paths("no start line:crypto/pem/pem_lib.c:763:Expecting: CERTIFICATE"),
            "no start line:Expecting: CERTIFICATE"
        );
        assert_eq!(
            strip_source_paths("a (/usr/src/openssl-3.0/crypto/x509/x509_cmp.c:403) b"),
            "a () b"
        );
        assert_eq!(strip_source_paths("at src/tls/native.rs:12"), "at");
        // User paths, versions and words stay.
        for keep in [
            "cannot read ssl_cafile /etc/hub.pem: no such file or directory",
            "bad ssl_cafile ./certs/ca.crt: no certificate found",
            "tls alert: protocol version",
            "closed",
            "file.c without a line",
            "version 1.2:3",
            "",
        ] {
            assert_eq!(strip_source_paths(keep), keep);
        }
        assert_eq!(
            TlsFailure::other("reason:../ssl/x.c:1:").to_string(),
            "reason"
        );
    }

    #[test]
    fn key_needs_certificate() {
        let s = TlsSettings {
            key: Some("k.pem".into()),
            ..TlsSettings::default()
        };
        assert!(s.validate().is_err());
    }
}
