//! A `Write` adapter that strips the masking from the client frames written through it.
//!
//! RFC 6455 §5.3 requires a client to mask every frame, and luws does so by default. LuWS has
//! an opt-in `use_masking = false` for trivial servers that never unmask what they receive;
//! tungstenite always masks client frames and offers no switch, so when the user turns masking
//! off, luws puts [`Unmasked`] between tungstenite and the socket. It parses the outgoing byte
//! stream frame by frame (§5.2) and writes each frame again with the MASK bit cleared, the
//! 4-byte masking key removed and the payload unmasked. Frames that arrive unmasked pass
//! through unchanged.

use std::fmt;
use std::io::{self, ErrorKind, Write};

/// The default bound on rewritten bytes held for the socket.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

/// The smallest capacity [`Unmasked::with_capacity`] accepts: room for the longest rewritten
/// header (10 bytes) with some payload.
const MIN_CAPACITY: usize = 16;

/// The longest frame header (§5.2): 2 bytes, a 64-bit length, a 4-byte masking key.
const MAX_HEADER: usize = 14;

/// Rewrites the masked frames written through it as unmasked frames on `W`, a socket that may
/// be non-blocking.
///
/// `write(buf)` returning `Ok(n)` means the first `n` bytes of `buf` were accepted: rewritten
/// and either written to `W` or held here. It returns `Err(WouldBlock)` only when it could
/// accept nothing, because its buffer is full and `W` would block. Input may be split
/// anywhere, even inside a header or a masking key. What is held is bounded: at most one
/// partial input header (14 bytes) plus the capacity (by default [`DEFAULT_CAPACITY`]) of
/// rewritten output; nothing grows with the input.
///
/// `flush()` writes everything held, reports `Err(WouldBlock)` while anything is still held,
/// then flushes `W`. A frame that the caller has only partly written stays unfinished: its
/// rest must come through `write`.
pub struct Unmasked<W> {
    inner: W,
    /// The input header of the current frame, gathered until complete.
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// The current frame's masking key (zero for an unmasked frame), and the payload offset
    /// modulo 4 (where in the key the next payload byte starts).
    key: [u8; 4],
    key_pos: usize,
    /// Payload bytes of the current frame not yet read from the input.
    payload_left: u64,
    /// Rewritten bytes not yet taken by `inner`: `out[start..end]`.
    out: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<W: Write> Unmasked<W> {
    /// Wraps `inner`, holding at most [`DEFAULT_CAPACITY`] rewritten bytes.
    pub fn new(inner: W) -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, inner)
    }

    /// Wraps `inner`, holding at most `capacity` rewritten bytes (at least 16).
    pub fn with_capacity(capacity: usize, inner: W) -> Self {
        Unmasked {
            inner,
            head: [0; MAX_HEADER],
            head_len: 0,
            key: [0; 4],
            key_pos: 0,
            payload_left: 0,
            out: vec![0; capacity.max(MIN_CAPACITY)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Whether rewritten output is held that `W` has not taken yet (`flush` would block).
    pub fn has_pending(&self) -> bool {
        self.start < self.end || self.header_ready()
    }

    /// The socket.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The socket, e.g. to change its options. Writing to it directly would interleave with
    /// the bytes held here.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The socket; anything still held is dropped.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// The length of the input header gathered in `head`, once its first two bytes are known.
    fn header_len(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let ext = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let key = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + key
    }

    /// A complete input header, not yet rewritten (the output had no room for it).
    fn header_ready(&self) -> bool {
        self.payload_left == 0 && self.head_len >= 2 && self.head_len == self.header_len()
    }

    /// Rewrites as much of `input` as the output has room for; returns the bytes taken.
    fn take(&mut self, input: &[u8]) -> usize {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.out.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut taken = 0;
        loop {
            if self.payload_left == 0 {
                // Gather the header; the length of the rest is known after two bytes.
                while self.head_len < self.header_len() && taken < input.len() {
                    let n = (self.header_len() - self.head_len).min(input.len() - taken);
                    self.head[self.head_len..self.head_len + n]
                        .copy_from_slice(&input[taken..taken + n]);
                    self.head_len += n;
                    taken += n;
                }
                if self.head_len < self.header_len() || !self.emit_header() {
                    return taken;
                }
            } else {
                let room = self.out.len() - self.end;
                let left = input.len() - taken;
                let n = usize::try_from(self.payload_left).map_or(left, |p| p.min(left));
                let n = n.min(room);
                if n == 0 {
                    return taken;
                }
                unmask_into(
                    &mut self.out[self.end..self.end + n],
                    &input[taken..taken + n],
                    self.key,
                    self.key_pos,
                );
                self.end += n;
                taken += n;
                self.key_pos = (self.key_pos + n) % 4;
                self.payload_left -= n as u64;
            }
        }
    }

    /// Writes the complete header in `head` to the output without its MASK bit and key, and
    /// starts the payload; false if the output has no room for it.
    fn emit_header(&mut self) -> bool {
        let masked = self.head[1] & 0x80 != 0;
        let len = self.head_len - if masked { 4 } else { 0 };
        if self.out.len() - self.end < len {
            return false;
        }
        let out = &mut self.out[self.end..self.end + len];
        out.copy_from_slice(&self.head[..len]);
        out[1] &= 0x7f;
        self.end += len;
        self.key = [0; 4];
        if masked {
            self.key.copy_from_slice(&self.head[len..len + 4]);
        }
        self.key_pos = 0;
        self.payload_left = match self.head[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&self.head[2..10]);
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        self.head_len = 0;
        true
    }

    /// Writes the held output to `inner`; `Ok(true)` if it would block before all was taken.
    /// `inner` taking nothing (`Ok(0)`) is `WriteZero`: the socket is gone.
    fn drain(&mut self) -> io::Result<bool> {
        while self.start < self.end {
            match self.inner.write(&self.out[self.start..self.end]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.start += n.min(self.end - self.start),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        self.start = 0;
        self.end = 0;
        Ok(false)
    }
}

impl<W: Write> Write for Unmasked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Held output first, so that a socket error shows before more input is taken.
        let mut blocked = self.start < self.end && self.drain()?;
        let mut taken = 0;
        loop {
            taken += self.take(&buf[taken..]);
            if blocked || self.start == self.end {
                break;
            }
            match self.drain() {
                Ok(b) => blocked = b,
                // The bytes taken are accepted; the error will show on the next call.
                Err(e) if taken == 0 => return Err(e),
                Err(_) => break,
            }
        }
        if taken == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        loop {
            self.take(&[]);
            if self.start == self.end {
                break;
            }
            if self.drain()? {
                return Err(ErrorKind::WouldBlock.into());
            }
        }
        self.inner.flush()
    }
}

impl<W: fmt::Debug> fmt::Debug for Unmasked<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unmasked")
            .field("inner", &self.inner)
            .field("held", &(self.end - self.start))
            .field("payload_left", &self.payload_left)
            .finish_non_exhaustive()
    }
}

