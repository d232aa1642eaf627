//! Opening a connection the blocking way (`wsopen`): the non-blocking opener (`connecting`)
//! driven by a short poll loop, so both APIs share one sequence, one set of deadlines (the
//! opener's `connect_timeout` and `handshake_timeout`) and one set of errors.

use std::net::TcpStream;

use crate::connecting::{Connecting, Progress};
use crate::error::Error;
use crate::session::Session;
use crate::spec::OpenSpec;
use crate::sys::wait_fd;

/// Opens a connection, blocking for at most the two timeouts. `socket` is a TCP connection the
/// caller already made (the `connect` option); otherwise luws connects itself.
pub fn open_blocking(spec: OpenSpec, socket: Option<TcpStream>) -> Result<Session, Error> {
    let mut opening = Connecting::start(spec, socket);
    loop {
        if let Progress::Ready(s) = opening.advance()? {
            return Ok(*s);
        }
        let left = opening
            .deadline()
            .saturating_duration_since(std::time::Instant::now());
        // advance() reports the deadline itself; without a descriptor there is nothing to wait on.
        if let Some((fd, interest)) = opening.interest() {
            let _ = wait_fd(fd, interest, left);
        }
    }
}
