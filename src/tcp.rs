//! TCP connections with a deadline: name resolution, then each address in turn.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::endpoint::Endpoint;
use crate::error::{Error, io_words};

/// The reason LuaSocket gives when a name does not resolve.
pub const HOST_NOT_FOUND: &str = "host not found";

/// Resolves the endpoint's host. IP literals skip the resolver.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                Err(HOST_NOT_FOUND.into())
            } else {
                Ok(v)
            }
        }
        Err(_) => Err(HOST_NOT_FOUND.into()),
    }
}

/// Connects to the first address that answers before `deadline`.
pub fn connect(ep: &Endpoint, deadline: Instant) -> Result<TcpStream, Error> {
    let fail = |reason: String| Error::Connect {
        host: ep.host.clone(),
        port: ep.port,
        reason,
    };
    let addrs = resolve(&ep.host, ep.port).map_err(fail)?;
    let mut last = String::from("timeout");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail("timeout".into()));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                tune(&s);
                return Ok(s);
            }
            Err(e) => last = io_words(&e),
        }
    }
    Err(fail(last))
}

/// Small messages must not wait for Nagle; keepalive lets the kernel notice a dead peer.
/// Both are best effort: a socket that refuses them still works.
pub fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = crate::sys::set_keepalive(s.as_raw_fd());
}
