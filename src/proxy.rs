//! Which proxy a connection goes through (the `proxy` option): none, one the user names, or
//! the one the environment names for this URL, read the way curl and Python `websockets` read
//! it. The exchange with the proxy is `tunnel`'s.

use crate::endpoint::Endpoint;
use crate::error::{ProxyFailure, ProxyUrlProblem};

/// How the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP `CONNECT host:port` (RFC 9110 §9.3.6), Basic auth if credentials are given.
    HttpConnect,
    /// SOCKS5 (RFC 1928) given an address: luws resolves the target name itself.
    Socks5,
    /// SOCKS5 given the name: the proxy resolves it (curl's `socks5h`).
    Socks5Hostname,
}

/// A proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    /// A name or an IP literal without brackets.
    pub host: String,
    pub port: u16,
    /// User and password (percent-decoded).
    pub credentials: Option<(String, String)>,
}

/// The `proxy` option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// Connect directly (the default: a drop-in must not start routing through a proxy because
    /// the environment names one).
    #[default]
    Direct,
    Via(Proxy),
    /// `proxy = "env"`: `wss_proxy`/`https_proxy`, `ws_proxy`/`http_proxy`, `all_proxy`, minus
    /// `no_proxy`; read at each open (a redirect to another host reads it again).
    FromEnv,
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]`, `socks5://…` or `socks5h://…`. Without a port:
    /// 80 for http (its scheme's), 1080 for SOCKS (the IANA port).
    pub fn parse(text: &str) -> Result<Proxy, ProxyUrlProblem> {
        let url = url::Url::parse(text.trim()).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => ProxyUrlProblem::Scheme,
            url::ParseError::EmptyHost => ProxyUrlProblem::NoHost,
            _ => ProxyUrlProblem::Malformed,
        })?;
        let (kind, default_port) = match url.scheme() {
            "http" => (ProxyKind::HttpConnect, 80),
            "socks5" => (ProxyKind::Socks5, 1080),
            "socks5h" => (ProxyKind::Socks5Hostname, 1080),
            _ => return Err(ProxyUrlProblem::Scheme),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(ProxyUrlProblem::NoHost),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(ProxyUrlProblem::Path);
        }
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err(ProxyUrlProblem::Malformed);
        }
        let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| {
            (
                crate::endpoint::percent_decode(url.username()),
                crate::endpoint::percent_decode(url.password().unwrap_or("")),
            )
        });
        if kind != ProxyKind::HttpConnect {
            if let Some((u, p)) = &credentials {
                if u.len() > 255 || p.len() > 255 {
                    return Err(ProxyUrlProblem::CredentialsTooLong);
                }
            }
        }
        Ok(Proxy {
            kind,
            host,
            port,
            credentials,
        })
    }
}

impl ProxySetting {
    /// The proxy for a connection to `to`, if any; `env` looks a variable up (the process
    /// environment in use, a table in tests).
    pub fn for_endpoint(
        &self,
        to: &Endpoint,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, ProxyFailure> {
        match self {
            ProxySetting::Direct => Ok(None),
            ProxySetting::Via(p) => Ok(Some(p.clone())),
            ProxySetting::FromEnv => from_env(to, env),
        }
    }
}

/// The environment's proxy for `to`. Lower-case names first, as curl; `HTTP_PROXY` is not read
/// (curl ignores it: under CGI it is a request header). Empty values count as unset.
fn from_env(
    to: &Endpoint,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, ProxyFailure> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let no_proxy = get("no_proxy").or_else(|| get("NO_PROXY"));
    if no_proxy.is_some_and(|list| bypassed(&list, &to.host, to.port)) {
        return Ok(None);
    }
    let names: &[&str] = if to.secure {
        &[
            "wss_proxy",
            "WSS_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ]
    } else {
        &[
            "ws_proxy",
            "WS_PROXY",
            "http_proxy",
            "all_proxy",
            "ALL_PROXY",
        ]
    };
    for name in names {
        if let Some(value) = get(name) {
            // curl takes a bare `host:port` as an HTTP proxy.
            let text = if value.contains("://") {
                value.clone()
            } else {
                format!("http://{value}")
            };
            return Proxy::parse(&text)
                .map(Some)
                .map_err(|why| ProxyFailure::BadEnv { var: name, why });
        }
    }
    Ok(None)
}

/// Whether `no_proxy` (comma- or space-separated) exempts `host`: `*` exempts everything; a
/// name exempts itself and its subdomains (a leading dot is optional); an IP address or CIDR
/// block exempts matching IP literals; `entry:port` only that port. Names compare without case.
pub fn bypassed(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip = host.parse::<std::net::IpAddr>().ok();
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches('.').trim_end_matches('.');
            let name = name.to_ascii_lowercase();
            match (ip, name.split_once('/')) {
                (Some(ip), Some((net, bits))) => in_cidr(ip, net, bits),
                (Some(ip), None) => name.parse::<std::net::IpAddr>() == Ok(ip),
                (None, _) => {
                    host == name
                        || host
                            .strip_suffix(name.as_str())
                            .is_some_and(|rest| rest.ends_with('.'))
                }
            }
        })
}

