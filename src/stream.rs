//! The byte stream under the WebSocket: a `Wire` with a per-call read budget (and, when the user
//! turned masking off, the unmasking adapter).
//!
//! The budget is how `wsreceive` bounds its work: once a call has read its share, the stream
//! reports `WouldBlock`, which tungstenite treats as "no data yet" and keeps its partial frame.

use std::io::{self, Read, Write};

use crate::unmask::Unmasked;
use crate::wire::{Transport, Wire};

/// How bytes reach the transport: as tungstenite writes them, or with the masking taken off
/// (the user's `use_masking = false`).
enum Io<W> {
    Direct(W),
    Unmasked(Box<Unmasked<W>>),
}

/// A wire plus the read budget of the current `wsreceive` call.
pub struct Stream<W = Transport> {
    io: Io<W>,
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
    /// A stream that sends frames as tungstenite formats them (masked, RFC 6455 §5.3), or with
    /// `masking` false, unmasked.
    pub fn new(transport: W, masking: bool) -> Stream<W> {
        Stream {
            io: if masking {
                Io::Direct(transport)
            } else {
                Io::Unmasked(Box::new(Unmasked::new(transport)))
            },
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
    /// budget): this call already saw the kernel queue empty, or a peek finds it empty.
    pub fn nothing_to_read(&self) -> bool {
        self.budget != 0 && (self.drained || self.wire().nothing_queued())
    }

    /// Whether the last WouldBlock was the budget's (the socket may still hold data).
    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn wire(&self) -> &W {
        match &self.io {
            Io::Direct(t) => t,
            Io::Unmasked(u) => u.get_ref(),
        }
    }

    pub fn wire_mut(&mut self) -> &mut W {
        match &mut self.io {
            Io::Direct(t) => t,
            Io::Unmasked(u) => u.get_mut(),
        }
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
        let n = match &mut self.io {
            Io::Direct(t) => t.write(buf)?,
            Io::Unmasked(u) => u.write(buf)?,
        };
        self.written += n as u64;
        Ok(n)
    }

    /// With masking off, reports `WouldBlock` while rewritten bytes are still held.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.io {
            Io::Direct(t) => t.flush(),
            Io::Unmasked(u) => u.flush(),
        }
    }
}

/// Folds `WouldBlock` into `Ok(None)`: the one place where "no data yet" stops being an error,
/// for socket results and tungstenite's alike.
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

impl<T> NoBlock<T, tungstenite::Error> for tungstenite::Result<T> {
    fn no_block(self) -> tungstenite::Result<Option<T>> {
        match self {
            Err(tungstenite::Error::Io(e)) => Err(e).no_block().map_err(tungstenite::Error::Io),
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(e),
        }
    }
}
