//! Name resolution (on the opener's helper thread), socket tuning, and taking over a socket a
//! Lua object connected (the `connect` option).

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;

use crate::error::{Error, IoFailure};

/// Resolves the endpoint's host. IP literals skip the resolver.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, IoFailure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                Err(IoFailure::HostNotFound)
            } else {
                Ok(v)
            }
        }
        Err(_) => Err(IoFailure::HostNotFound),
    }
}

/// The first of resolved addresses of a `notify` target, or the error a failed open reports.
pub fn first_address(
    t: &crate::notify::NotifyTarget,
    r: Result<Vec<SocketAddr>, IoFailure>,
) -> Result<SocketAddr, Error> {
    match r.map(|a| a.into_iter().next()) {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(IoFailure::HostNotFound),
        Err(e) => Err(e),
    }
    .map_err(|reason| Error::Connect {
        host: t.host.clone(),
        port: t.port,
        reason,
    })
}

/// Takes over a connected TCP socket that someone else (a Lua object: the `connect` option) also
/// holds: luws gets its own duplicate, tuned like its own sockets. Fails when `fd` is not a
/// socket.
pub fn adopt_socket(fd: std::os::fd::RawFd) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    if fd < 0 || !crate::sys::is_socket(fd) {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    let own = crate::sys::dup_cloexec(fd)?;
    // SAFETY: `own` is a fresh descriptor from dup that nothing else owns.
    let tcp = unsafe { TcpStream::from_raw_fd(own) };
    tune(&tcp);
    Ok(tcp)
}

/// Small messages must not wait for Nagle; keepalive lets the kernel notice a dead peer.
/// Both are best effort: a socket that refuses them still works.
pub fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = crate::sys::set_keepalive(s.as_raw_fd());
}
