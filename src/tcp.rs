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

/// Resolves within `deadline`: getaddrinfo cannot be interrupted, so a name runs on a helper
/// thread (which never touches Lua, and may finish after we stopped waiting).
pub fn resolve_until(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if host.parse::<IpAddr>().is_ok() {
        return resolve(host, port);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("luws-resolve".into())
        .spawn(move || {
            let _ = tx.send(resolve(&name, port));
        })
        .map_err(|e| io_words(&e))?;
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err("timeout".into()),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(HOST_NOT_FOUND.into()),
    }
}

/// The `notify` target's address, resolved within `deadline`: the watcher thread must never
/// resolve a name itself (getaddrinfo has no bound).
pub fn resolve_notify(
    t: &crate::notify::NotifyTarget,
    deadline: Instant,
) -> Result<SocketAddr, Error> {
    first_address(t, resolve_until(&t.host, t.port, deadline))
}

/// The first of resolved addresses of a `notify` target, or the error a failed open reports.
pub fn first_address(
    t: &crate::notify::NotifyTarget,
    r: Result<Vec<SocketAddr>, String>,
) -> Result<SocketAddr, Error> {
    match r.map(|a| a.into_iter().next()) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(HOST_NOT_FOUND.to_string()),
        Err(e) => Err(e),
    }
    .map_err(|reason| Error::Connect {
        host: t.host.clone(),
        port: t.port,
        reason,
    })
}

/// Connects to the first address that answers before `deadline`.
pub fn connect(ep: &Endpoint, deadline: Instant) -> Result<TcpStream, Error> {
    let fail = |reason: String| Error::Connect {
        host: ep.host.clone(),
        port: ep.port,
        reason,
    };
    let addrs = resolve_until(&ep.host, ep.port, deadline).map_err(fail)?;
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
