//! The verawebsockets (libwebsockets 2.4) words for a failed connection, so event-1 handlers
//! written for Vera's library keep matching. The full luws message travels alongside.

use crate::error::{Error, IoFailure, ProxyFailure, UpgradeFailure, UrlProblem};

/// The libwebsockets 2.4 `LWS_CALLBACK_CLIENT_CONNECTION_ERROR` reason for `e`.
pub fn lws_reason(e: &Error) -> &'static str {
    match e {
        Error::BadUrl {
            why: UrlProblem::Missing | UrlProblem::Empty,
            ..
        } => "HS: URI missing",
        Error::BadUrl { .. } => "HS: URI did not parse",
        Error::Connect {
            reason: IoFailure::HostNotFound,
            ..
        } => "getaddrinfo (ipv4) failed",
        Error::Connect {
            reason: IoFailure::Timeout,
            ..
        } => "timeout",
        Error::Connect { .. } | Error::ConnectFunction(_) | Error::NoSocket => "connect failed",
        // libwebsockets 2.4 as Vera built it has no proxy support, so no words to keep: the
        // connect ones (the full text says which proxy failure).
        Error::Proxy(ProxyFailure::Timeout)
        | Error::Proxy(ProxyFailure::Connect {
            reason: IoFailure::Timeout,
            ..
        }) => "timeout",
        Error::Proxy(_) => "connect failed",
        Error::Tls(r) if r.starts_with("cannot read") || r.starts_with("bad ") => {
            "lws_ssl_client_connect1 failed"
        }
        Error::Tls(r) if r == "timeout" => "timeout",
        Error::Tls(_) => "lws_ssl_client_connect2 failed",
        Error::Upgrade(f) => match f {
            UpgradeFailure::Status(_)
            | UpgradeFailure::Refused(_)
            | UpgradeFailure::Malformed
            | UpgradeFailure::TooManyRedirects
            | UpgradeFailure::RedirectLoop
            | UpgradeFailure::BadRedirect(_) => "HS: ws upgrade response not 101",
            UpgradeFailure::AcceptMissing => "HS: ACCEPT missing",
            UpgradeFailure::AcceptMismatch => "HS: Accept hash wrong",
            UpgradeFailure::UpgradeMissing => "HS: UPGRADE missing",
            UpgradeFailure::UpgradeNotWebsocket => "HS: Upgrade to something other than websocket",
            UpgradeFailure::ConnectionMissing => "HS: CONNECTION missing",
            UpgradeFailure::Subprotocol(_) => "HS: Cannot match protocol",
            UpgradeFailure::Extension(_) => "HS: EXT: unknown ext",
            // libwebsockets's words for an extension answer its option parser refuses.
            UpgradeFailure::BadExtension { .. } => "HS: EXT: failed setting opts",
            UpgradeFailure::TooLarge => "HS: OOM",
            UpgradeFailure::Closed => "Peer hung up",
            UpgradeFailure::Timeout => "timeout",
            UpgradeFailure::Io(_) => "read failed",
        },
        _ => "read failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_handshake_failures_to_lws_words() {
        let up = |f| lws_reason(&Error::Upgrade(f));
        assert_eq!(up(UpgradeFailure::AcceptMissing), "HS: ACCEPT missing");
        assert_eq!(up(UpgradeFailure::AcceptMismatch), "HS: Accept hash wrong");
        assert_eq!(
            up(UpgradeFailure::Status("HTTP/1.1 404 Not Found".into())),
            "HS: ws upgrade response not 101"
        );
        assert_eq!(up(UpgradeFailure::Closed), "Peer hung up");
        let connect = |reason| {
            lws_reason(&Error::Connect {
                host: "h".into(),
                port: 1,
                reason,
            })
        };
        assert_eq!(
            connect(IoFailure::HostNotFound),
            "getaddrinfo (ipv4) failed"
        );
        assert_eq!(connect(IoFailure::Refused), "connect failed");
    }

    #[test]
    fn proxy_failures_read_as_connect_failures() {
        let proxy = |f| lws_reason(&Error::Proxy(f));
        assert_eq!(proxy(ProxyFailure::Timeout), "timeout");
        assert_eq!(
            proxy(ProxyFailure::Refused("407 x".into())),
            "connect failed"
        );
        assert_eq!(
            proxy(ProxyFailure::Connect {
                host: "p".into(),
                port: 1,
                reason: IoFailure::Timeout
            }),
            "timeout"
        );
        assert_eq!(proxy(ProxyFailure::AuthFailed), "connect failed");
    }
}
