//! The permessage-deflate codec (RFC 7692 §7.2): raw DEFLATE through flate2's miniz_oxide
//! backend, a message at a time, with the decompression-bomb guard. No socket and no frames
//! here: the session hands in payloads and sets or reads RSV1.

#[cfg(not(luws_inflate_only))]
use flate2::{Compress, Compression, FlushCompress};
use flate2::{Decompress, FlushDecompress, Status};
use thiserror::Error;

use crate::extension::DeflateParams;

/// The empty stored block a sync flush ends with: stripped from each message sent (§7.2.1),
/// put back after each message received (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

#[cfg(not(luws_inflate_only))]
/// Level 1, miniz_oxide's greedy single-probe matcher. On generated device-status JSON of 2 KB
/// to 2 MB (x86_64) it left 15–23 % of the input at 110–470 MB/s, level 6 8–18 % at
/// 60–120 MB/s; a stream of 2 KB messages took 14 µs a message against 42 µs. Level 1 already
/// takes away most of the bytes, and compression runs inside `send` on a host with one Lua
/// thread (Luup), which level 6 would stall three to five times longer.
const LEVEL: u32 = 1;

/// Room the inflater offers at least per step, beyond what is already produced.
const MIN_ROOM: usize = 4096;

/// Why a compressed message could not be read. Either is fatal to the connection (the
/// inflater's state is lost): Node `ws` closes with 1007 for the first and 1009 for the second.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not a valid DEFLATE stream. (A back reference before the start of the stream is not
    /// caught: miniz_oxide reads it as zero bytes, from a window it keeps zeroed.)
    #[error("invalid compressed data")]
    Corrupt,
    /// The message inflated to more than the limit; `size` is what was produced when that
    /// was found: the limit plus one byte (more only if `out` was already over it).
    #[error("message inflates to {size} bytes or more")]
    TooBig { size: u64 },
}

/// Reads the server's compressed messages.
///
/// Heap: nothing until the first compressed message, then 43,296 bytes (miniz_oxide's
/// `InflateState`, mostly its 32 KiB window; measured with a counting allocator, flate2 1.1.11,
/// miniz_oxide 0.9.1, x86_64). miniz_oxide always keeps a 15-bit window, so any
/// `server_max_window_bits` is read.
pub struct Inflater {
    state: Option<Decompress>,
    /// `server_no_context_takeover`: each message starts with an empty window.
    no_context_takeover: bool,
    /// A final block (BFINAL) ended the stream inside this message.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("allocated", &self.state.is_some())
            .field("no_context_takeover", &self.no_context_takeover)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Inflater {
    pub fn new(params: &DeflateParams) -> Inflater {
        Inflater {
            state: None,
            no_context_takeover: params.server_no_context_takeover,
            ended: false,
        }
    }

    /// Inflates one frame's payload of a compressed message, appending to `out`, which holds
    /// the message so far: `limit` bounds `out.len()`, so the whole message. Fails as soon as
    /// more than `limit` bytes are produced, never growing `out` past `limit + 1` bytes (a 1 KB
    /// frame that would inflate to gigabytes costs no more memory than an honest message).
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        // §7.2.3.4: after a final block the message may still carry a byte (and gets the tail);
        // what follows the end of the stream is ignored, as zlib ignores it.
        if self.ended {
            return Ok(());
        }
        let d = self.state.get_or_insert_with(|| Decompress::new(false));
        let most = limit.saturating_add(1);
        let mut rest = input;
        loop {
            if out.len() > limit {
                return Err(InflateError::TooBig {
                    size: out.len() as u64,
                });
            }
            // Room doubles what is there (each byte is copied about once as the buffer grows)
            // but never past one byte over the limit, the byte that proves a message too big.
            // (flate2 zeroes the room before inflating into it: its API takes initialised bytes.)
            let len = out.len();
            let room = (most - len).min(MIN_ROOM.max(len));
            out.reserve_exact(room);
            let room = out.capacity() - len;
            let (in_before, out_before) = (d.total_in(), d.total_out());
            let status = d.decompress_vec(rest, out, FlushDecompress::None);
            let produced = (d.total_out() - out_before) as usize;
            let used = (d.total_in() - in_before) as usize;
            rest = &rest[used..];
            match status {
                Err(_) => return Err(InflateError::Corrupt),
                Ok(Status::StreamEnd) => {
                    self.ended = true;
                    break;
                }
                Ok(Status::Ok | Status::BufError) => {}
            }
            // A full buffer may leave output inside the inflater: offer more room.
            if produced < room {
                if rest.is_empty() {
                    break;
                }
                if used == 0 && produced == 0 {
                    // No progress with input and room left: never seen from miniz_oxide, but
                    // looping on it would hang the host.
                    return Err(InflateError::Corrupt);
                }
            }
        }
        if out.len() > limit {
            return Err(InflateError::TooBig {
                size: out.len() as u64,
            });
        }
        Ok(())
    }

