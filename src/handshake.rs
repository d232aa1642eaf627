//! The opening handshake (RFC 6455 §4.1), without I/O: build the request, then judge the
//! response as bytes arrive. Blocking and non-blocking drivers share it.

use crate::endpoint::Endpoint;
use crate::error::UpgradeFailure;
use crate::extension::{DeflateConfig, DeflateParams};
pub use crate::response::Response;

/// LuWS reads at most this much response header.
pub const MAX_RESPONSE: usize = 65535;

/// The request to send and what a correct answer must contain.
#[derive(Debug, Clone)]
pub struct Request {
    pub bytes: Vec<u8>,
    /// The `Sec-WebSocket-Accept` value a genuine server must return.
    pub expected_accept: String,
    /// Subprotocols offered through `upgrade_headers` (the server must pick one of them or none).
    pub offered_protocols: Vec<String>,
    /// The permessage-deflate offer (RFC 7692), if any: the answer is judged against it.
    pub deflate: Option<DeflateConfig>,
}

impl Request {
    /// Adds the permessage-deflate offer (`Sec-WebSocket-Extensions`) to the request.
    pub fn offer_deflate(&mut self, config: DeflateConfig) {
        // The request ends with its blank line: the header goes before it.
        self.bytes.truncate(self.bytes.len() - 2);
        self.bytes.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        self.bytes.extend_from_slice(config.offer().as_bytes());
        self.bytes.extend_from_slice(b"\r\n\r\n");
        self.deflate = Some(config);
    }
}

/// Headers luws writes itself; users may not replace them.
const RESERVED: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// Checks user headers: no line breaks (header injection), none of the reserved names.
pub fn check_extra_headers(headers: &[(String, String)]) -> Result<(), String> {
    for (k, v) in headers {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!("invalid header name '{k}'"));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header '{k}' has a line break in its value"));
        }
        if RESERVED.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(format!("header '{k}' is set by luws"));
        }
    }
    Ok(())
}

/// Builds the upgrade request with a fresh key from the OS random source.
pub fn build_request(ep: &Endpoint, extra: &[(String, String)]) -> Result<Request, std::io::Error> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
    Ok(build_request_with_nonce(ep, extra, &nonce))
}

fn build_request_with_nonce(
    ep: &Endpoint,
    extra: &[(String, String)],
    nonce: &[u8; 16],
) -> Request {
    let key = base64(nonce);
    let has = |name: &str| extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut r = String::with_capacity(256);
    r.push_str("GET ");
    r.push_str(&ep.resource);
    r.push_str(" HTTP/1.1\r\n");
    if !has("host") {
        r.push_str("Host: ");
        r.push_str(&ep.host_header);
        r.push_str("\r\n");
    }
    r.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    r.push_str(&key);
    r.push_str("\r\nSec-WebSocket-Version: 13\r\n");
    if let Some(userinfo) = &ep.userinfo {
        if !has("authorization") {
            r.push_str("Authorization: Basic ");
            r.push_str(&base64(userinfo.as_bytes()));
            r.push_str("\r\n");
        }
    }
    let mut offered_protocols = Vec::new();
    for (k, v) in extra {
        r.push_str(k);
        r.push_str(": ");
        r.push_str(v);
        r.push_str("\r\n");
        if k.eq_ignore_ascii_case("sec-websocket-protocol") {
            offered_protocols.extend(v.split(',').map(|p| p.trim().to_string()));
        }
    }
    r.push_str("\r\n");
    Request {
        bytes: r.into_bytes(),
        expected_accept: accept_key(key.as_bytes()),
        offered_protocols,
        deflate: None,
    }
}

/// A verdict on the response bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Read more.
    Incomplete,
    /// Upgraded. Bytes after the header already belong to the WebSocket stream.
    Upgraded {
        header_len: usize,
        response: Box<Response>,
        /// The permessage-deflate parameters agreed, if the server accepted the offer.
        deflate: Option<DeflateParams>,
    },
}

