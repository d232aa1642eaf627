//! Every error string luws shows a user, in one enum; `Display` is the exact text (it is API).
//!
//! Runtime failures are *returned* to Lua (`false, msg` from `wsopen`/`wssend`, `nil, msg` from
//! `wsreceive`, `(conn, false, msg)` to the message handler). Misuse (wrong argument types, bad
//! option values) is *raised* as a Lua error. The LuWS strings (`not connected`, `closing`,
//! `message timeout`, `receiver error: closed`, `upgrade failed; …`, `Connection to …`) are kept
//! verbatim so code written against LuWS keeps matching them.

use thiserror::Error;

/// A luws failure. Variants say what failed; `Display` is the text users see.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// `wsopen` was given a URL it cannot use (returned, never raised: URLs come from config).
    #[error("Invalid protocol/address for WebSocket open in {url}: {why}")]
    BadUrl { url: String, why: UrlProblem },

    /// TCP connection (or name resolution) failed.
    #[error("Connection to {host}:{port} failed: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: IoFailure,
    },

    /// The `connect` option's function returned `nil, err`: its message, unchanged.
    #[error("{0}")]
    ConnectFunction(String),

    /// The `connect` option's function returned something without a usable file descriptor.
    #[error("Can't get socket for connection")]
    NoSocket,

    /// TLS setup or handshake failed. LuWS's spelling ("negotation") is kept on purpose.
    #[error("Failed SSL negotation: {0}")]
    Tls(String),

    /// The proxy could not be reached or did not open a tunnel (its text says which).
    #[error("{0}")]
    Proxy(ProxyFailure),

    /// The HTTP upgrade did not produce a WebSocket.
    #[error("upgrade failed; {0}")]
    Upgrade(UpgradeFailure),

    /// Send or receive on a connection that is closed (or was never open).
    #[error("not connected")]
    NotConnected,

    /// The connection ended and is being reopened (`reconnect`): nothing is queued meanwhile.
    #[error("reconnecting")]
    Reconnecting,

    /// Send after a Close was sent: RFC 6455 §5.5.1 forbids further data frames.
    #[error("closing")]
    Closing,

    /// A send could not be completed.
    #[error("send error: {0}")]
    Send(SendFailure),

    /// `receive_timeout` elapsed without a frame from the peer.
    #[error("message timeout")]
    MessageTimeout,

    /// Receiving failed; the connection is closed. The handler sees this text; `wsreceive`
    /// returns the inner text alone (`nil, "closed"`), as LuWS does.
    #[error("receiver error: {0}")]
    Receive(ReceiveFailure),

    /// A Lua argument of the wrong type or value (raised as a Lua error).
    #[error("bad argument #{pos} to '{func}' ({msg})")]
    BadArgument {
        pos: u8,
        func: &'static str,
        msg: String,
    },

    /// A method called on something that is not its object (`conn.send(42)`), in the words of
    /// Lua's own `luaL_argerror` for a method call.
    #[error("calling '{func}' on bad self ({msg})")]
    BadSelf { func: &'static str, msg: String },

    /// An option of the wrong type or value (raised as a Lua error).
    #[error("bad option '{name}' to '{func}' ({msg})")]
    BadOption {
        name: &'static str,
        func: &'static str,
        msg: String,
    },
}

/// What is wrong with a URL (the text after `… open in <url>: `).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    #[error("URL missing")]
    Missing,
    #[error("empty URL")]
    Empty,
    #[error("scheme must be ws:// or wss://")]
    Scheme,
    #[error("no host")]
    NoHost,
    #[error("port out of range")]
    Port,
    #[error("invalid IP address")]
    IpAddress,
    #[error("invalid host name")]
    HostName,
    #[error("fragment (#) not allowed")]
    Fragment,
    #[error("malformed URL")]
    Malformed,
}

/// A socket failure, in LuaSocket's words (`timeout`, `closed`, `connection refused`, …), so
/// that messages read like the ones LuWS users already match on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IoFailure {
    #[error("timeout")]
    Timeout,
    /// The peer closed or reset the connection.
    #[error("closed")]
    Closed,
    #[error("connection refused")]
    Refused,
    #[error("no route to host")]
    NoRoute,
    #[error("address not available")]
    AddressNotAvailable,
    /// The name did not resolve (or the resolver could not run).
    #[error("host not found")]
    HostNotFound,
    /// Any other failure: the system's text, lowercased, as LuaSocket prints strerror.
    #[error("{0}")]
    Other(String),
}

