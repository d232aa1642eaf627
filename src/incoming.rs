//! The receiving half of the protocol: the server's bytes in, RFC 6455 frames checked (and
//! inflated, RFC 7692, when compression was agreed), messages out. Socket-free: it reads from
//! any `Read`, so tests drive it with literal frames.
//!
//! Frame headers are read into tungstenite's public `FrameHeader` (see `read_header` for why
//! not by its `parse`); the buffering is ours, so that a read never zeroes its buffer again (the buffer is zeroed once,
//! when it grows) and a message that arrived in one frame is handed out as a slice of the
//! read buffer, without a copy or an allocation.

use std::io::{self, ErrorKind, Read};

use tungstenite::Bytes;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, FrameHeader, Utf8Bytes};

use crate::deflate::{InflateError, Inflater};

/// What one step produced.
#[derive(Debug)]
pub enum Item {
    /// A complete data message, text already checked as UTF-8; its bytes are `message()`.
    Message {
        text: bool,
    },
    Ping(Bytes),
    Pong(Bytes),
    /// The peer's Close (`None`: no status code).
    Close(Option<CloseFrame>),
}

/// Why the stream can go no further.
#[derive(Debug)]
pub enum Fault {
    /// The peer broke RFC 6455 (or RFC 7692): Close 1002.
    Protocol(&'static str),
    /// A text message or a Close reason that is not UTF-8: Close 1007.
    InvalidUtf8,
    /// A compressed message that does not inflate: Close 1007.
    BadCompression,
    /// A message over `max_payload_size` (inflated size, for a compressed one): Close 1009.
    TooBig {
        size: u64,
    },
    /// The peer ended the byte stream.
    Closed,
    Io(io::Error),
}

/// The message being reassembled from fragments, or inflated.
#[derive(Debug, Clone, Copy)]
struct Partial {
    text: bool,
    compressed: bool,
}

/// Where the bytes of the last message are.
#[derive(Debug, Clone, Copy)]
enum Held {
    Nothing,
    /// `buf[from..to]`: a single-frame message, still in the read buffer.
    Buffer(usize, usize),
    /// `assembled`: a fragmented or compressed message.
    Assembled,
}

/// What parsing the buffer got to.
enum Step {
    Item(Item),
    /// A frame was taken that completes nothing yet (a fragment).
    Consumed,
    /// The next frame is not all here.
    NeedMore,
}

/// Largest frame header (RFC 6455 §5.2).
const MAX_HEADER: usize = 14;

/// A read buffer beyond this (grown for one large frame) is given back once empty, so an idle
/// connection holds only about its chunk size.
const KEEP_BUFFER: usize = 64 * 1024;

pub struct Incoming {
    /// Received bytes not yet consumed: `buf[start..end]`. Always initialised (zeroed once as
    /// it grows), so reads reuse it as it is; never shorter than `chunk`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Largest socket read (LuWS `receive_chunk_size`).
    chunk: usize,
    /// Largest message (LuWS `max_payload_size`).
    max_payload: usize,
    /// Bytes the frame at `start` needs in all, once its header is known.
    frame_len: usize,
    partial: Option<Partial>,
    assembled: Vec<u8>,
    /// Bytes of `assembled` known to be UTF-8 (the check runs as fragments arrive, so a bad
    /// message fails before it is complete).
    checked: usize,
    inflater: Option<Inflater>,
    held: Held,
    /// The last step ended wanting bytes the source did not have.
    starved: bool,
}

impl Incoming {
    /// Starts with `leftover`, the bytes read past the handshake; `inflater` when
    /// permessage-deflate was agreed.
    pub fn new(
        leftover: Vec<u8>,
        chunk: usize,
        max_payload: usize,
        inflater: Option<Inflater>,
    ) -> Incoming {
        let end = leftover.len();
        let mut buf = leftover;
        let chunk = chunk.max(1);
        if buf.len() < chunk {
            buf.resize(chunk, 0);
        }
        Incoming {
            buf,
            start: 0,
            end,
            chunk,
            max_payload,
            frame_len: 0,
            partial: None,
            assembled: Vec::new(),
            checked: 0,
            inflater,
            held: Held::Nothing,
            starved: end == 0,
        }
    }