/// `name:port` or `[v6]:port` apart; a bare IPv6 address has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        Some((name, p)) if !name.contains(':') => match p.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_cidr(ip: std::net::IpAddr, net: &str, bits: &str) -> bool {
    use std::net::IpAddr;
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<usize>()) else {
        return false;
    };
    // Octet by octet: no 128-bit arithmetic, which 32-bit targets (Vera) pay for in code size.
    let (a, b): (Vec<u8>, Vec<u8>) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (a.octets().to_vec(), b.octets().to_vec()),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.octets().to_vec(), b.octets().to_vec()),
        _ => return false,
    };
    if bits > a.len() * 8 {
        return false;
    }
    let (whole, rest) = (bits / 8, bits % 8);
    let mask = (0xFF00u16 >> rest) as u8;
    a[..whole] == b[..whole] && (rest == 0 || (a[whole] ^ b[whole]) & mask == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    #[test]
    fn parses_the_three_schemes_with_default_ports_and_credentials() {
        let p = Proxy::parse("http://u%40x:p%3Aw@proxy.lan:3128").unwrap();
        assert_eq!(p.kind, ProxyKind::HttpConnect);
        assert_eq!((p.host.as_str(), p.port), ("proxy.lan", 3128));
        assert_eq!(p.credentials, Some(("u@x".into(), "p:w".into())));
        assert_eq!(Proxy::parse("http://proxy.lan").unwrap().port, 80);
        assert_eq!(Proxy::parse("http://proxy.lan/").unwrap().port, 80);
        let s = Proxy::parse("socks5://10.0.0.1").unwrap();
        assert_eq!(
            (s.kind, s.port, s.credentials),
            (ProxyKind::Socks5, 1080, None)
        );
        let h = Proxy::parse("socks5h://[::1]:9050").unwrap();
        assert_eq!(
            (h.kind, h.host.as_str(), h.port),
            (ProxyKind::Socks5Hostname, "::1", 9050)
        );
    }

    #[test]
    fn refuses_what_is_no_proxy_url() {
        assert_eq!(Proxy::parse("https://p:1"), Err(ProxyUrlProblem::Scheme));
        assert_eq!(Proxy::parse("socks4://p:1"), Err(ProxyUrlProblem::Scheme));
        assert_eq!(Proxy::parse("proxy.lan:3128"), Err(ProxyUrlProblem::Scheme));
        assert_eq!(Proxy::parse("http://:3128"), Err(ProxyUrlProblem::NoHost));
        assert_eq!(
            Proxy::parse("http://p:99999"),
            Err(ProxyUrlProblem::Malformed)
        );
        assert_eq!(Proxy::parse("http://p:1/x"), Err(ProxyUrlProblem::Path));
        let long = format!("socks5://{}:p@h", "u".repeat(256));
        assert_eq!(
            Proxy::parse(&long),
            Err(ProxyUrlProblem::CredentialsTooLong)
        );
        // HTTP Basic has no such limit.
        assert!(Proxy::parse(&long.replace("socks5", "http")).is_ok());
    }

    #[test]
    fn env_picks_by_scheme_lower_case_first_and_skips_empty_values() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let env = vars(&[
            ("https_proxy", "http://tls-proxy:1"),
            ("HTTPS_PROXY", "http://upper:1"),
            ("http_proxy", "proxy:2"),
            ("HTTP_PROXY", "http://never:3"),
            ("wss_proxy", " "),
        ]);
        let s = ProxySetting::FromEnv;
        let p = s.for_endpoint(&ep("wss://hub/"), env).unwrap().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("tls-proxy", 1));
        let p = s.for_endpoint(&ep("ws://hub/"), env).unwrap().unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::HttpConnect, "proxy", 2)
        );
        let only_upper = vars(&[("HTTP_PROXY", "http://never:3")]);
        assert_eq!(s.for_endpoint(&ep("ws://hub/"), only_upper), Ok(None));
        let all = vars(&[("ALL_PROXY", "socks5h://s:1080")]);
        let p = s.for_endpoint(&ep("wss://hub/"), all).unwrap().unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5Hostname);
        let ws = vars(&[("ws_proxy", "socks5://w:1"), ("http_proxy", "http://h:1")]);
        assert_eq!(
            s.for_endpoint(&ep("ws://hub/"), ws).unwrap().unwrap().host,
            "w"
        );
    }

    #[test]
    fn env_names_the_variable_whose_value_is_bad() {
        let env = |k: &str| (k == "https_proxy").then(|| "ftp://p:1".to_string());
        let e = ProxySetting::FromEnv
            .for_endpoint(&ep("wss://hub/"), env)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "proxy: bad https_proxy (scheme must be http://, socks5:// or socks5h://)"
        );
    }

    #[test]
    fn direct_ignores_the_environment() {
        let env = |_: &str| Some("http://p:1".to_string());
        assert_eq!(
            ProxySetting::Direct.for_endpoint(&ep("ws://hub/"), env),
            Ok(None)
        );
    }

    #[test]
    fn no_proxy_exempts_names_domains_addresses_blocks_and_ports() {
        assert!(bypassed("*", "anything", 1));
        assert!(bypassed("example.com", "example.com", 80));
        assert!(bypassed("example.com", "hub.example.com", 80));
        assert!(bypassed(".example.com", "hub.Example.COM", 80));
        assert!(!bypassed("example.com", "badexample.com", 80));
        assert!(!bypassed("hub.example.com", "example.com", 80));
        assert!(bypassed("localhost, 127.0.0.1", "127.0.0.1", 80));
        assert!(bypassed("a b,192.168.0.0/16", "192.168.4.7", 80));
        assert!(!bypassed("192.168.0.0/16", "192.169.0.1", 80));
        assert!(bypassed("::1", "::1", 80));
        assert!(bypassed("fd00::/8", "fd12::1", 80));
        assert!(bypassed("hub:8080", "hub", 8080));
        assert!(!bypassed("hub:8080", "hub", 80));
        assert!(bypassed("[::1]:80", "::1", 80));
        assert!(!bypassed("", "hub", 80));
        assert!(bypassed("0.0.0.0/0", "10.1.2.3", 80));
        assert!(bypassed("172.16.0.0/12", "172.31.255.1", 80));
        assert!(!bypassed("172.16.0.0/12", "172.32.0.1", 80));
        assert!(!bypassed("10.0.0.0/33", "10.0.0.1", 80));
        assert!(!bypassed("10.0.0.0/8", "::1", 80));
    }

    #[test]
    fn env_honours_no_proxy_in_either_case() {
        let env = |k: &str| match k {
            "http_proxy" => Some("http://p:1".to_string()),
            "NO_PROXY" => Some("lan".to_string()),
            _ => None,
        };
        let s = ProxySetting::FromEnv;
        assert_eq!(s.for_endpoint(&ep("ws://hub.lan/"), env), Ok(None));
        assert!(
            s.for_endpoint(&ep("ws://hub.example/"), env)
                .unwrap()
                .is_some()
        );
    }
}