impl From<&std::io::Error> for IoFailure {
    fn from(e: &std::io::Error) -> IoFailure {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::WouldBlock | K::TimedOut => IoFailure::Timeout,
            K::ConnectionRefused => IoFailure::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                IoFailure::Closed
            }
            K::HostUnreachable | K::NetworkUnreachable => IoFailure::NoRoute,
            K::AddrNotAvailable => IoFailure::AddressNotAvailable,
            _ => {
                // std appends " (os error N)"; LuaSocket prints the bare strerror text.
                let text = e.to_string();
                let bare = text.split(" (os error").next().unwrap_or(&text);
                IoFailure::Other(bare.to_lowercase())
            }
        }
    }
}

/// Why the HTTP upgrade failed (the text after `upgrade failed; `).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpgradeFailure {
    /// The answer was not HTTP: its first line, verbatim.
    #[error("{0}")]
    Status(String),
    /// The server answered, but not with 101: its status line, verbatim (the whole answer
    /// travels along, for the plugin).
    #[error("{}", .0.status_line)]
    Refused(Box<crate::response::Response>),
    #[error("timeout")]
    Timeout,
    /// The server closed the connection before a complete response.
    #[error("closed")]
    Closed,
    #[error("response headers too large")]
    TooLarge,
    /// More redirects than `follow_redirects` allows.
    #[error("too many redirects")]
    TooManyRedirects,
    /// A redirect back to a URL already visited.
    #[error("redirect loop")]
    RedirectLoop,
    /// A redirect whose `Location` is no `ws`/`wss`/`http`/`https` URL.
    #[error("bad redirect location {0}")]
    BadRedirect(String),
    #[error("malformed response")]
    Malformed,
    #[error("Upgrade header missing")]
    UpgradeMissing,
    #[error("Upgrade header is not websocket")]
    UpgradeNotWebsocket,
    #[error("Connection header missing")]
    ConnectionMissing,
    #[error("Sec-WebSocket-Accept missing")]
    AcceptMissing,
    /// RFC 6455 §4.1: the client MUST fail when the accept hash is wrong.
    #[error("Sec-WebSocket-Accept mismatch")]
    AcceptMismatch,
    /// The server chose a subprotocol that was not offered (or none was offered).
    #[error("unexpected Sec-WebSocket-Protocol {0}")]
    Subprotocol(String),
    /// The server enabled an extension luws did not ask for (§4.1, item 5).
    #[error("unexpected Sec-WebSocket-Extensions {0}")]
    Extension(String),
    /// The server's answer to the permessage-deflate offer breaks RFC 7692 §7.1.
    #[error("bad Sec-WebSocket-Extensions {value} ({problem})")]
    BadExtension {
        value: String,
        problem: crate::extension::ExtensionProblem,
    },
    /// Any other socket error.
    #[error("{0}")]
    Io(IoFailure),
}

/// Why a proxy gave no tunnel (the `proxy` option).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The TCP connection to the proxy failed.
    #[error("proxy: connection to {host}:{port} failed: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: IoFailure,
    },
    /// An HTTP proxy answered CONNECT with another status than 2xx: that status and reason.
    #[error("proxy refused: {0}")]
    Refused(String),
    /// A SOCKS5 proxy's reply code other than success.
    #[error("proxy: SOCKS5 {0}")]
    Socks(SocksReply),
    /// The SOCKS5 proxy accepts none of the methods offered (it wants a user and password
    /// and the proxy URL has none, or the reverse).
    #[error("proxy: SOCKS5 no acceptable authentication method")]
    NoAcceptableAuth,
    #[error("proxy: SOCKS5 authentication failed")]
    AuthFailed,
    /// SOCKS5 carries a host name in at most 255 bytes.
    #[error("proxy: SOCKS5 host name over 255 bytes")]
    NameTooLong,
    /// The proxy exchange did not finish within `connect_timeout`.
    #[error("proxy: timeout")]
    Timeout,
    /// The proxy hung up before the tunnel was open.
    #[error("proxy: closed")]
    Closed,
    /// The proxy's answer is not of its protocol.
    #[error("proxy: bad answer")]
    BadAnswer,
    #[error("proxy: answer too large")]
    TooLarge,
    /// `proxy = "env"` found a variable whose value is no proxy URL.
    #[error("proxy: bad {var} ({why})")]
    BadEnv {
        var: &'static str,
        why: ProxyUrlProblem,
    },
    #[error("proxy: {0}")]
    Io(IoFailure),
}

/// What is wrong with a proxy URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProxyUrlProblem {
    #[error("scheme must be http://, socks5:// or socks5h://")]
    Scheme,
    #[error("malformed proxy URL")]
    Malformed,
    #[error("no host")]
    NoHost,
    #[error("a proxy URL has no path, query or fragment")]
    Path,
    /// RFC 1929 carries each of user and password in at most 255 bytes.
    #[error("SOCKS5 user and password are at most 255 bytes each")]
    CredentialsTooLong,
}

