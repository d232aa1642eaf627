//! TLS for `wss://`: the settings users give (LuaSec-style options) and the selected backend.
//!
//! Two backends with one interface: `native` (system OpenSSL via native-tls, for builds made on
//! the machine that runs them) and `rustls` (self-contained, for release artifacts such as the
//! Vera build). With `tls-rustls` enabled, rustls is used.

#[cfg(not(feature = "tls-rustls"))]
mod native;
#[cfg(not(feature = "tls-rustls"))]
pub use native::{Connector, Handshake, MidHandshake, TlsStream, shutdown, tcp_of};

#[cfg(feature = "tls-rustls")]
mod rustls;
#[cfg(feature = "tls-rustls")]
pub use self::rustls::{Connector, Handshake, MidHandshake, TlsStream, shutdown, tcp_of};

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
        if self.certificate.is_some() != self.key.is_some() {
            return Err("ssl_certificate and ssl_key must be given together".into());
        }
        if let (Some(lo), Some(hi)) = (self.min_version, self.max_version) {
            if lo > hi {
                return Err("the protocol options exclude every TLS version".into());
            }
        }
        Ok(())
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
    fn key_needs_certificate() {
        let s = TlsSettings {
            key: Some("k.pem".into()),
            ..TlsSettings::default()
        };
        assert!(s.validate().is_err());
    }
}