    /// True when a step could produce nothing without reading: nothing is buffered, or the
    /// last step found no complete frame and nothing has arrived since. With the source empty
    /// too, a step would only hear `WouldBlock`. Forgets a message already handed out, as a
    /// step would.
    pub fn needs_read(&mut self) -> bool {
        if self.start == self.end {
            if !matches!(self.held, Held::Nothing) {
                self.release();
            }
            return true;
        }
        self.starved
    }

    /// The bytes of the message the last step returned (valid until the next step).
    pub fn message(&self) -> &[u8] {
        match self.held {
            Held::Nothing => &[],
            Held::Buffer(from, to) => &self.buf[from..to],
            Held::Assembled => &self.assembled,
        }
    }

    /// The next item, reading from `src` as needed. `Ok(None)`: `src` would block.
    pub fn next<R: Read>(&mut self, src: &mut R) -> Result<Option<Item>, Fault> {
        if self.start == self.end && matches!(self.held, Held::Nothing) {
            // Nothing buffered: straight to the read (the idle receive, the one most made).
            self.start = 0;
            self.end = 0;
            match src.read(&mut self.buf[..self.chunk]) {
                Ok(0) => return Err(Fault::Closed),
                Ok(n) => self.end = n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.starved = true;
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        } else {
            self.release();
        }
        loop {
            match self.parse()? {
                Step::Item(item) => {
                    self.starved = false;
                    return Ok(Some(item));
                }
                Step::Consumed => continue,
                Step::NeedMore => {}
            }
            self.make_room();
            let to = (self.end + self.chunk).min(self.buf.len());
            match src.read(&mut self.buf[self.end..to]) {
                Ok(0) => return Err(Fault::Closed),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.starved = true;
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        }
    }

    /// Forgets the last message; gives back buffers that one large message grew.
    fn release(&mut self) {
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Nothing | Held::Buffer(..) => {}
            Held::Assembled => {
                self.assembled.clear();
                self.checked = 0;
                if self.assembled.capacity() > KEEP_BUFFER {
                    self.assembled = Vec::new();
                }
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUFFER.max(self.chunk) {
                self.buf = vec![0; self.chunk];
            }
        }
    }

    /// Room for one more read: moves the unconsumed bytes to the front, and grows the buffer
    /// (zeroing only the growth) to hold a whole frame.
    fn make_room(&mut self) {
        if self.start > 0 && self.buf.len() - self.end < self.chunk {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = self.frame_len.max(self.end - self.start + self.chunk);
        if self.buf.len() - self.start < want {
            self.buf.resize(self.start + want, 0);
        }
    }

    /// One frame from the buffer, if it is complete.
    fn parse(&mut self) -> Result<Step, Fault> {
        let avail = &self.buf[self.start..self.end];
        let Some((header, head, len)) = read_header(avail) else {
            self.frame_len = MAX_HEADER;
            return Ok(Step::NeedMore);
        };
        if matches!(
            header.opcode,
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_))
        ) {
            return Err(Fault::Protocol("unknown opcode"));
        }
        self.check(&header, len)?;
        // `check` bounded `len` by max_payload_size (plus deflate's slack).
        let total = head + len as usize;
        if avail.len() < total {
            self.frame_len = total;
            return Ok(Step::NeedMore);
        }
        self.frame_len = 0;
        let from = self.start + head;
        let to = self.start + total;
        self.start = to;
        match header.opcode {
            OpCode::Control(Control::Ping) => Ok(Step::Item(Item::Ping(Bytes::copy_from_slice(
                &self.buf[from..to],
            )))),
            OpCode::Control(Control::Pong) => Ok(Step::Item(Item::Pong(Bytes::copy_from_slice(
                &self.buf[from..to],
            )))),
            OpCode::Control(_) => {
                close_frame(&self.buf[from..to]).map(|f| Step::Item(Item::Close(f)))
            }
            OpCode::Data(Data::Continue) => self.fragment(from, to, header.is_final),
            OpCode::Data(data) => {
                let text = matches!(data, Data::Text);
                if header.is_final && !header.rsv1 {
                    // The common case: the whole message in one frame, lent from the buffer.
                    if text && !crate::utf8::is_utf8(&self.buf[from..to]) {
                        return Err(Fault::InvalidUtf8);
                    }
                    self.held = Held::Buffer(from, to);
                    return Ok(Step::Item(Item::Message { text }));
                }
                self.partial = Some(Partial {
                    text,
                    compressed: header.rsv1,
                });
                self.fragment(from, to, header.is_final)
            }
        }
    }

    /// The checks a header allows before its payload is read (RFC 6455 §5.2–5.5, RFC 7692 §6).
    fn check(&self, h: &FrameHeader, len: u64) -> Result<(), Fault> {
        if h.mask.is_some() {
            return Err(Fault::Protocol("masked frame from server"));
        }
        if h.rsv2 || h.rsv3 {
            return Err(Fault::Protocol("reserved bits set"));
        }
        if len >> 63 != 0 {
            return Err(Fault::Protocol("invalid frame length"));
        }
        match h.opcode {
            OpCode::Control(_) => {
                if h.rsv1 {
                    return Err(Fault::Protocol("reserved bits set"));
                }
                if !h.is_final {
                    return Err(Fault::Protocol("fragmented control frame"));
                }
                if len > 125 {
                    return Err(Fault::Protocol("control frame too big"));
                }
                return Ok(());
            }
            OpCode::Data(Data::Continue) => {
                if self.partial.is_none() {
                    return Err(Fault::Protocol("continuation frame without a message"));
                }
                // RFC 7692 §6.1: RSV1 marks the first frame of a message only.
                if h.rsv1 {
                    return Err(Fault::Protocol("reserved bits set"));
                }
            }
            OpCode::Data(_) => {
                if self.partial.is_some() {
                    return Err(Fault::Protocol("new message inside a fragmented one"));
                }
                if h.rsv1 && self.inflater.is_none() {
                    return Err(Fault::Protocol("reserved bits set"));
                }
            }
        }
        let compressed = h.rsv1 || self.partial.is_some_and(|p| p.compressed);
        let so_far = if compressed {
            0
        } else {
            self.assembled.len() as u64
        };
        let size = so_far.saturating_add(len);
        // Compressed frames are bounded too, with room for incompressible data's overhead;
        // the inflated size is checked while inflating.
        let max = self.max_payload as u64;
        let limit = if compressed { max + max / 64 + 64 } else { max };
        if size > limit {
            return Err(Fault::TooBig { size });
        }
        Ok(())
    }

    /// Adds a data frame's payload (`buf[from..to]`) to the message being assembled.
    fn fragment(&mut self, from: usize, to: usize, last: bool) -> Result<Step, Fault> {
        let Some(p) = self.partial else {
            return Err(Fault::Protocol("continuation frame without a message"));
        };
        let max = self.max_payload;
        if p.compressed {
            let inflater = self
                .inflater
                .as_mut()
                .ok_or(Fault::Protocol("reserved bits set"))?;
            inflater
                .inflate(&self.buf[from..to], &mut self.assembled, max)
                .map_err(inflate_fault)?;
            if last {
                inflater
                    .finish(&mut self.assembled, max)
                    .map_err(inflate_fault)?;
            }
        } else {
            self.assembled.extend_from_slice(&self.buf[from..to]);
        }
        if p.text {
            self.check_utf8(last)?;
        }
        if !last {
            return Ok(Step::Consumed);
        }
        self.partial = None;
        self.held = Held::Assembled;
        Ok(Step::Item(Item::Message { text: p.text }))
    }

    /// Checks the bytes assembled since the last check; an incomplete sequence at the end is
    /// allowed until the message is complete.
    fn check_utf8(&mut self, last: bool) -> Result<(), Fault> {
        match std::str::from_utf8(&self.assembled[self.checked..]) {
            Ok(_) => self.checked = self.assembled.len(),
            Err(e) if e.error_len().is_none() && !last => self.checked += e.valid_up_to(),
            Err(_) => return Err(Fault::InvalidUtf8),
        }
        Ok(())
    }
}

/// The frame header at the front of `b` (RFC 6455 §5.2) as tungstenite's `FrameHeader`, with
/// the header's size and the payload length; `None` until the whole header has arrived.
/// Read here rather than by `FrameHeader::parse`, whose `Read`-based interface (a `Cursor`,
/// `read_exact`, an `io::Result`) costs about 150 instructions a frame: with a 32-byte message,
/// a third of what luws spends on it.
fn read_header(b: &[u8]) -> Option<(FrameHeader, usize, u64)> {
    let [first, second, ..] = *b else {
        return None;
    };
    let (mut head, len) = match second & 0x7F {
        126 => (4, u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]))),
        127 => (10, u64::from_be_bytes(b.get(2..10)?.try_into().ok()?)),
        n => (2, u64::from(n)),
    };
    let mask = if second & 0x80 != 0 {
        let m = b.get(head..head + 4)?;
        head += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    let header = FrameHeader {
        is_final: first & 0x80 != 0,
        rsv1: first & 0x40 != 0,
        rsv2: first & 0x20 != 0,
        rsv3: first & 0x10 != 0,
        opcode: opcode(first & 0x0F),
        mask,
    };
    Some((header, head, len))
}