/// `dst = src ^ key`, the key starting at byte `pos` of its 4; eight bytes at a time.
fn unmask_into(dst: &mut [u8], src: &[u8], key: [u8; 4], pos: usize) {
    let mut k = key;
    k.rotate_left(pos % 4);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let mut w = [0; 8];
        w.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, (d, s)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *d = s ^ k[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::{Frame, FrameHeader};
    use tungstenite::protocol::{Role, WebSocket};
    use tungstenite::{Bytes, Message};

    /// A socket that takes at most `k` bytes a call and, if `stall`, blocks every other call.
    #[derive(Default)]
    struct Choppy {
        out: Vec<u8>,
        k: usize,
        stall: bool,
        blocked_last: bool,
        /// Block every call.
        shut: bool,
        flushes: usize,
    }

    impl Choppy {
        fn new(k: usize, stall: bool) -> Self {
            Choppy {
                k,
                stall,
                ..Default::default()
            }
        }
    }

    impl Write for Choppy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.shut || (self.stall && !self.blocked_last) {
                self.blocked_last = true;
                return Err(ErrorKind::WouldBlock.into());
            }
            self.blocked_last = false;
            let n = buf.len().min(self.k);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    /// Feeds `input` the way tungstenite does, in pieces of at most `piece` bytes, retrying on
    /// WouldBlock; then flushes until nothing is held.
    fn pump<W: Write>(u: &mut Unmasked<W>, input: &[u8], piece: usize) {
        let mut pos = 0;
        let mut tries = 0;
        while pos < input.len() {
            tries += 1;
            assert!(tries < 10_000_000, "no progress");
            match u.write(&input[pos..pos.saturating_add(piece).min(input.len())]) {
                Ok(n) => {
                    assert!(n > 0, "Ok(0) for non-empty input");
                    pos += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        loop {
            tries += 1;
            assert!(tries < 10_000_000, "no progress");
            match u.flush() {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => assert!(u.has_pending()),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(!u.has_pending());
    }

    fn rewrite(input: &[u8]) -> Vec<u8> {
        let mut u = Unmasked::new(Choppy::new(usize::MAX, false));
        pump(&mut u, input, input.len().max(1));
        u.into_inner().out
    }

    /// A frame as tungstenite formats it, masked with `key` or not.
    fn frame(payload: &[u8], opcode: OpCode, key: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = Frame::message(Bytes::copy_from_slice(payload), opcode, true);
        f.header_mut().mask = key;
        let mut v = Vec::new();
        f.format(&mut v).unwrap();
        v
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    const HELLO_MASKED: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    const HELLO: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];

    #[test]
    fn rfc_hello() {
        assert_eq!(rewrite(&HELLO_MASKED), HELLO);
    }

    #[test]
    fn unmasked_frame_passes_through() {
        assert_eq!(rewrite(&HELLO), HELLO);
    }

    #[test]
    fn masked_ping() {
        // RFC 6455 §5.7's ping with "Hello", masked with the key of the masked "Hello".
        let ping = [
            0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(rewrite(&ping), [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // An empty ping: key and nothing else.
        assert_eq!(rewrite(&[0x89, 0x80, 1, 2, 3, 4]), [0x89, 0x00]);
    }

    #[test]
    fn length_16_bit() {
        let p = pattern(126);
        let key = [0xa1, 0xb2, 0xc3, 0xd4];
        let masked = frame(&p, OpCode::Data(Data::Binary), Some(key));
        assert_eq!(
            masked[..8],
            [0x82, 0xfe, 0x00, 0x7e, 0xa1, 0xb2, 0xc3, 0xd4]
        );
        let out = rewrite(&masked);
        assert_eq!(out[..4], [0x82, 0x7e, 0x00, 0x7e]);
        assert_eq!(out[4..], p[..]);
    }

    #[test]
    fn length_64_bit() {
        let p = pattern(65536);
        let masked = frame(&p, OpCode::Data(Data::Binary), Some([9, 8, 7, 6]));
        assert_eq!(
            masked[..14],
            [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 9, 8, 7, 6]
        );
        let out = rewrite(&masked);
        assert_eq!(out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(out[10..], p[..]);
    }

    /// Frames of every length format, masked with several keys, back to back; and what they
    /// must become.
    fn stream_of_frames() -> (Vec<u8>, Vec<u8>) {
        let mut input = Vec::new();
        let mut want = Vec::new();
        let frames: [(usize, OpCode, [u8; 4]); 7] = [
            (5, OpCode::Data(Data::Text), [0x37, 0xfa, 0x21, 0x3d]),
            (0, OpCode::Data(Data::Binary), [1, 2, 3, 4]),
            (125, OpCode::Data(Data::Binary), [0xff, 0, 0xff, 0]),
            (126, OpCode::Data(Data::Text), [5, 6, 7, 8]),
            (70_001, OpCode::Data(Data::Binary), [0xde, 0xad, 0xbe, 0xef]),
            (65_535, OpCode::Data(Data::Binary), [0x55, 0xaa, 0x0f, 0xf0]),
            (3, OpCode::Data(Data::Text), [0x80, 0x81, 0x82, 0x83]),
        ];
        for (len, op, key) in frames {
            let p = pattern(len);
            input.extend(frame(&p, op, Some(key)));
            want.extend(frame(&p, op, None));
        }
        input.extend(HELLO_MASKED);
        want.extend(HELLO);
        (input, want)
    }

    #[test]
    fn frames_back_to_back() {
        let (input, want) = stream_of_frames();
        assert_eq!(rewrite(&input), want);
    }

    #[test]
    fn one_byte_at_a_time() {
        let (input, want) = stream_of_frames();
        let mut u = Unmasked::new(Choppy::new(usize::MAX, false));
        pump(&mut u, &input, 1);
        assert_eq!(u.into_inner().out, want);
    }

    #[test]
    fn any_pieces_any_socket_same_bytes() {
        let (input, want) = stream_of_frames();
        for piece in [1, 2, 5, 14, 15, 4096, 65_537, usize::MAX] {
            for k in [1, 3, 10, 1000, usize::MAX] {
                for cap in [16, 100, DEFAULT_CAPACITY] {
                    let mut u = Unmasked::with_capacity(cap, Choppy::new(k, true));
                    pump(&mut u, &input, piece);
                    let out = u.into_inner().out;
                    assert!(out == want, "piece {piece}, k {k}, capacity {cap}");
                }
            }
        }
    }

    #[test]
    fn flush_blocks_while_held() {
        let mut u = Unmasked::new(Choppy::new(2, true));
        // The socket blocks this time, so all is held, and accepted.
        assert_eq!(u.write(&HELLO_MASKED).unwrap(), HELLO_MASKED.len());
        assert!(u.has_pending());
        let mut blocked = 0;
        loop {
            match u.flush() {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(u.has_pending());
                    assert_eq!(u.get_ref().flushes, 0, "W flushed while output was held");
                    blocked += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(blocked > 0);
        assert!(!u.has_pending());
        assert_eq!(u.get_ref().flushes, 1);
        assert_eq!(u.into_inner().out, HELLO);
    }

    #[test]
    fn buffering_is_bounded() {
        let p = pattern(1 << 20);
        let masked = frame(&p, OpCode::Data(Data::Binary), Some([1, 2, 3, 4]));
        let mut u = Unmasked::new(Choppy::new(4096, true));
        u.get_mut().shut = true;
        let mut accepted = 0;
        let mut calls = 0;
        loop {
            calls += 1;
            match u.write(&masked[accepted..]) {
                Ok(n) => accepted += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        // The 14-byte input header, and what fits in the output: its 10-byte header and payload.
        assert_eq!(accepted, 14 + DEFAULT_CAPACITY - 10);
        assert_eq!(calls, 2);
        assert!(u.has_pending());
        assert_eq!(u.flush().map_err(|e| e.kind()), Err(ErrorKind::WouldBlock));
        for _ in 0..3 {
            let again = u.write(&masked[accepted..]).map_err(|e| e.kind());
            assert_eq!(again, Err(ErrorKind::WouldBlock));
        }

        // Once the socket takes bytes, the rest goes through intact.
        u.get_mut().shut = false;
        pump(&mut u, &masked[accepted..], usize::MAX);
        let out = u.into_inner().out;
        assert!(out == frame(&p, OpCode::Data(Data::Binary), None));
    }

    #[test]
    fn header_held_when_output_full() {
        // With capacity 16, the first frame's 14 rewritten bytes leave no room for the second's
        // 4-byte header: the header is taken, and rewritten once the output drains.
        let first = frame(&pattern(12), OpCode::Data(Data::Binary), Some([1, 1, 1, 1]));
        let second = frame(
            &pattern(200),
            OpCode::Data(Data::Binary),
            Some([2, 2, 2, 2]),
        );
        let mut input = first.clone();
        input.extend(&second);
        let head = first.len() + 8;
        let mut first_out = frame(&pattern(12), OpCode::Data(Data::Binary), None);
        let mut want = first_out.clone();
        want.extend(frame(&pattern(200), OpCode::Data(Data::Binary), None));
        first_out.extend([0x82, 0x7e, 0x00, 0xc8]);

        // The socket blocks at first: the header waits, then the rest follows.
        let mut u = Unmasked::with_capacity(16, Choppy::new(usize::MAX, true));
        assert_eq!(u.write(&input).unwrap(), head);
        pump(&mut u, &input[head..], usize::MAX);
        assert_eq!(u.into_inner().out, want);

        // A write ending with the header: once the output drains, the header goes out too.
        let mut u = Unmasked::with_capacity(16, Choppy::new(usize::MAX, false));
        assert_eq!(u.write(&input[..head]).unwrap(), head);
        assert!(!u.has_pending());
        assert_eq!(u.get_ref().out, first_out);

        // The same while the socket blocks: flush must write the header, not leave it.
        let mut u = Unmasked::with_capacity(16, Choppy::new(usize::MAX, true));
        assert_eq!(u.write(&input[..head]).unwrap(), head);
        assert!(u.has_pending());
        pump(&mut u, &[], 1);
        assert_eq!(u.into_inner().out, first_out);
    }

    #[test]
    fn socket_error_is_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut u = Unmasked::new(Broken);
        assert_eq!(
            u.write(&HELLO_MASKED).map_err(|e| e.kind()),
            Ok(HELLO_MASKED.len())
        );
        assert_eq!(
            u.write(&HELLO_MASKED).map_err(|e| e.kind()),
            Err(ErrorKind::BrokenPipe)
        );
        assert_eq!(u.flush().map_err(|e| e.kind()), Err(ErrorKind::BrokenPipe));
    }

    #[test]
    fn unmask_matches_bytewise_at_every_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let src = pattern(37);
        for pos in 0..8 {
            for len in 0..src.len() {
                let mut dst = vec![0; len];
                unmask_into(&mut dst, &src[..len], key, pos);
                let want: Vec<u8> = src[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(pos + i) % 4])
                    .collect();
                assert_eq!(dst, want, "pos {pos}, len {len}");
            }
        }
    }

    /// Frames formatted by tungstenite itself: its masked client frames, through the adapter,
    /// parse back with tungstenite as the same frames, unmasked.
    #[test]
    fn tungstenite_formatted_frames() {
        // One formatted frame at a time, masked with a random key.
        for len in [0, 1, 5, 125, 126, 127, 65_535, 65_536, 100_000] {
            let p = pattern(len);
            let mut key = [0; 4];
            getrandom::fill(&mut key).unwrap();
            let masked = frame(&p, OpCode::Data(Data::Binary), Some(key));
            let out = rewrite(&masked);
            assert_eq!(
                out,
                frame(&p, OpCode::Data(Data::Binary), None),
                "len {len}"
            );
            let mut c = Cursor::new(&out);
            let (h, n) = FrameHeader::parse(&mut c).unwrap().unwrap();
            assert_eq!(h.mask, None);
            assert_eq!(n, len as u64);
            assert_eq!(out[c.position() as usize..], p[..]);
        }
    }

    /// The adapter under a real tungstenite client socket: what it writes has no masks.
    #[test]
    fn under_tungstenite_client() {
        struct Duplex(Unmasked<Choppy>);
        impl Read for Duplex {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(ErrorKind::WouldBlock.into())
            }
        }
        impl Write for Duplex {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                self.0.flush()
            }
        }

        let big = pattern(200_000);
        let sent = [
            Message::text("Hello"),
            Message::Ping(Bytes::from_static(b"ping")),
            Message::binary(big.clone()),
            Message::text(""),
            Message::binary(pattern(126)),
        ];
        let stream = Duplex(Unmasked::with_capacity(1000, Choppy::new(777, true)));
        let mut ws = WebSocket::from_raw_socket(stream, Role::Client, None);
        for m in sent.iter().cloned() {
            match ws.send(m) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let mut tries = 0;
        loop {
            match ws.flush() {
                Ok(()) => break,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            tries += 1;
            assert!(tries < 1_000_000, "no progress");
        }
        let out = ws.get_ref().0.get_ref().out.clone();

        let mut c = Cursor::new(&out);
        let mut got = Vec::new();
        while (c.position() as usize) < out.len() {
            let (h, n) = FrameHeader::parse(&mut c).unwrap().unwrap();
            assert_eq!(h.mask, None);
            let at = c.position() as usize;
            let payload = out[at..at + n as usize].to_vec();
            c.set_position((at + n as usize) as u64);
            got.push((h.opcode, payload));
        }
        let want: Vec<(OpCode, Vec<u8>)> = vec![
            (OpCode::Data(Data::Text), b"Hello".to_vec()),
            (
                OpCode::Control(tungstenite::protocol::frame::coding::Control::Ping),
                b"ping".to_vec(),
            ),
            (OpCode::Data(Data::Binary), big),
            (OpCode::Data(Data::Text), Vec::new()),
            (OpCode::Data(Data::Binary), pattern(126)),
        ];
        assert_eq!(got, want);
    }
}
