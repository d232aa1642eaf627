//! What a session runs over: the `Wire` seam (a byte stream with a descriptor to poll, and the
//! few socket operations closing needs), and `Transport`, the real one — plain TCP or TLS over
//! TCP. Tests put an in-memory wire in its place.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::sys::{Interest, wait_fd};
use crate::tls::TlsStream;

/// A connection's byte stream, as the session needs it.
pub trait Wire: Read + Write {
    /// The descriptor to poll, or -1 when there is none.
    fn raw_fd(&self) -> RawFd;
    /// Reads below any encryption, to discard input while closing.
    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Half-closes: no more bytes from us (the peer sees the end of the stream).
    fn shutdown_write(&mut self);
    /// Ends encryption politely (TLS close_notify), when there is any.
    fn close_notify(&mut self);
    /// Whether a read that returns less than asked means nothing more is queued (plain TCP;
    /// not TLS, which reads record by record).
    fn short_read_drains(&self) -> bool;
    /// Waits until the wire is ready for `interest` or `timeout` passes; false on timeout.
    fn wait(&self, interest: Interest, timeout: Duration) -> bool;
}

/// TCP or TLS.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => crate::tls::tcp_of(s),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

impl Wire for Transport {
    fn raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut tcp: &TcpStream = self.tcp();
        tcp.read(buf)
    }

    fn shutdown_write(&mut self) {
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
    }

    fn close_notify(&mut self) {
        if let Transport::Tls(t) = self {
            let _ = crate::tls::shutdown(t);
        }
    }

    fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    fn wait(&self, interest: Interest, timeout: Duration) -> bool {
        matches!(wait_fd(self.raw_fd(), interest, timeout), Ok(true))
    }
}

/// An in-memory wire for the session's tests: what the peer sends is queued by hand, what we
/// write is collected, and how much the "socket" takes can be limited to play a peer that
/// stops reading. Waiting moves the test's clock instead of sleeping.
#[cfg(test)]
pub mod memory {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::io::{self, Read, Write};
    use std::os::fd::RawFd;
    use std::rc::Rc;
    use std::time::Duration;

    use super::Wire;
    use crate::clock::Clock;
    use crate::sys::Interest;

    #[derive(Default)]
    pub struct State {
        /// Bytes the peer sent, not yet read.
        pub input: VecDeque<u8>,
        /// The peer closed its side (reads give 0 once `input` is empty).
        pub eof: bool,
        /// The peer reset the connection.
        pub reset: bool,
        /// Bytes we wrote.
        pub output: Vec<u8>,
        /// How many more bytes the socket takes; `None`: any number.
        pub room: Option<usize>,
        pub shut_write: bool,
    }

    /// A handle the test keeps; the session owns a clone.
    #[derive(Clone, Default)]
    pub struct MemWire {
        pub state: Rc<RefCell<State>>,
        pub clock: Clock,
    }

    impl MemWire {
        pub fn new(clock: Clock) -> MemWire {
            MemWire {
                state: Rc::default(),
                clock,
            }
        }

        pub fn push(&self, bytes: &[u8]) {
            self.state.borrow_mut().input.extend(bytes.iter().copied());
        }

        pub fn set_room(&self, room: Option<usize>) {
            self.state.borrow_mut().room = room;
        }

        /// Takes what we wrote so far.
        pub fn take_output(&self) -> Vec<u8> {
            std::mem::take(&mut self.state.borrow_mut().output)
        }
    }

    impl Read for MemWire {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut s = self.state.borrow_mut();
            if s.input.is_empty() {
                return if s.reset {
                    Err(io::ErrorKind::ConnectionReset.into())
                } else if s.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(s.input.len());
            for (dst, src) in buf.iter_mut().zip(s.input.drain(..n)) {
                *dst = src;
            }
            Ok(n)
        }
    }

    impl Write for MemWire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.state.borrow_mut();
            if s.reset {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = s.room.map_or(buf.len(), |r| r.min(buf.len()));
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            s.output.extend_from_slice(&buf[..n]);
            if let Some(r) = &mut s.room {
                *r -= n;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Wire for MemWire {
        fn raw_fd(&self) -> RawFd {
            -1
        }

        fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.read(buf)
        }

        fn shutdown_write(&mut self) {
            self.state.borrow_mut().shut_write = true;
        }

        fn close_notify(&mut self) {}

        fn short_read_drains(&self) -> bool {
            false
        }

        /// Nothing changes while a test waits: the time simply passes.
        fn wait(&self, _interest: Interest, timeout: Duration) -> bool {
            self.clock.advance(timeout);
            false
        }
    }
}
