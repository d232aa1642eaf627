//! The exchange that turns a TCP connection to a proxy into a tunnel to the target: HTTP
//! `CONNECT` or SOCKS5 with optional user/password (RFC 1928, RFC 1929). No socket here: the
//! opener writes `output()`, reads at most what `want()` allows (never a byte of what follows
//! the exchange: that belongs to TLS or the upgrade) and hands it to `received`.

use std::net::SocketAddr;

use crate::error::{ProxyFailure, SocksReply};
use crate::proxy::{Proxy, ProxyKind};

/// Where the tunnel leads: a name the proxy resolves, or an address luws resolved (`socks5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String, u16),
    Addr(SocketAddr),
}

/// What the exchange needs from the socket next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// `output()` is not all written.
    Write,
    /// Read at most this many bytes (more could be the tunnel's).
    Read(usize),
    /// The tunnel is open.
    Done,
}

/// Which answer is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    HttpReply,
    SocksMethod,
    SocksAuth,
    SocksReply,
    Open,
}

/// An HTTP proxy's answer larger than this is refused (its headers; a body is never read).
const MAX_HTTP_ANSWER: usize = 16 * 1024;

/// One proxy exchange.
#[derive(Debug)]
pub struct Tunnel {
    awaiting: Awaiting,
    out: Vec<u8>,
    sent: usize,
    input: Vec<u8>,
    credentials: Option<(String, String)>,
    /// The SOCKS5 CONNECT request, sent once a method is agreed.
    socks_connect: Vec<u8>,
}

impl Tunnel {
    pub fn new(proxy: &Proxy, target: &Target) -> Result<Tunnel, ProxyFailure> {
        let mut t = Tunnel {
            awaiting: Awaiting::HttpReply,
            out: Vec::new(),
            sent: 0,
            input: Vec::new(),
            credentials: proxy.credentials.clone(),
            socks_connect: Vec::new(),
        };
        match proxy.kind {
            ProxyKind::HttpConnect => t.out = http_connect(proxy, target).into_bytes(),
            ProxyKind::Socks5 | ProxyKind::Socks5Hostname => {
                t.awaiting = Awaiting::SocksMethod;
                t.socks_connect = socks_connect(target)?;
                // Offer user/password only with credentials: a proxy that needs them and gets
                // none answers "no acceptable method", which says what is wrong.
                t.out = if t.credentials.is_some() {
                    vec![5, 2, 0, 2]
                } else {
                    vec![5, 1, 0]
                };
            }
        }
        Ok(t)
    }

    /// Bytes still to write.
    pub fn output(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// `n` bytes of `output()` were written.
    pub fn wrote(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.out.len());
    }

    pub fn want(&self) -> Want {
        if self.awaiting == Awaiting::Open {
            return Want::Done;
        }
        if self.sent < self.out.len() {
            return Want::Write;
        }
        let have = self.input.len();
        Want::Read(match self.awaiting {
            // The header ends at CRLF CRLF: read only as far as it could end, so nothing after
            // it is taken from the socket.
            Awaiting::HttpReply => 4 - crlf_crlf_progress(&self.input),
            Awaiting::SocksMethod | Awaiting::SocksAuth => 2 - have.min(2),
            Awaiting::SocksReply => {
                socks_reply_len(&self.input).map_or(5 - have.min(4), |n| n - have)
            }
            Awaiting::Open => 0,
        })
    }

    /// Takes bytes the proxy sent (no more than `want()` allowed). `Ok(true)`: the tunnel is open.
    pub fn received(&mut self, data: &[u8]) -> Result<bool, ProxyFailure> {
        self.input.extend_from_slice(data);
        match self.awaiting {
            Awaiting::HttpReply => self.http_reply(),
            Awaiting::SocksMethod => self.socks_method(),
            Awaiting::SocksAuth => self.socks_auth(),
            Awaiting::SocksReply => self.socks_reply(),
            Awaiting::Open => Ok(true),
        }
    }

    fn send_next(&mut self, bytes: Vec<u8>, awaiting: Awaiting) -> Result<bool, ProxyFailure> {
        self.out = bytes;
        self.sent = 0;
        self.input.clear();
        self.awaiting = awaiting;
        Ok(false)
    }

