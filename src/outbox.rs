//! The sending half of the protocol: frames formatted (masked, and compressed when
//! permessage-deflate was agreed) into one buffer that the socket drains as it can.
//! Socket-free: it writes to any `Write`.
//!
//! Headers are written with tungstenite's opcodes (see `header` for why not by its
//! `FrameHeader::format`); the payload is copied and masked in one pass. At most one pong waits outside the buffer: a newer
//! one replaces it (RFC 6455 §5.5.3 lets a client answer only the latest ping), so a peer that
//! pings a stalled connection cannot grow it.

use std::io::{self, ErrorKind, Write};

use tungstenite::Bytes;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::deflate::Deflater;

/// A frame's kind, as the session asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

impl Kind {
    fn opcode(self) -> OpCode {
        match self {
            Kind::Text => OpCode::Data(Data::Text),
            Kind::Binary => OpCode::Data(Data::Binary),
            Kind::Ping => OpCode::Control(Control::Ping),
            Kind::Pong => OpCode::Control(Control::Pong),
            Kind::Close => OpCode::Control(Control::Close),
        }
    }
}

/// The compressor and the size from which messages are compressed.
pub struct Compression {
    pub deflater: Deflater,
    pub threshold: usize,
}

/// Mask keys (RFC 6455 §5.3: unpredictable), drawn from the system's generator a pool at a
/// time, so that a frame pays for four bytes of a buffer rather than a generator call. The
/// pool is allocated at the first frame: an idle connection does not carry it.
struct MaskKeys {
    pool: Option<Box<[u8; 128]>>,
    used: usize,
}

impl MaskKeys {
    fn new() -> MaskKeys {
        MaskKeys {
            pool: None,
            used: 128,
        }
    }

    fn next(&mut self) -> [u8; 4] {
        let pool = self.pool.get_or_insert_with(|| Box::new([0; 128]));
        if self.used + 4 > pool.len() {
            // getrandom(2) fails only where the system has no generator at all (or forbids
            // it); the thread's ChaCha generator, seeded once, stands in then.
            if getrandom::fill(&mut pool[..]).is_err() {
                rand::fill(&mut pool[..]);
            }
            self.used = 0;
        }
        let k = &pool[self.used..self.used + 4];
        self.used += 4;
        [k[0], k[1], k[2], k[3]]
    }
}

/// A send buffer's capacity beyond this (grown for one large message) is given back once it
/// has drained.
const KEEP_BUFFER: usize = 64 * 1024;

pub struct Outbox {
    /// Formatted frames; `buf[sent..]` is not yet written.
    buf: Vec<u8>,
    sent: usize,
    /// None with `use_masking = false`.
    keys: Option<MaskKeys>,
    compression: Option<Compression>,
    /// A compressed payload, before it is masked into `buf`.
    scratch: Vec<u8>,
    /// The pong waiting for room in `buf`.
    pong: Option<Bytes>,
}

impl Outbox {
    pub fn new(masking: bool, compression: Option<Compression>) -> Outbox {
        Outbox {
            buf: Vec::new(),
            sent: 0,
            keys: masking.then(MaskKeys::new),
            compression,
            scratch: Vec::new(),
            pong: None,
        }
    }

    /// Bytes formatted but not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Nothing waits to be written, not even a pong.
    pub fn is_empty(&self) -> bool {
        self.pending() == 0 && self.pong.is_none()
    }

    /// Queues one message as a single frame. With nothing pending it is taken whatever its
    /// size; otherwise it is refused (false) when the buffer would pass `cap`.
    pub fn push(&mut self, kind: Kind, payload: &[u8], cap: usize) -> bool {
        // Judged on the uncompressed size, before compressing: a compressor that has taken a
        // message into its window must send it (the server's window follows ours).
        let pending = self.pending();
        if pending > 0 && pending + payload.len() + 14 > cap {
            return false;
        }
        let compress = matches!(kind, Kind::Text | Kind::Binary)
            && self
                .compression
                .as_ref()
                .is_some_and(|c| payload.len() >= c.threshold);
        let body: &[u8] = if compress {
            self.scratch.clear();
            if let Some(c) = self.compression.as_mut() {
                c.deflater.compress(payload, &mut self.scratch);
            }
            &self.scratch
        } else {
            payload
        };
        let mask = self.keys.as_mut().map(MaskKeys::next);
        format(&mut self.buf, kind, compress, body, mask);
        true
    }

    /// Sets the pong to send: it replaces one still waiting.
    pub fn set_pong(&mut self, payload: Bytes) {
        self.pong = Some(payload);
    }

    /// Drops a waiting pong (no pong follows a Close).
    pub fn drop_pong(&mut self) {
        self.pong = None;
    }

