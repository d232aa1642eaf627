//! What one connection is opened with: where, which headers, TLS, timeouts, the session's
//! tunables and the Luup notification target. Both APIs fill it from their options.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::session::SessionConfig;
use crate::tls::TlsSettings;

/// Everything needed to open one connection.
#[derive(Debug, Clone)]
pub struct OpenSpec {
    pub endpoint: Endpoint,
    pub headers: Vec<(String, String)>,
    pub tls: TlsSettings,
    /// Direct, through a named proxy, or through the environment's (`proxy`).
    pub proxy: crate::proxy::ProxySetting,
    /// Bounds name resolution, TCP connect and the TLS handshake (LuWS: 15 s).
    pub connect_timeout: Duration,
    /// Bounds the HTTP upgrade (LuWS: 5 s).
    pub handshake_timeout: Duration,
    pub session: SessionConfig,
    /// Luup notification on data arrival (the `notify` option).
    pub notify: Option<crate::notify::NotifyTarget>,
    /// The permessage-deflate offer (`permessage_deflate`; off by default, so that a drop-in
    /// puts the same bytes on the wire).
    pub deflate: Option<crate::extension::DeflateConfig>,
    /// Redirects (301, 302, 303, 307, 308) to follow at most (`follow_redirects`; LuWS: none).
    pub follow_redirects: u32,
    /// Reopen after an end the application did not ask for (the `reconnect` option).
    pub reconnect: Option<crate::backoff::Policy>,
    /// Notify Luup as soon as the connection is open (a reopened connection is news).
    pub announce: bool,
    /// A gate that also stops this connection's notifier (the reconnecting conn's).
    pub notify_gate: Option<std::sync::Arc<crate::notify::Gate>>,
}

impl OpenSpec {
    pub fn new(endpoint: Endpoint) -> OpenSpec {
        OpenSpec {
            endpoint,
            headers: Vec::new(),
            tls: TlsSettings::default(),
            proxy: crate::proxy::ProxySetting::Direct,
            connect_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(5),
            session: SessionConfig::default(),
            notify: None,
            deflate: None,
            follow_redirects: 0,
            reconnect: None,
            announce: false,
            notify_gate: None,
        }
    }
}