/// A SOCKS5 reply code (RFC 1928 §6), in the RFC's words.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SocksReply {
    #[error("general failure")]
    GeneralFailure,
    #[error("connection not allowed by ruleset")]
    NotAllowed,
    #[error("network unreachable")]
    NetworkUnreachable,
    #[error("host unreachable")]
    HostUnreachable,
    #[error("connection refused")]
    ConnectionRefused,
    #[error("TTL expired")]
    TtlExpired,
    #[error("command not supported")]
    CommandNotSupported,
    #[error("address type not supported")]
    AddressTypeNotSupported,
    #[error("reply {0}")]
    Other(u8),
}

impl SocksReply {
    pub fn from_code(code: u8) -> SocksReply {
        match code {
            1 => SocksReply::GeneralFailure,
            2 => SocksReply::NotAllowed,
            3 => SocksReply::NetworkUnreachable,
            4 => SocksReply::HostUnreachable,
            5 => SocksReply::ConnectionRefused,
            6 => SocksReply::TtlExpired,
            7 => SocksReply::CommandNotSupported,
            8 => SocksReply::AddressTypeNotSupported,
            n => SocksReply::Other(n),
        }
    }
}

/// Why a send failed (the text after `send error: `).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// The peer did not take the data within `send_timeout`; the connection is given up.
    #[error("timeout")]
    Timeout,
    #[error("closed")]
    Closed,
    /// Unsent output already exceeds `send_buffer`: the message is refused, the connection
    /// stays open.
    #[error("buffer full")]
    BufferFull,
    /// RFC 6455 §5.5: control frames carry at most 125 bytes.
    #[error("control frame payload over 125 bytes")]
    ControlTooLarge,
    /// RFC 6455 §5.5.1: a Close body is empty, or a 2-byte code followed by UTF-8.
    #[error("close payload must be empty or a valid 2-byte code and UTF-8 reason")]
    BadClosePayload,
    /// RFC 6455 §5.6: text messages are UTF-8.
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// The LTN12 source returned `nil, err` or raised.
    #[error("source: {0}")]
    Source(String),
    #[error("{0}")]
    Io(IoFailure),
}

/// Why receiving ended the connection (the text after `receiver error: `).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReceiveFailure {
    /// The peer closed (Close frame, FIN or reset).
    #[error("closed")]
    Closed,
    /// The peer broke RFC 6455; we sent Close 1002.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message was not UTF-8; we sent Close 1007.
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// A compressed message (permessage-deflate) did not inflate; we sent Close 1007.
    #[error("invalid compressed data")]
    BadCompression,
    /// A message (one frame or reassembled) exceeded `max_payload_size`; we sent Close 1009.
    #[error("message of {size} bytes exceeds max_payload_size {max}")]
    TooBig { size: u64, max: usize },
    /// `keepalive` sent a ping and no frame came back in time.
    #[error("keepalive timeout")]
    KeepaliveTimeout,
    /// Any other socket error.
    #[error("{0}")]
    Io(IoFailure),
}

impl Error {
    /// The text `wsreceive` returns: a receive failure without its `receiver error: ` prefix.
    pub fn receive_return_text(&self) -> String {
        match self {
            Error::Receive(f) => f.to_string(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An I/O error in LuaSocket's words, as text (for the TLS backends' messages).
pub fn io_words(e: &std::io::Error) -> String {
    IoFailure::from(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luws_strings_are_verbatim() {
        assert_eq!(Error::NotConnected.to_string(), "not connected");
        assert_eq!(Error::Closing.to_string(), "closing");
        assert_eq!(Error::MessageTimeout.to_string(), "message timeout");
        assert_eq!(
            Error::Receive(ReceiveFailure::Closed).to_string(),
            "receiver error: closed"
        );
        assert_eq!(
            Error::Upgrade(UpgradeFailure::Status("HTTP/1.1 404 Not Found".into())).to_string(),
            "upgrade failed; HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            Error::Connect {
                host: "example".into(),
                port: 80,
                reason: IoFailure::Refused,
            }
            .to_string(),
            "Connection to example:80 failed: connection refused"
        );
        assert_eq!(
            Error::NoSocket.to_string(),
            "Can't get socket for connection"
        );
    }

    #[test]
    fn wsreceive_returns_text_without_prefix() {
        assert_eq!(
            Error::Receive(ReceiveFailure::Closed).receive_return_text(),
            "closed"
        );
        assert_eq!(
            Error::MessageTimeout.receive_return_text(),
            "message timeout"
        );
    }
}
