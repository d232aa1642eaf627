//! A `ws://` or `wss://` URL taken apart into what the connection needs (RFC 6455 §3).

use crate::error::{Error, UrlProblem};

/// Where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `wss://`: TLS first.
    pub secure: bool,
    /// Host for name resolution and SNI: a domain (IDNA-encoded) or an IP literal without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query for the request line; never empty.
    pub resource: String,
    /// The `Host` header value: the port is included when it is not the scheme's default.
    pub host_header: String,
    /// `user:password@` from the URL, for a Basic `Authorization` header.
    pub userinfo: Option<String>,
}

impl Endpoint {
    /// Parses a URL string. Every failure is `Error::BadUrl`, returned to Lua as `false, err`.
    pub fn parse(text: &str) -> Result<Endpoint, Error> {
        let bad = |why: UrlProblem| Error::BadUrl {
            url: text.to_string(),
            why,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad(UrlProblem::Empty));
        }
        let lower = trimmed.get(..6).unwrap_or(trimmed).to_ascii_lowercase();
        let rest = if lower.starts_with("ws://") {
            &trimmed[5..]
        } else if lower.starts_with("wss://") {
            &trimmed[6..]
        } else {
            return Err(bad(UrlProblem::Scheme));
        };
        // The url crate repairs `ws:///x` into host `x`; a missing host must stay an error.
        if rest.is_empty() || rest.starts_with(['/', '?', '#', ':']) {
            return Err(bad(UrlProblem::NoHost));
        }
        let url = url::Url::parse(trimmed).map_err(|e| {
            bad(match e {
                url::ParseError::InvalidPort => UrlProblem::Port,
                url::ParseError::EmptyHost => UrlProblem::NoHost,
                url::ParseError::InvalidIpv6Address | url::ParseError::InvalidIpv4Address => {
                    UrlProblem::IpAddress
                }
                url::ParseError::IdnaError | url::ParseError::InvalidDomainCharacter => {
                    UrlProblem::HostName
                }
                _ => UrlProblem::Malformed,
            })
        })?;
        if url.fragment().is_some() {
            // RFC 6455 §3: fragment identifiers MUST NOT be used in WebSocket URIs.
            return Err(bad(UrlProblem::Fragment));
        }
        let secure = url.scheme() == "wss";
        let default_port = if secure { 443 } else { 80 };
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err(bad(UrlProblem::Port));
        }
        let (host, bracketed) = match url.host() {
            Some(url::Host::Domain(d)) => (d.to_string(), d.to_string()),
            Some(url::Host::Ipv4(a)) => (a.to_string(), a.to_string()),
            Some(url::Host::Ipv6(a)) => (a.to_string(), format!("[{a}]")),
            None => return Err(bad(UrlProblem::NoHost)),
        };
        let host_header = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let mut resource = url.path().to_string();
        if resource.is_empty() {
            resource.push('/');
        }
        if let Some(q) = url.query() {
            resource.push('?');
            resource.push_str(q);
        }
        let userinfo = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(format!(
                "{}:{}",
                percent_decode(url.username()),
                percent_decode(url.password().unwrap_or(""))
            ))
        };
        Ok(Endpoint {
            secure,
            host,
            port,
            resource,
            host_header,
            userinfo,
        })
    }

    /// The URL, without credentials (`conn:url()`).
    pub fn url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.host_header, self.resource)
    }

    /// Where a redirect's `Location` points, relative to this URL; `http`/`https` become
    /// `ws`/`wss` (a server may name its page). `None` when it is no usable WebSocket URL.
    pub fn redirected(&self, location: &str) -> Option<Endpoint> {
        let base = url::Url::parse(&self.url()).ok()?;
        let mut target = base.join(location.trim()).ok()?;
        let scheme = match target.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            _ => return None,
        };
        // Special schemes switch among themselves; the URL stays the same otherwise.
        target.set_scheme(scheme).ok()?;
        target.set_fragment(None);
        Endpoint::parse(target.as_str()).ok()
    }

    /// `host:port` as LuWS prints it in `tostring(conn)` and connect errors.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Endpoint {
        match Endpoint::parse(s) {
            Ok(e) => e,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn why(s: &str) -> String {
        match Endpoint::parse(s) {
            Err(Error::BadUrl { why, .. }) => why.to_string(),
            other => panic!("{s}: expected BadUrl, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_parts() {
        let e = ok("ws://example.com");
        assert_eq!((e.secure, e.port, e.resource.as_str()), (false, 80, "/"));
        assert_eq!(e.host_header, "example.com");
        let e = ok("wss://example.com/a/b?x=1&y=2");
        assert_eq!((e.secure, e.port), (true, 443));
        assert_eq!(e.resource, "/a/b?x=1&y=2");
        let e = ok("WS://Example.COM:8080/p");
        assert_eq!(e.host, "example.com");
        assert_eq!(e.host_header, "example.com:8080");
        assert_eq!(e.host_port(), "example.com:8080");
    }

    #[test]
    fn ipv6_literals_are_bracketed_in_host_header_only() {
        let e = ok("ws://[::1]:9000/x");
        assert_eq!(e.host, "::1");
        assert_eq!(e.host_header, "[::1]:9000");
        assert_eq!(e.host_port(), "[::1]:9000");
        assert_eq!(ok("wss://[2001:db8::1]/").host_header, "[2001:db8::1]");
    }

    #[test]
    fn default_port_written_explicitly_is_left_out_of_host() {
        assert_eq!(ok("ws://h:80/").host_header, "h");
        assert_eq!(ok("wss://h:443/").host_header, "h");
        assert_eq!(ok("wss://h:80/").host_header, "h:80");
    }

    #[test]
    fn userinfo_is_kept_for_basic_auth() {
        assert_eq!(
            ok("ws://user:p%40ss@h/").userinfo.as_deref(),
            Some("user:p@ss")
        );
        assert_eq!(ok("ws://h/").userinfo, None);
    }

    #[test]
    fn bad_urls_are_errors_not_panics() {
        assert_eq!(why(""), "empty URL");
        assert_eq!(why("   "), "empty URL");
        assert_eq!(why("http://h/"), "scheme must be ws:// or wss://");
        assert_eq!(why("h:80"), "scheme must be ws:// or wss://");
        assert_eq!(why("ws://"), "no host");
        assert_eq!(why("ws:///path"), "no host");
        assert_eq!(why("ws://:80/"), "no host");
        assert_eq!(why("ws://h:70000/"), "port out of range");
        assert_eq!(why("ws://h:0/"), "port out of range");
        assert_eq!(why("ws://h/#frag"), "fragment (#) not allowed");
        assert_eq!(why("ws://[::1/"), "invalid IP address");
    }

    #[test]
    fn error_text_names_the_url() {
        let e = Endpoint::parse("ftp://x").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "Invalid protocol/address for WebSocket open in ftp://x: scheme must be ws:// or wss://"
            )
        );
    }

    #[test]
    fn redirects_resolve_against_the_url_and_map_http_to_ws() {
        let ep = Endpoint::parse("ws://user:pw@hub:8080/a/b?x=1").unwrap();
        let to = |loc: &str| ep.redirected(loc).map(|e| e.url());
        assert_eq!(to("/c?y=2").as_deref(), Some("ws://hub:8080/c?y=2"));
        assert_eq!(to("d").as_deref(), Some("ws://hub:8080/a/d"));
        assert_eq!(to("http://other/x").as_deref(), Some("ws://other/x"));
        assert_eq!(
            to("https://other:8443/").as_deref(),
            Some("wss://other:8443/")
        );
        assert_eq!(to("wss://other/#frag").as_deref(), Some("wss://other/"));
        assert_eq!(to("ftp://other/x"), None);
        // The URL keeps no credentials; the opener decides whether they follow.
        assert_eq!(ep.url(), "ws://hub:8080/a/b?x=1");
    }
}