/// Judges a response: 101, `Upgrade: websocket`, `Connection: upgrade`, the right accept
/// key, and no subprotocol or extension that was not offered.
pub fn judge(buf: &[u8], req: &Request) -> Result<Verdict, UpgradeFailure> {
    let Some(end) = find_header_end(buf) else {
        if buf.len() > MAX_RESPONSE {
            return Err(UpgradeFailure::TooLarge);
        }
        // A non-HTTP answer is known bad as soon as its first line is complete.
        if let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") {
            if !buf.starts_with(b"HTTP/") {
                return Err(UpgradeFailure::Status(status_line(&buf[..line_end])));
            }
        }
        return Ok(Verdict::Incomplete);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap_or(end);
            return if buf.starts_with(b"HTTP/") {
                Err(UpgradeFailure::Malformed)
            } else {
                Err(UpgradeFailure::Status(status_line(&buf[..line_end])))
            };
        }
    }
    let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap_or(end);
    let response = response_of(&resp, status_line(&buf[..line_end]));
    if resp.code != Some(101) {
        return Err(UpgradeFailure::Refused(Box::new(response)));
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    match get("upgrade") {
        None => return Err(UpgradeFailure::UpgradeMissing),
        Some(v) if !v.eq_ignore_ascii_case("websocket") => {
            return Err(UpgradeFailure::UpgradeNotWebsocket);
        }
        Some(_) => {}
    }
    let connection_ok = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| {
            String::from_utf8_lossy(h.value)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .any(|t| t == "upgrade");
    if !connection_ok {
        return Err(UpgradeFailure::ConnectionMissing);
    }
    match get("sec-websocket-accept") {
        None => return Err(UpgradeFailure::AcceptMissing),
        Some(v) if v != req.expected_accept => return Err(UpgradeFailure::AcceptMismatch),
        Some(_) => {}
    }
    let extensions: Vec<String> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    let deflate = match (&req.deflate, extensions.is_empty()) {
        (_, true) => None,
        (None, false) => return Err(UpgradeFailure::Extension(extensions.join(", "))),
        (Some(offer), false) => {
            let values: Vec<&str> = extensions.iter().map(String::as_str).collect();
            crate::extension::accept(offer, &values).map_err(|problem| {
                UpgradeFailure::BadExtension {
                    value: extensions.join(", "),
                    problem,
                }
            })?
        }
    };
    if let Some(p) = get("sec-websocket-protocol") {
        if !req.offered_protocols.iter().any(|o| o == &p) {
            return Err(UpgradeFailure::Subprotocol(p));
        }
    }
    Ok(Verdict::Upgraded {
        header_len: end,
        response: Box::new(response),
        deflate,
    })
}

fn response_of(resp: &httparse::Response, status_line: String) -> Response {
    Response {
        status_line,
        status: resp.code.unwrap_or(0),
        reason: resp.reason.unwrap_or("").to_string(),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect(),
    }
}

fn find_header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn status_line(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim()
        .chars()
        .take(200)
        .collect()
}

/// The `Sec-WebSocket-Accept` a server must answer for `key` (RFC 6455 §4.2.2): base64 of the
/// SHA-1 of the key and the protocol's GUID. (Ours, not tungstenite's handshake module: that
/// one brings a second base64 library, ~30 KB the Vera build cannot spare.)
pub fn accept_key(key: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(&h.finalize())
}

/// Standard base64 with padding (RFC 4648 §4); only short values are encoded here.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str) -> Endpoint {
        match Endpoint::parse(url) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    // RFC 6455 §1.3: the sample nonce and its accept value.
    const NONCE: &[u8; 16] = b"the sample nonce";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn rfc_request() -> Request {
        build_request_with_nonce(&ep("ws://server.example.com:8080/chat?x=1"), &[], NONCE)
    }

    fn response(extra: &str) -> Vec<u8> {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n").into_bytes()
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(NONCE), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn request_carries_key_version_and_host_with_port() {
        let r = rfc_request();
        let text = String::from_utf8_lossy(&r.bytes).to_string();
        assert!(text.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com:8080\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(r.expected_accept, ACCEPT);
    }

    #[test]
    fn keys_differ_between_requests() {
        let e = ep("ws://h/");
        let (a, b) = match (build_request(&e, &[]), build_request(&e, &[])) {
            (Ok(a), Ok(b)) => (a, b),
            _ => panic!("no randomness"),
        };
        assert_ne!(a.expected_accept, b.expected_accept);
    }

    #[test]
    fn extra_headers_and_host_override() {
        let extra = vec![
            ("Host".to_string(), "other".to_string()),
            ("X-A".to_string(), "1".to_string()),
        ];
        let r = build_request_with_nonce(&ep("ws://h:81/"), &extra, NONCE);
        let text = String::from_utf8_lossy(&r.bytes).to_string();
        assert!(!text.contains("Host: h:81"));
        assert!(text.contains("Host: other\r\n") && text.contains("X-A: 1\r\n"));
        assert!(check_extra_headers(&[("Upgrade".into(), "x".into())]).is_err());
        assert!(check_extra_headers(&[("X".into(), "a\r\nEvil: 1".into())]).is_err());
        assert!(check_extra_headers(&[("Bad Name".into(), "v".into())]).is_err());
    }

    #[test]
    fn basic_auth_from_userinfo() {
        let r = build_request_with_nonce(&ep("ws://Aladdin:open%20sesame@h/"), &[], NONCE);
        assert!(
            String::from_utf8_lossy(&r.bytes)
                .contains("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n")
        );
    }

    #[test]
    fn judges_responses() {
        let req = rfc_request();
        let good = response(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"));
        assert_eq!(
            judge(&good[..good.len() - 2], &req),
            Ok(Verdict::Incomplete)
        );
        let upgraded = |buf: &[u8]| match judge(buf, &req) {
            Ok(Verdict::Upgraded {
                header_len,
                response,
                ..
            }) => (header_len, *response),
            other => panic!("not upgraded: {other:?}"),
        };
        let (len, answer) = upgraded(&good);
        assert_eq!(len, good.len());
        assert_eq!(answer.status, 101);
        assert_eq!(answer.reason, "Switching Protocols");
        assert_eq!(answer.header("upgrade"), Some("websocket"));
        assert_eq!(answer.protocol(), None);
        let mut with_frame = good.clone();
        with_frame.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(upgraded(&with_frame).0, good.len());

        assert_eq!(
            judge(&response(""), &req),
            Err(UpgradeFailure::AcceptMissing)
        );
        assert_eq!(
            judge(&response("Sec-WebSocket-Accept: AAAA\r\n"), &req),
            Err(UpgradeFailure::AcceptMismatch)
        );
        let no_upgrade = format!(
            "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        assert_eq!(
            judge(no_upgrade.as_bytes(), &req),
            Err(UpgradeFailure::UpgradeMissing)
        );
        let h2 = format!(
            "HTTP/1.1 101 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        assert_eq!(
            judge(h2.as_bytes(), &req),
            Err(UpgradeFailure::UpgradeNotWebsocket)
        );
        let no_conn = format!(
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        assert_eq!(
            judge(no_conn.as_bytes(), &req),
            Err(UpgradeFailure::ConnectionMissing)
        );
        let ext = response(&format!(
            "Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
        ));
        assert!(matches!(
            judge(&ext, &req),
            Err(UpgradeFailure::Extension(_))
        ));
        let proto = response(&format!(
            "Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n"
        ));
        assert!(matches!(
            judge(&proto, &req),
            Err(UpgradeFailure::Subprotocol(_))
        ));
    }

    #[test]
    fn an_offered_subprotocol_is_the_choice_the_response_reports() {
        let ep = Endpoint::parse("ws://h/").unwrap();
        let headers = vec![(
            "Sec-WebSocket-Protocol".to_string(),
            "chat, superchat".to_string(),
        )];
        let req = build_request(&ep, &headers).unwrap();
        let accept = req.expected_accept.clone();
        let chosen = response(&format!(
            "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: superchat\r\n"
        ));
        match judge(&chosen, &req) {
            Ok(Verdict::Upgraded { response, .. }) => {
                assert_eq!(response.protocol(), Some("superchat"))
            }
            other => panic!("not upgraded: {other:?}"),
        }
    }

    #[test]
    fn non_101_reports_the_status_line_verbatim() {
        let req = rfc_request();
        let r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        match judge(r, &req) {
            Err(UpgradeFailure::Refused(answer)) => {
                assert_eq!(
                    UpgradeFailure::Refused(answer.clone()).to_string(),
                    "HTTP/1.1 404 Not Found"
                );
                assert_eq!((answer.status, answer.reason.as_str()), (404, "Not Found"));
                assert_eq!(answer.header("content-length"), Some("0"));
            }
            other => panic!("not refused: {other:?}"),
        }
        assert_eq!(
            judge(b"hello\r\n", &req),
            Err(UpgradeFailure::Status("hello".into()))
        );
        assert_eq!(
            judge(&vec![b'a'; MAX_RESPONSE + 1], &req),
            Err(UpgradeFailure::TooLarge)
        );
    }
}