/// tungstenite's `OpCode::from`, with the data opcodes (nearly every frame) tested first.
fn opcode(bits: u8) -> OpCode {
    match bits {
        1 => OpCode::Data(Data::Text),
        2 => OpCode::Data(Data::Binary),
        _ => OpCode::from(bits),
    }
}

fn inflate_fault(e: InflateError) -> Fault {
    match e {
        InflateError::Corrupt => Fault::BadCompression,
        InflateError::TooBig { size } => Fault::TooBig { size },
    }
}

/// A Close body (RFC 6455 §5.5.1, §7.4): empty, or a code that may be sent and a UTF-8 reason.
fn close_frame(body: &[u8]) -> Result<Option<CloseFrame>, Fault> {
    match body {
        [] => Ok(None),
        [_] => Err(Fault::Protocol("invalid close frame")),
        [a, b, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*a, *b]));
            let reason = Utf8Bytes::try_from(Bytes::copy_from_slice(reason))
                .map_err(|_| Fault::InvalidUtf8)?;
            if !code.is_allowed() {
                return Err(Fault::Protocol("invalid close code"));
            }
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// A source that hands out `data` in pieces of `piece` bytes, then would block.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        piece: usize,
        eof: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.piece).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn src(data: &[u8], piece: usize) -> Pieces {
        Pieces {
            data: data.to_vec(),
            at: 0,
            piece,
            eof: false,
        }
    }

    fn incoming() -> Incoming {
        Incoming::new(Vec::new(), 4096, 65535, None)
    }

    /// Every item `data` holds, fed in pieces of `piece` bytes, messages as (text, bytes).
    fn all(rx: &mut Incoming, data: &[u8], piece: usize) -> Result<Vec<String>, Fault> {
        let mut s = src(data, piece);
        let mut out = Vec::new();
        while let Some(item) = rx.next(&mut s)? {
            out.push(match item {
                Item::Message { text } => {
                    format!("{}:{}", if text { "T" } else { "B" }, hex(rx.message()))
                }
                Item::Ping(p) => format!("ping:{}", hex(&p)),
                Item::Pong(p) => format!("pong:{}", hex(&p)),
                Item::Close(f) => format!("close:{:?}", f.map(|f| u16::from(f.code))),
            });
        }
        Ok(out)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn fault(r: Result<Vec<String>, Fault>) -> String {
        match r {
            Err(Fault::Protocol(w)) => w.to_string(),
            Err(Fault::TooBig { size }) => format!("too big {size}"),
            Err(f) => format!("{f:?}"),
            Ok(v) => panic!("no fault: {v:?}"),
        }
    }

    #[test]
    fn rfc_6455_examples() {
        // §5.7: a single-frame unmasked text message, and one fragmented into two frames.
        let single = b"\x81\x05Hello";
        let fragmented = b"\x01\x03Hel\x80\x02lo";
        for piece in [1, 2, 3, 100] {
            let mut rx = incoming();
            assert_eq!(
                all(&mut rx, single, piece).unwrap(),
                ["T:48656c6c6f"],
                "{piece}"
            );
            assert_eq!(
                all(&mut rx, fragmented, piece).unwrap(),
                ["T:48656c6c6f"],
                "{piece}"
            );
        }
        // Unmasked ping and pong, a 256-byte and a 64 KiB binary message (16- and 64-bit lengths).
        let mut rx = incoming();
        assert_eq!(
            all(&mut rx, b"\x89\x05Hello\x8a\x05Hello", 7).unwrap(),
            ["ping:48656c6c6f", "pong:48656c6c6f"]
        );
        let mut b256 = b"\x82\x7e\x01\x00".to_vec();
        b256.extend(std::iter::repeat_n(0xab, 256));
        let got = all(&mut rx, &b256, 100).unwrap();
        assert_eq!(got, [format!("B:{}", "ab".repeat(256))]);
        let mut rx = Incoming::new(Vec::new(), 4096, 65536, None);
        let mut b64k = b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00".to_vec();
        b64k.extend(std::iter::repeat_n(7, 65536));
        let got = all(&mut rx, &b64k, 1000).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), 2 + 2 * 65536);
    }

    #[test]
    fn interleaved_control_frames_and_close() {
        let mut rx = incoming();
        let data = b"\x01\x03Hel\x89\x01p\x80\x02lo\x88\x02\x03\xe8";
        assert_eq!(
            all(&mut rx, data, 3).unwrap(),
            ["ping:70", "T:48656c6c6f", "close:Some(1000)"]
        );
        assert_eq!(all(&mut rx, b"\x88\x00", 1).unwrap(), ["close:None"]);
    }

    #[test]
    fn leftover_from_the_handshake_comes_first() {
        let mut rx = Incoming::new(b"\x81\x02hi\x81".to_vec(), 4096, 100, None);
        assert_eq!(all(&mut rx, b"\x01!", 1).unwrap(), ["T:6869", "T:21"]);
    }

    #[test]
    fn protocol_violations() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x81\x85abcdHello", "masked frame from server"),
            (b"\xa1\x00", "reserved bits set"),
            (b"\x91\x00", "reserved bits set"),
            // RSV1 without an agreed permessage-deflate.
            (b"\xc1\x00", "reserved bits set"),
            (b"\x83\x00", "unknown opcode"),
            (b"\x8b\x00", "unknown opcode"),
            (b"\x09\x00", "fragmented control frame"),
            (b"\x89\x7e\x00\x7e", "control frame too big"),
            (b"\x80\x00", "continuation frame without a message"),
            (b"\x01\x01a\x81\x01b", "new message inside a fragmented one"),
            (b"\x88\x01\x03", "invalid close frame"),
            (b"\x88\x02\x03\xed", "invalid close code"),
            (b"\x88\x02\x00\x00", "invalid close code"),
            (
                b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00",
                "invalid frame length",
            ),
        ];
        for (bytes, words) in cases {
            assert_eq!(&fault(all(&mut incoming(), bytes, 1)), words, "{bytes:?}");
        }
    }

    #[test]
    fn invalid_utf8_fails_as_soon_as_seen() {
        assert_eq!(
            fault(all(&mut incoming(), b"\x81\x01\xff", 9)),
            "InvalidUtf8"
        );
        // The bad byte is in the first fragment: no need to wait for the rest.
        assert_eq!(
            fault(all(&mut incoming(), b"\x01\x02a\xff", 9)),
            "InvalidUtf8"
        );
        // A sequence split across fragments is fine; one cut short at the end is not.
        assert_eq!(
            all(&mut incoming(), b"\x01\x01\xc3\x80\x01\xa9", 9).unwrap(),
            ["T:c3a9"]
        );
        assert_eq!(
            fault(all(&mut incoming(), b"\x01\x01a\x80\x01\xc3", 9)),
            "InvalidUtf8"
        );
        assert_eq!(
            fault(all(&mut incoming(), b"\x88\x03\x03\xe8\xff", 9)),
            "InvalidUtf8"
        );
        // Binary is not checked.
        assert_eq!(all(&mut incoming(), b"\x82\x01\xff", 9).unwrap(), ["B:ff"]);
    }

    #[test]
    fn size_limits_fail_before_the_payload_arrives() {
        let mut rx = Incoming::new(Vec::new(), 4096, 10, None);
        // The header alone announces 11 bytes.
        assert_eq!(fault(all(&mut rx, b"\x82\x0b", 1)), "too big 11");
        let mut rx = Incoming::new(Vec::new(), 4096, 10, None);
        assert_eq!(
            fault(all(&mut rx, b"\x02\x06abcdef\x80\x05ghijk", 1)),
            "too big 11"
        );
        let mut rx = Incoming::new(Vec::new(), 4096, 10, None);
        assert_eq!(all(&mut rx, b"\x82\x0aabcdefghij", 3).unwrap().len(), 1);
    }

    #[test]
    fn end_of_stream() {
        let mut s = Pieces {
            data: b"\x81\x02h".to_vec(),
            at: 0,
            piece: 9,
            eof: true,
        };
        assert!(matches!(incoming().next(&mut s), Err(Fault::Closed)));
    }

    #[test]
    fn headers_read_as_tungstenite_parses_them() {
        let headers: [&[u8]; 9] = [
            b"\x81\x05",
            b"\x02\x7d",
            b"\xc1\x7e\x01\x00",
            b"\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00",
            b"\x89\x84\x01\x02\x03\x04",
            b"\x88\xfe\x00\x7e\xaa\xbb\xcc\xdd",
            b"\xf0\x00",
            b"\x83\x01",
            b"\x8b\x00",
        ];
        for h in headers {
            // Every prefix is incomplete (for both), and the whole header reads the same.
            for cut in 0..h.len() {
                assert!(read_header(&h[..cut]).is_none(), "{h:?} cut at {cut}");
            }
            let mut bytes = h.to_vec();
            bytes.extend_from_slice(b"payload");
            let mut cursor = io::Cursor::new(&bytes[..]);
            let theirs = FrameHeader::parse(&mut cursor);
            let (ours, head, len) = read_header(&bytes).unwrap();
            match h[0] & 0x0F {
                3..=7 | 11..=15 => assert!(theirs.is_err(), "{h:?}: reserved opcode"),
                _ => {
                    let (header, length) = theirs.unwrap().unwrap();
                    assert_eq!((ours, len), (header, length), "{h:?}");
                    assert_eq!(head as u64, cursor.position(), "{h:?}");
                }
            }
        }
    }

    #[test]
    fn reads_reuse_the_buffer_and_large_buffers_go_back() {
        let mut rx = Incoming::new(Vec::new(), 1024, 1 << 20, None);
        let mut big = b"\x82\x7f\x00\x00\x00\x00\x00\x02\x00\x00".to_vec();
        big.extend(std::iter::repeat_n(1, 128 * 1024));
        big.extend_from_slice(b"\x81\x02ok");
        let mut s = src(&big, 1024);
        assert!(matches!(
            rx.next(&mut s),
            Ok(Some(Item::Message { text: false }))
        ));
        assert_eq!(rx.message().len(), 128 * 1024);
        assert!(matches!(
            rx.next(&mut s),
            Ok(Some(Item::Message { text: true }))
        ));
        assert_eq!(rx.message(), b"ok");
        // Nothing more is buffered: no step is needed to know a read must come first, and
        // the message handed out is forgotten as a step would.
        assert!(rx.needs_read());
        assert_eq!(rx.message(), b"");
        assert!(matches!(rx.next(&mut s), Ok(None)));
        assert!(rx.needs_read());
        // The 128 KiB the large frame needed is not kept by an idle connection.
        assert!(rx.buf.len() <= KEEP_BUFFER, "{}", rx.buf.len());
    }
}