    fn http_reply(&mut self) -> Result<bool, ProxyFailure> {
        if crlf_crlf_progress(&self.input) < 4 {
            if self.input.len() > MAX_HTTP_ANSWER {
                return Err(ProxyFailure::TooLarge);
            }
            return Ok(false);
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(&self.input) {
            Ok(httparse::Status::Complete(_)) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(ProxyFailure::TooLarge),
            _ => return Err(ProxyFailure::BadAnswer),
        }
        let code = r.code.unwrap_or(0);
        if (200..300).contains(&code) {
            self.awaiting = Awaiting::Open;
            self.input = Vec::new();
            return Ok(true);
        }
        let reason: String = r.reason.unwrap_or("").chars().take(200).collect();
        Err(ProxyFailure::Refused(
            format!("{code} {reason}").trim_end().to_string(),
        ))
    }

    fn socks_method(&mut self) -> Result<bool, ProxyFailure> {
        let [ver, method] = match self.input[..] {
            [a, b] => [a, b],
            _ => return Ok(false),
        };
        if ver != 5 {
            return Err(ProxyFailure::BadAnswer);
        }
        match (method, &self.credentials) {
            (0, _) => {
                let c = std::mem::take(&mut self.socks_connect);
                self.send_next(c, Awaiting::SocksReply)
            }
            (2, Some((user, pass))) => {
                // Lengths were checked when the proxy URL was parsed.
                let mut m = vec![1, user.len() as u8];
                m.extend_from_slice(user.as_bytes());
                m.push(pass.len() as u8);
                m.extend_from_slice(pass.as_bytes());
                self.send_next(m, Awaiting::SocksAuth)
            }
            (0xFF, _) => Err(ProxyFailure::NoAcceptableAuth),
            // A method we did not offer.
            _ => Err(ProxyFailure::BadAnswer),
        }
    }

    fn socks_auth(&mut self) -> Result<bool, ProxyFailure> {
        match self.input[..] {
            [1, 0] => {
                let c = std::mem::take(&mut self.socks_connect);
                self.send_next(c, Awaiting::SocksReply)
            }
            [1, _] => Err(ProxyFailure::AuthFailed),
            [_, _] => Err(ProxyFailure::BadAnswer),
            _ => Ok(false),
        }
    }

    fn socks_reply(&mut self) -> Result<bool, ProxyFailure> {
        if self.input.len() >= 2 {
            if self.input[0] != 5 {
                return Err(ProxyFailure::BadAnswer);
            }
            if self.input[1] != 0 {
                return Err(ProxyFailure::Socks(SocksReply::from_code(self.input[1])));
            }
        }
        if self.input.len() >= 4 && !matches!(self.input[3], 1 | 3 | 4) {
            return Err(ProxyFailure::BadAnswer);
        }
        match socks_reply_len(&self.input) {
            Some(n) if self.input.len() >= n => {
                self.awaiting = Awaiting::Open;
                self.input = Vec::new();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// How many bytes of CRLF CRLF the input ends with (0–3), or 4 when it ends with all of it.
fn crlf_crlf_progress(input: &[u8]) -> usize {
    const END: &[u8] = b"\r\n\r\n";
    (1..=4)
        .rev()
        .find(|&k| input.ends_with(&END[..k]))
        .unwrap_or(0)
}

/// The length of a SOCKS5 reply, once enough of it is known to tell.
fn socks_reply_len(input: &[u8]) -> Option<usize> {
    match input.get(3)? {
        1 => Some(4 + 4 + 2),
        4 => Some(4 + 16 + 2),
        3 => input.get(4).map(|&n| 5 + n as usize + 2),
        _ => None,
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn http_connect(proxy: &Proxy, target: &Target) -> String {
    let authority = match target {
        Target::Name(h, p) => host_port(h, *p),
        Target::Addr(a) => a.to_string(),
    };
    let mut r = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = &proxy.credentials {
        r.push_str("Proxy-Authorization: Basic ");
        r.push_str(&crate::handshake::base64(
            format!("{user}:{pass}").as_bytes(),
        ));
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

fn socks_connect(target: &Target) -> Result<Vec<u8>, ProxyFailure> {
    let mut m = vec![5, 1, 0];
    let port = match target {
        Target::Addr(SocketAddr::V4(a)) => {
            m.push(1);
            m.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Addr(SocketAddr::V6(a)) => {
            m.push(4);
            m.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Name(name, port) => match name.parse::<std::net::IpAddr>() {
            Ok(ip) => return socks_connect(&Target::Addr(SocketAddr::new(ip, *port))),
            Err(_) if name.len() > 255 => return Err(ProxyFailure::NameTooLong),
            Err(_) => {
                m.push(3);
                m.push(name.len() as u8);
                m.extend_from_slice(name.as_bytes());
                *port
            }
        },
    };
    m.extend_from_slice(&port.to_be_bytes());
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str) -> Proxy {
        Proxy::parse(url).unwrap()
    }

    fn name(h: &str, p: u16) -> Target {
        Target::Name(h.into(), p)
    }

    /// Writes everything, then feeds `answer` in the largest pieces `want()` allows, as the
    /// opener does; returns the bytes written and the outcome.
    fn exchange(t: &mut Tunnel, answer: &[u8]) -> (Vec<u8>, Result<bool, ProxyFailure>, usize) {
        let mut written = Vec::new();
        let mut at = 0;
        loop {
            match t.want() {
                Want::Write => {
                    written.extend_from_slice(t.output());
                    let n = t.output().len();
                    t.wrote(n);
                }
                Want::Read(n) => {
                    assert!(n > 0);
                    if at == answer.len() {
                        return (written, Ok(false), at);
                    }
                    let end = (at + n).min(answer.len());
                    let r = t.received(&answer[at..end]);
                    at = end;
                    if !matches!(r, Ok(false)) {
                        return (written, r, at);
                    }
                }
                Want::Done => return (written, Ok(true), at),
            }
        }
    }

    #[test]
    fn http_connect_with_basic_auth_and_a_200_opens_without_reading_past_the_header() {
        let mut t = Tunnel::new(&proxy("http://al:pw@p:3128"), &name("hub.lan", 443)).unwrap();
        let mut answer = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n".to_vec();
        let header = answer.len();
        answer.extend_from_slice(b"\x16\x03\x01TLS from the server");
        let (w, r, consumed) = exchange(&mut t, &answer);
        assert_eq!(
            String::from_utf8(w).unwrap(),
            "CONNECT hub.lan:443 HTTP/1.1\r\nHost: hub.lan:443\r\n\
             Proxy-Authorization: Basic YWw6cHc=\r\n\r\n"
        );
        assert_eq!(r, Ok(true));
        assert_eq!(consumed, header);
        assert_eq!(t.want(), Want::Done);
    }

    #[test]
    fn http_connect_brackets_ipv6_targets() {
        let t = Tunnel::new(&proxy("http://p"), &name("::1", 8080)).unwrap();
        assert!(
            t.output()
                .starts_with(b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n")
        );
    }

    #[test]
    fn http_refusal_is_its_status_and_reason() {
        let mut t = Tunnel::new(&proxy("http://p"), &name("h", 80)).unwrap();
        let answer =
            b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\nnope!";
        let (_, r, _) = exchange(&mut t, answer);
        assert_eq!(
            r.unwrap_err().to_string(),
            "proxy refused: 407 Proxy Authentication Required"
        );
    }

    #[test]
    fn http_garbage_and_floods_are_errors() {
        let mut t = Tunnel::new(&proxy("http://p"), &name("h", 80)).unwrap();
        let (_, r, _) = exchange(&mut t, b"SSH-2.0-OpenSSH\r\n\r\n");
        assert_eq!(r, Err(ProxyFailure::BadAnswer));
        let mut t = Tunnel::new(&proxy("http://p"), &name("h", 80)).unwrap();
        let (_, r, _) = exchange(&mut t, &vec![b'x'; MAX_HTTP_ANSWER + 10]);
        assert_eq!(r, Err(ProxyFailure::TooLarge));
    }

    #[test]
    fn socks5h_sends_the_name_and_opens_on_a_success_reply() {
        let mut t = Tunnel::new(&proxy("socks5h://s"), &name("hub.lan", 443)).unwrap();
        let answer = [5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, 0x16];
        let (w, r, consumed) = exchange(&mut t, &answer);
        let mut expect = vec![5, 1, 0, 5, 1, 0, 3, 7];
        expect.extend_from_slice(b"hub.lan");
        expect.extend_from_slice(&[1, 187]);
        assert_eq!(w, expect);
        assert_eq!(r, Ok(true));
        assert_eq!(
            consumed,
            answer.len() - 1,
            "the byte after the reply is the tunnel's"
        );
    }

    #[test]
    fn socks5_sends_addresses_and_reads_domain_and_ipv6_replies() {
        let a: SocketAddr = "[fe80::1]:80".parse().unwrap();
        let mut t = Tunnel::new(&proxy("socks5://s"), &Target::Addr(a)).unwrap();
        let mut answer = vec![5, 0, 5, 0, 0, 3, 4];
        answer.extend_from_slice(b"abcd\x00\x50");
        let (w, r, consumed) = exchange(&mut t, &answer);
        assert_eq!(&w[3..8], &[5, 1, 0, 4, 0xfe]);
        assert_eq!(&w[w.len() - 2..], &[0, 80]);
        assert_eq!((r, consumed), (Ok(true), answer.len()));
        let mut t = Tunnel::new(&proxy("socks5://s"), &name("10.0.0.2", 1)).unwrap();
        let mut answer = vec![5, 0, 5, 0, 0, 4];
        answer.extend_from_slice(&[0; 18]);
        let (w, r, _) = exchange(&mut t, &answer);
        assert_eq!(&w[3..], &[5, 1, 0, 1, 10, 0, 0, 2, 0, 1]);
        assert_eq!(r, Ok(true));
    }

    #[test]
    fn socks5_user_password_then_connect() {
        let mut t = Tunnel::new(&proxy("socks5://me:secret@s"), &name("h", 80)).unwrap();
        let answer = [5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (w, r, _) = exchange(&mut t, &answer);
        let mut expect = vec![5, 2, 0, 2, 1, 2, b'm', b'e', 6];
        expect.extend_from_slice(b"secret");
        expect.extend_from_slice(&[5, 1, 0, 3, 1, b'h', 0, 80]);
        assert_eq!(w, expect);
        assert_eq!(r, Ok(true));
    }

    #[test]
    fn socks5_failures_say_which() {
        let fail = |url: &str, answer: &[u8]| {
            let mut t = Tunnel::new(&proxy(url), &name("h", 80)).unwrap();
            exchange(&mut t, answer).1.unwrap_err().to_string()
        };
        assert_eq!(
            fail("socks5://s", &[5, 0, 5, 4]),
            "proxy: SOCKS5 host unreachable"
        );
        assert_eq!(
            fail("socks5://s", &[5, 0, 5, 5]),
            "proxy: SOCKS5 connection refused"
        );
        assert_eq!(
            fail("socks5://s", &[5, 0, 5, 1]),
            "proxy: SOCKS5 general failure"
        );
        assert_eq!(
            fail("socks5://s", &[5, 0, 5, 2]),
            "proxy: SOCKS5 connection not allowed by ruleset"
        );
        assert_eq!(
            fail("socks5://s", &[5, 0, 5, 0x42]),
            "proxy: SOCKS5 reply 66"
        );
        assert_eq!(
            fail("socks5://s", &[5, 0xFF]),
            "proxy: SOCKS5 no acceptable authentication method"
        );
        assert_eq!(
            fail("socks5://u:p@s", &[5, 2, 1, 1]),
            "proxy: SOCKS5 authentication failed"
        );
        // A method not offered, another protocol, a bad address type.
        assert_eq!(fail("socks5://s", &[5, 2]), "proxy: bad answer");
        assert_eq!(fail("socks5://s", b"HTTP/1.1 400"), "proxy: bad answer");
        assert_eq!(fail("socks5://s", &[5, 0, 5, 0, 0, 9]), "proxy: bad answer");
    }

    #[test]
    fn a_socks5_name_over_255_bytes_cannot_be_sent() {
        let long = "a".repeat(256);
        assert_eq!(
            Tunnel::new(&proxy("socks5h://s"), &name(&long, 1)).unwrap_err(),
            ProxyFailure::NameTooLong
        );
    }

    #[test]
    fn partial_writes_and_one_byte_reads_reach_the_same_end() {
        let mut t = Tunnel::new(&proxy("http://p"), &name("h", 80)).unwrap();
        let total = t.output().len();
        t.wrote(3);
        assert_eq!(t.output().len(), total - 3);
        t.wrote(total);
        for &b in b"HTTP/1.0 200 OK\r\n\r\n" {
            assert!(matches!(t.want(), Want::Read(n) if n >= 1));
            let _ = t.received(&[b]).unwrap();
        }
        assert_eq!(t.want(), Want::Done);
    }
}