    /// Writes what `w` takes now, then flushes it. `Ok(true)`: everything is written;
    /// `Ok(false)`: `w` would block with bytes left. A waiting pong joins the buffer when it
    /// fits under `cap` (or the buffer is empty).
    pub fn write_to<W: Write>(&mut self, w: &mut W, cap: usize) -> io::Result<bool> {
        loop {
            let room = |p: &Bytes| self.pending() == 0 || self.pending() + p.len() + 6 <= cap;
            if self.pong.as_ref().is_some_and(room) {
                if let Some(p) = self.pong.take() {
                    let mask = self.keys.as_mut().map(MaskKeys::next);
                    format(&mut self.buf, Kind::Pong, false, &p, mask);
                }
            }
            while self.sent < self.buf.len() {
                match w.write(&self.buf[self.sent..]) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.clear();
            self.sent = 0;
            if self.pong.is_none() {
                break;
            }
        }
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
            self.scratch = Vec::new();
        }
        match w.flush() {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Appends one final frame: the header, then the payload, masked as it is copied.
fn format(buf: &mut Vec<u8>, kind: Kind, compressed: bool, payload: &[u8], mask: Option<[u8; 4]>) {
    let mut head = [0u8; 14];
    let n = header(&mut head, kind, compressed, payload.len(), mask);
    buf.reserve(n + payload.len());
    buf.extend_from_slice(&head[..n]);
    match mask {
        Some(key) => extend_masked(buf, payload, key),
        None => buf.extend_from_slice(payload),
    }
}

/// A final frame's header (RFC 6455 §5.2) in `out`; returns its size. Written here rather than
/// by tungstenite's `FrameHeader::format`, which goes through `io::Write` a field at a time
/// (about 80 instructions a frame, a sixth of a small message's send); the opcode's value is
/// still tungstenite's.
fn header(
    out: &mut [u8; 14],
    kind: Kind,
    compressed: bool,
    len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = 0x80 | if compressed { 0x40 } else { 0 } | u8::from(kind.opcode());
    let masked = if mask.is_some() { 0x80 } else { 0 };
    let mut n = 2;
    if len < 126 {
        out[1] = masked | len as u8;
    } else if len <= 0xFFFF {
        out[1] = masked | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        n = 4;
    } else {
        out[1] = masked | 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(key) = mask {
        out[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// `buf.extend(payload XOR key)`, eight bytes at a time.
fn extend_masked(buf: &mut Vec<u8>, payload: &[u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let words = payload.chunks_exact(8);
    let tail = words.remainder();
    buf.extend(words.flat_map(|w| {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        (u64::from_ne_bytes(b) ^ k).to_ne_bytes()
    }));
    let done = payload.len() - tail.len();
    buf.extend(
        tail.iter()
            .enumerate()
            .map(|(i, b)| b ^ key[(done + i) & 3]),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A socket that takes `room` bytes, then would block.
    struct Sink {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.got.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn unmask(frame: &[u8]) -> Vec<u8> {
        let key = [frame[2], frame[3], frame[4], frame[5]];
        let mut out = frame[..2].to_vec();
        out[1] &= 0x7f;
        out.extend(frame[6..].iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        out
    }

    #[test]
    fn rfc_6455_frames_unmasked() {
        let mut o = Outbox::new(false, None);
        assert!(o.push(Kind::Text, b"Hello", 0));
        assert!(o.push(Kind::Ping, b"Hello", usize::MAX));
        let mut s = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        assert!(o.write_to(&mut s, usize::MAX).unwrap());
        assert_eq!(s.got, b"\x81\x05Hello\x89\x05Hello");
    }

    #[test]
    fn masked_frames_unmask_to_the_payload() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for len in [0, 1, 5, 7, 8, 9, 125] {
            let mut o = Outbox::new(true, None);
            assert!(o.push(Kind::Binary, &payload[..len], 0));
            let mut s = Sink {
                got: Vec::new(),
                room: usize::MAX,
            };
            assert!(o.write_to(&mut s, 0).unwrap());
            assert_eq!(s.got[1] & 0x80, 0x80, "MASK bit");
            let mut want = vec![0x82, len as u8];
            want.extend_from_slice(&payload[..len]);
            assert_eq!(unmask(&s.got), want, "{len}");
        }
        // 16-bit length: header 2 + 2 + 4 key.
        let mut o = Outbox::new(true, None);
        o.push(Kind::Binary, &payload, 0);
        let mut s = Sink {
            got: Vec::new(),
            room: usize::MAX,
        };
        o.write_to(&mut s, 0).unwrap();
        assert_eq!(&s.got[..4], b"\x82\xfe\x01\x2c");
        let key = [s.got[4], s.got[5], s.got[6], s.got[7]];
        let body: Vec<u8> = s.got[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i & 3])
            .collect();
        assert_eq!(body, payload);
    }

    #[test]
    fn headers_are_written_as_tungstenite_formats_them() {
        use tungstenite::protocol::frame::FrameHeader;
        let kinds = [
            Kind::Text,
            Kind::Binary,
            Kind::Ping,
            Kind::Pong,
            Kind::Close,
        ];
        for kind in kinds {
            for len in [0, 1, 125, 126, 65535, 65536, 1 << 33] {
                for mask in [None, Some([1, 2, 3, 4])] {
                    for compressed in [false, true] {
                        let mut ours = [0u8; 14];
                        let n = header(&mut ours, kind, compressed, len, mask);
                        let h = FrameHeader {
                            is_final: true,
                            rsv1: compressed,
                            rsv2: false,
                            rsv3: false,
                            opcode: kind.opcode(),
                            mask,
                        };
                        let mut theirs = Vec::new();
                        h.format(len as u64, &mut theirs).unwrap();
                        assert_eq!(&ours[..n], &theirs[..], "{kind:?} {len} {mask:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn mask_keys_change_from_frame_to_frame() {
        // More frames than one pool of keys holds: the pool is drawn again, not reused.
        let mut o = Outbox::new(true, None);
        for _ in 0..100 {
            assert!(o.push(Kind::Binary, b"x", usize::MAX));
        }
        let keys: std::collections::HashSet<&[u8]> =
            o.buf.chunks(7).map(|frame| &frame[2..6]).collect();
        assert!(
            keys.len() >= 95,
            "{} distinct keys in 100 frames",
            keys.len()
        );
    }

    #[test]
    fn cap_applies_only_with_output_pending() {
        let mut o = Outbox::new(false, None);
        assert!(o.push(Kind::Binary, &[0; 1000], 10), "taken when empty");
        assert!(!o.push(Kind::Binary, &[0; 10], 100), "refused over the cap");
        let mut s = Sink {
            got: Vec::new(),
            room: 500,
        };
        assert!(!o.write_to(&mut s, 100).unwrap());
        assert_eq!(o.pending(), 504);
        s.room = usize::MAX;
        assert!(o.write_to(&mut s, 100).unwrap());
        assert_eq!(s.got.len(), 1004);
        assert!(o.is_empty());
    }

    /// A message the cap refuses has not entered the compressor's window: sent later, it and
    /// the ones around it inflate as they were (context takeover on both sides).
    #[cfg(not(luws_inflate_only))]
    #[test]
    fn a_refused_message_leaves_the_compressed_stream_intact() {
        use crate::deflate::{Deflater, Inflater};
        use crate::extension::DeflateParams;
        let params = DeflateParams {
            threshold: 0,
            ..DeflateParams::default()
        };
        let deflater = Deflater::new(&params).unwrap();
        let mut o = Outbox::new(
            false,
            Some(Compression {
                deflater,
                threshold: 0,
            }),
        );
        let a = b"{\"state\":\"on\",\"entity\":\"light.kitchen\"}".repeat(20);
        let b = b"{\"state\":\"off\",\"entity\":\"light.hall\"}".repeat(30);
        let mut s = Sink {
            got: Vec::new(),
            room: 10,
        };
        assert!(o.push(Kind::Text, &a, 64));
        assert!(!o.write_to(&mut s, 64).unwrap());
        assert!(
            !o.push(Kind::Text, &b, 64),
            "refused: output pending over the cap"
        );
        s.room = usize::MAX;
        assert!(o.write_to(&mut s, 64).unwrap());
        assert!(o.push(Kind::Text, &b, 64));
        assert!(o.push(Kind::Text, &a, usize::MAX));
        assert!(o.write_to(&mut s, 64).unwrap());
        // Unframe (short unmasked headers: payloads under 126 bytes compressed) and inflate.
        let mut inflater = Inflater::new(&params);
        let (mut at, mut got) = (0, Vec::new());
        while at < s.got.len() {
            assert_eq!(s.got[at], 0xc1, "FIN, RSV1, text");
            let len = usize::from(s.got[at + 1]);
            assert!(len < 126);
            let mut msg = Vec::new();
            inflater
                .inflate(&s.got[at + 2..at + 2 + len], &mut msg, 1 << 20)
                .unwrap();
            inflater.finish(&mut msg, 1 << 20).unwrap();
            got.push(msg);
            at += 2 + len;
        }
        assert_eq!(got, [a.clone(), b, a]);
    }

    #[test]
    fn one_pong_waits_and_the_latest_wins() {
        let mut o = Outbox::new(false, None);
        o.push(Kind::Binary, &[0; 100], 0);
        let mut s = Sink {
            got: Vec::new(),
            room: 0,
        };
        for p in [&b"a"[..], b"b", b"c"] {
            o.set_pong(Bytes::copy_from_slice(p));
            // The buffer is over the cap: the pong waits.
            assert!(!o.write_to(&mut s, 50).unwrap());
        }
        s.room = usize::MAX;
        assert!(o.write_to(&mut s, 50).unwrap());
        assert_eq!(&s.got[102..], b"\x8a\x01c");
    }
}