    /// Ends a message: call once after its last frame's `inflate` (even when that payload was
    /// empty). Feeds the tail the sender stripped (§7.2.2), which may release the last bytes,
    /// and starts afresh when the server compresses each message on its own or the stream
    /// ended: miniz_oxide cannot carry a window past a final block (zlib cannot either).
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        self.inflate(&TAIL, out, limit)?;
        if self.no_context_takeover || self.ended {
            if let Some(d) = self.state.as_mut() {
                d.reset(false);
            }
            self.ended = false;
        }
        Ok(())
    }
}

/// Compresses our messages.
///
/// Not in a build with `--cfg luws_inflate_only` (Vera's: its 2 MiB of flash has no room for
/// miniz_oxide's compressor, 21 KB there, and its RAM little for the compressor's 319 KB per
/// connection). Such a build agrees to permessage-deflate and inflates what servers send (the
/// large messages), and sends every message uncompressed, which RFC 7692 allows.
///
/// Heap: nothing until the first compressed message, then 319,326 bytes (miniz_oxide's
/// `CompressorOxide`: window, hash chains, symbol and output buffers; same measurement as
/// `Inflater`). A new connection that never sends a message of `threshold` bytes or more never
/// pays for it. Resetting it for `client_no_context_takeover` costs about 9 µs a message
/// (x86_64) as it clears the hash tables.
#[cfg(not(luws_inflate_only))]
pub struct Deflater {
    state: Option<Compress>,
    /// `client_no_context_takeover`: each message is compressed on its own.
    no_context_takeover: bool,
}

/// The compressor of a build that never compresses: there is none.
#[cfg(luws_inflate_only)]
#[derive(Debug)]
pub enum Deflater {}

#[cfg(luws_inflate_only)]
impl Deflater {
    pub fn new(_: &DeflateParams) -> Option<Deflater> {
        None
    }

    pub fn compress(&mut self, _: &[u8], _: &mut Vec<u8>) {
        match *self {}
    }
}

#[cfg(not(luws_inflate_only))]
impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("allocated", &self.state.is_some())
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

#[cfg(not(luws_inflate_only))]
impl Deflater {
    /// `None` when the agreed window is one miniz_oxide cannot compress with
    /// (`DeflateParams::compresses_outgoing`): every message then goes uncompressed.
    pub fn new(params: &DeflateParams) -> Option<Deflater> {
        params.compresses_outgoing().then_some(Deflater {
            state: None,
            no_context_takeover: params.client_no_context_takeover,
        })
    }

    /// Appends the payload of one whole message, compressed (§7.2.1); the caller sends it with
    /// RSV1 set on the first frame.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let c = self
            .state
            .get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        if sync_flushed(c, input, out).is_some() && out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        } else {
            // Neither a failure nor a sync flush without its empty stored block has been seen
            // from miniz_oxide. Should either happen, the message goes as stored blocks, still
            // valid, and the reset compressor refers to nothing the server lacks.
            out.truncate(start);
            c.reset();
            stored(input, out);
        }
        if self.no_context_takeover {
            c.reset();
        }
    }
}

