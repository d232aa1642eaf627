//! The byte stream under the WebSocket: a `Wire` with a per-call read budget.
//!
//! The budget is how `wsreceive` bounds its work: once a call has read its share, the stream
//! reports `WouldBlock`, which the frame reader treats as "no data yet", keeping its partial
//! frame.

use std::io::{self, Read, Write};

use crate::wire::{Transport, Wire};

/// A wire plus the read budget of the current `wsreceive` call.
pub struct Stream<W = Transport> {
    io: W,
    /// Bytes this call may still read; 0 makes reads report WouldBlock.
    budget: usize,
    /// Bytes read since the budget was last set.
    read_in_call: usize,
    /// The last WouldBlock came from the budget, not the socket: data may be waiting.
    paused: bool,
    /// A plain TCP read in this call returned less than asked: the kernel queue was empty, so
    /// another read would only say EAGAIN. Saves that system call (and tungstenite's buffer
    /// zeroing) at the end of every active receive. Not for TLS, which reads record by record.
    drained: bool,
    /// Bytes the transport has taken so far: how the session tells a slow peer from a stuck one.
    written: u64,
}

impl<W: Wire> Stream<W> {
    pub fn new(transport: W) -> Stream<W> {
        Stream {
            io: transport,
            budget: usize::MAX,
            read_in_call: 0,
            paused: false,
            drained: false,
            written: 0,
        }
    }

    /// Starts a call that may read up to `budget` bytes.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        self.read_in_call = 0;
        self.paused = false;
        self.drained = false;
    }

    pub fn read_in_call(&self) -> usize {
        self.read_in_call
    }

    /// Bytes written to the transport since the session began.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// True when a read now would certainly report WouldBlock from the socket (not from the
    /// budget): this call already saw the kernel queue empty. (No peek otherwise: a read that
    /// finds nothing costs the same one system call, and one that finds data saves it.)
    pub fn nothing_to_read(&self) -> bool {
        self.budget != 0 && self.drained
    }

    /// Whether the last WouldBlock was the budget's (the socket may still hold data).
    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn wire(&self) -> &W {
        &self.io
    }

    pub fn wire_mut(&mut self) -> &mut W {
        &mut self.io
    }
}

impl<W: Wire> Read for Stream<W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget == 0 {
            self.paused = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let want = buf.len().min(self.budget);
        let n = self.wire_mut().read(&mut buf[..want])?;
        self.budget -= n;
        self.read_in_call += n;
        if n > 0 && n < want && self.wire().short_read_drains() {
            self.drained = true;
        }
        Ok(n)
    }
}

impl<W: Wire> Write for Stream<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.io.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

/// Folds `WouldBlock` into `Ok(None)`: the one place where "no data yet" stops being an error,
/// for socket results.
pub trait NoBlock<T, E> {
    fn no_block(self) -> Result<Option<T>, E>;
}

impl<T> NoBlock<T, io::Error> for io::Result<T> {
    fn no_block(self) -> io::Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}