#[cfg(not(luws_inflate_only))]
/// Compresses `input` and sync-flushes it into `out`; `None` if the compressor fails or makes
/// no progress.
fn sync_flushed(c: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut rest = input;
    loop {
        out.reserve(rest.len() / 4 + 64);
        let (in_before, out_before) = (c.total_in(), c.total_out());
        c.compress_vec(rest, out, FlushCompress::Sync).ok()?;
        let used = (c.total_in() - in_before) as usize;
        rest = &rest[used..];
        // A full buffer may leave output inside the compressor. Asking again when it held
        // none adds one more empty stored block: five bytes, harmless.
        if out.len() < out.capacity() {
            if rest.is_empty() {
                return Some(());
            }
            if used == 0 && c.total_out() == out_before {
                return None;
            }
        }
    }
}

#[cfg(not(luws_inflate_only))]
/// `input` as stored (uncompressed) DEFLATE blocks, with the final empty one already stripped
/// of its tail, as in §7.2.3.3. The stream is byte-aligned at a message's start.
fn stored(input: &[u8], out: &mut Vec<u8>) {
    for chunk in input.chunks(usize::from(u16::MAX)) {
        let len = chunk.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.push(0x00);
}

#[cfg(all(test, not(luws_inflate_only)))]
mod tests {
    use super::*;

    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn params() -> DeflateParams {
        DeflateParams::default()
    }

    fn no_takeover() -> DeflateParams {
        DeflateParams {
            client_no_context_takeover: true,
            server_no_context_takeover: true,
            ..DeflateParams::default()
        }
    }

    /// Inflates a message given as frame payloads.
    fn read(inf: &mut Inflater, frames: &[&[u8]], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        for f in frames {
            inf.inflate(f, &mut out, limit)?;
        }
        inf.finish(&mut out, limit)?;
        Ok(out)
    }

    fn sent(def: &mut Deflater, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        def.compress(msg, &mut out);
        out
    }

    /// JSON-ish text of about `n` bytes, varied enough not to collapse to nothing.
    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("{\"devices\":[");
        let mut i: u64 = 0;
        while s.len() < n {
            let x = i.wrapping_mul(2_654_435_761) % 100_003;
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"Device {x}\",\"room\":{},\"level\":{},\"watts\":{}.{},\
                 \"lastupdate\":{},\"service\":\"urn:upnp-org:serviceId:SwitchPower1\"}},",
                x % 17,
                x % 101,
                x % 3000,
                i % 10,
                1_700_000_000 + i * 37
            ));
            i += 1;
        }
        s.push_str("{}]}");
        s.into_bytes()
    }

    #[test]
    fn rfc_7692_hello_compresses_and_inflates() {
        // §7.2.3.1
        let mut def = Deflater::new(&params()).unwrap();
        assert_eq!(sent(&mut def, b"Hello"), HELLO);
        let mut inf = Inflater::new(&params());
        assert_eq!(read(&mut inf, &[&HELLO], 100).unwrap(), b"Hello");
    }

    /// miniz_oxide's back reference for the second "Hello" (the RFC's zlib one is
    /// `f2 00 11 00 00`): one byte shorter, as valid.
    const HELLO_AGAIN: [u8; 4] = [0x02, 0x13, 0x00, 0x00];

    #[test]
    fn rfc_7692_a_second_hello_refers_to_the_first() {
        // §7.2.3.2: with context takeover the second "Hello" is a back reference.
        let mut inf = Inflater::new(&params());
        assert_eq!(read(&mut inf, &[&HELLO], 100).unwrap(), b"Hello");
        assert_eq!(
            read(&mut inf, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]], 100).unwrap(),
            b"Hello"
        );
        let mut def = Deflater::new(&params()).unwrap();
        assert_eq!(sent(&mut def, b"Hello"), HELLO);
        assert_eq!(sent(&mut def, b"Hello"), HELLO_AGAIN);
        assert_eq!(read(&mut inf, &[&HELLO_AGAIN], 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7692_fragmented_hello() {
        // §7.2.3.1: the compressed message split across two frames.
        let mut inf = Inflater::new(&params());
        let frames: [&[u8]; 2] = [&[0xf2, 0x48, 0xcd], &[0xc9, 0xc9, 0x07, 0x00]];
        assert_eq!(read(&mut inf, &frames, 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7692_stored_block_hello() {
        // §7.2.3.3: a block with no compression; `stored` writes exactly that.
        let payload = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        let mut inf = Inflater::new(&params());
        assert_eq!(read(&mut inf, &[&payload], 100).unwrap(), b"Hello");
        let mut out = Vec::new();
        stored(b"Hello", &mut out);
        assert_eq!(out, payload);
    }

    #[test]
    fn rfc_7692_bfinal_hello_and_a_fresh_start_after_it() {
        // §7.2.3.4: a final block, then one byte; the next message starts a new stream.
        let mut inf = Inflater::new(&params());
        let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(read(&mut inf, &[&payload], 100).unwrap(), b"Hello");
        assert_eq!(read(&mut inf, &[&HELLO], 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7692_two_blocks_in_one_message() {
        // §7.2.3.5
        let payload = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        let mut inf = Inflater::new(&params());
        assert_eq!(read(&mut inf, &[&payload], 100).unwrap(), b"Hello");
    }

    #[test]
    fn empty_messages_and_empty_frames() {
        let mut def = Deflater::new(&params()).unwrap();
        let empty = sent(&mut def, b"");
        assert_eq!(empty, [0x00]);
        let mut inf = Inflater::new(&params());
        assert_eq!(read(&mut inf, &[&empty], 100).unwrap(), b"");
        // A frame with nothing in it, and a message whose payload is empty.
        assert_eq!(read(&mut inf, &[&HELLO, &[]], 100).unwrap(), b"Hello");
        assert_eq!(read(&mut inf, &[], 100).unwrap(), b"");
    }

    #[test]
    fn without_context_takeover_each_message_stands_alone() {
        let mut def = Deflater::new(&no_takeover()).unwrap();
        assert_eq!(sent(&mut def, b"Hello"), HELLO);
        assert_eq!(sent(&mut def, b"Hello"), HELLO);
        // Our inflater starts afresh: a back reference to the last message finds no "Hello"
        // (miniz_oxide reads a reference before the stream's start as zeros).
        let mut inf = Inflater::new(&no_takeover());
        assert_eq!(read(&mut inf, &[&HELLO], 100).unwrap(), b"Hello");
        assert_eq!(
            read(&mut inf, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]], 100).unwrap(),
            b"H\0\0\0\0"
        );
    }

    #[test]
    fn each_direction_keeps_or_drops_context_on_its_own() {
        let client_only = DeflateParams {
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut def = Deflater::new(&client_only).unwrap();
        assert_eq!(sent(&mut def, b"Hello"), HELLO);
        assert_eq!(sent(&mut def, b"Hello"), HELLO);
        let mut inf = Inflater::new(&client_only);
        read(&mut inf, &[&HELLO], 100).unwrap();
        assert_eq!(
            read(&mut inf, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]], 100).unwrap(),
            b"Hello"
        );
        let server_only = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut def = Deflater::new(&server_only).unwrap();
        sent(&mut def, b"Hello");
        assert_eq!(sent(&mut def, b"Hello"), HELLO_AGAIN);
        let mut inf = Inflater::new(&server_only);
        read(&mut inf, &[&HELLO], 100).unwrap();
        assert_eq!(
            read(&mut inf, &[&[0xf2, 0x00, 0x11, 0x00, 0x00]], 100).unwrap(),
            b"H\0\0\0\0"
        );
    }

    #[test]
    fn no_deflater_for_a_window_under_15() {
        let small = DeflateParams {
            client_max_window_bits: 14,
            ..DeflateParams::default()
        };
        assert!(Deflater::new(&small).is_none());
    }

    #[test]
    fn a_2_mb_document_round_trips_in_frames_both_ways() {
        let doc = json(2_000_000);
        for p in [params(), no_takeover()] {
            let mut def = Deflater::new(&p).unwrap();
            let mut inf = Inflater::new(&p);
            for _ in 0..2 {
                let wire = sent(&mut def, &doc);
                assert!(wire.len() < doc.len() / 4, "{}", wire.len());
                let frames: Vec<&[u8]> = wire.chunks(65_536).collect();
                let back = read(&mut inf, &frames, doc.len()).unwrap();
                assert!(back == doc);
            }
        }
    }

    #[test]
    fn the_limit_is_the_message_size() {
        let mut inf = Inflater::new(&params());
        assert_eq!(read(&mut inf, &[&HELLO], 5).unwrap(), b"Hello");
        let mut inf = Inflater::new(&params());
        assert_eq!(
            read(&mut inf, &[&HELLO], 4),
            Err(InflateError::TooBig { size: 5 })
        );
    }

    #[test]
    fn a_bomb_fails_within_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let mut def = Deflater::new(&params()).unwrap();
        let bomb = sent(&mut def, &zeros);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let limit = 65_535;
        // Frame by frame, and all in one frame.
        for frame_size in [1024, bomb.len()] {
            let mut inf = Inflater::new(&params());
            let mut out = Vec::new();
            let mut failed = None;
            for frame in bomb.chunks(frame_size) {
                if let Err(e) = inf.inflate(frame, &mut out, limit) {
                    failed = Some(e);
                    break;
                }
            }
            assert_eq!(failed, Some(InflateError::TooBig { size: 65_536 }));
            assert!(out.capacity() <= limit + 1, "{}", out.capacity());
        }
        assert_eq!(
            InflateError::TooBig { size: 65_536 }.to_string(),
            "message inflates to 65536 bytes or more"
        );
    }

    #[test]
    fn inline_sizes() {
        // The heap figures in the doc comments come from a counting allocator outside the
        // crate; run with --nocapture to see the inline part.
        println!(
            "Inflater {} bytes, Deflater {} bytes inline",
            std::mem::size_of::<Inflater>(),
            std::mem::size_of::<Deflater>()
        );
        assert!(std::mem::size_of::<Deflater>() <= 64);
    }

    #[test]
    fn corrupt_streams_fail() {
        let mut inf = Inflater::new(&params());
        // BTYPE 11 is reserved.
        assert_eq!(
            read(&mut inf, &[&[0xff, 0xff]], 100),
            Err(InflateError::Corrupt)
        );
        // A stored block whose length and complement disagree.
        let mut inf = Inflater::new(&params());
        assert_eq!(
            read(&mut inf, &[&[0x00, 0x05, 0x00, 0x00, 0x00]], 100),
            Err(InflateError::Corrupt)
        );
        // Fixed Huffman: "H", then the length code 286 or the distance code 30 (both unused).
        for payload in [[0xf2, 0x18, 0x03], [0xf2, 0x00, 0x3e]] {
            let mut inf = Inflater::new(&params());
            assert_eq!(read(&mut inf, &[&payload], 100), Err(InflateError::Corrupt));
        }
        assert_eq!(InflateError::Corrupt.to_string(), "invalid compressed data");
    }

    #[test]
    fn large_stored_fallback_round_trips() {
        let doc = json(200_000);
        let mut out = Vec::new();
        stored(&doc, &mut out);
        assert_eq!(out.len(), doc.len() + 5 * doc.len().div_ceil(65_535) + 1);
        let mut inf = Inflater::new(&params());
        assert!(read(&mut inf, &[&out], doc.len()).unwrap() == doc);
    }

    #[test]
    fn nothing_is_allocated_before_the_first_message() {
        let p = params();
        assert!(Inflater::new(&p).state.is_none());
        assert!(Deflater::new(&p).unwrap().state.is_none());
    }
}
