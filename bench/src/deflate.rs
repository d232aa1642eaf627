//! The server's side of permessage-deflate (RFC 7692), as far as the bench needs it: the answer
//! to a client's offer, and the compressor for the messages it sends. tungstenite 0.30 has no
//! extensions, so the server compresses with flate2 and sends the frames with RSV1 set itself;
//! it never inflates, and a compressed message from the client is a protocol error to
//! tungstenite (the bench's commands are far below luws's 1024-byte compression threshold).
//!
//! Context takeover is kept unless the client asks otherwise, as aiohttp (Home Assistant's
//! server) and Python websockets do by default; level 1 and a 15-bit window, as aiohttp's
//! writer (`Z_BEST_SPEED`, `wbits=-15`).

use flate2::{Compress, Compression, FlushCompress};
use tungstenite::Bytes;
use tungstenite::http::HeaderMap;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

const NAME: &str = "permessage-deflate";
/// The empty stored block a sync flush ends with, stripped from each message (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What was agreed with one client.
pub struct Agreed {
    /// The `Sec-WebSocket-Extensions` value to answer with.
    pub answer: String,
    /// The client asked for `server_no_context_takeover`: each message on its own.
    no_context_takeover: bool,
}

/// The answer to the client's offers: the first `permessage-deflate` offer whose parameters
/// this server can honour (§5.1, §7.1), or none. An offer limiting the server's window below
/// 15 bits is declined: miniz_oxide compresses with 15 only.
pub fn negotiate(headers: &HeaderMap) -> Option<Agreed> {
    let offers = headers
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    'offer: for offer in offers {
        let mut parts = offer.split(';').map(str::trim);
        if parts.next() != Some(NAME) {
            continue;
        }
        let (mut server_nct, mut client_nct, mut seen) = (false, false, Vec::new());
        for p in parts {
            let (key, value) = match p.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (p, None),
            };
            if seen.contains(&key) {
                continue 'offer;
            }
            seen.push(key);
            match (key, value) {
                ("server_no_context_takeover", None) => server_nct = true,
                ("client_no_context_takeover", None) => client_nct = true,
                ("server_max_window_bits", Some("15")) => {}
                // Ours to set or leave out; the server never inflates.
                ("client_max_window_bits", None) => {}
                ("client_max_window_bits", Some(v)) if v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)) => {}
                _ => continue 'offer,
            }
        }
        let mut answer = NAME.to_string();
        if server_nct {
            answer.push_str("; server_no_context_takeover");
        }
        if client_nct {
            answer.push_str("; client_no_context_takeover");
        }
        return Some(Agreed { answer, no_context_takeover: server_nct });
    }
    None
}

/// The compressor of one connection.
pub struct Deflater {
    compress: Compress,
    no_context_takeover: bool,
}

impl Deflater {
    pub fn new(agreed: &Agreed) -> Deflater {
        Deflater {
            compress: Compress::new(Compression::new(1), false),
            no_context_takeover: agreed.no_context_takeover,
        }
    }

    /// One text message as a single compressed frame (RSV1 set, §6.1).
    pub fn text_frame(&mut self, payload: &[u8]) -> Result<Frame, String> {
        if self.no_context_takeover {
            self.compress.reset();
        }
        let c = &mut self.compress;
        let start = c.total_in();
        let mut out = Vec::with_capacity(payload.len() / 4 + 64);
        loop {
            let done = (c.total_in() - start) as usize;
            out.reserve(64 * 1024);
            c.compress_vec(&payload[done..], &mut out, FlushCompress::Sync).map_err(|e| e.to_string())?;
            // Done when all input is in and the flush left room unused (it has finished).
            if (c.total_in() - start) as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        if !out.ends_with(&TAIL) {
            return Err("sync flush did not end with 00 00 ff ff".into());
        }
        out.truncate(out.len() - TAIL.len());
        let header = FrameHeader {
            is_final: true,
            rsv1: true,
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        Ok(Frame::from_payload(header, Bytes::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::http::HeaderValue;

    fn offer(v: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert("sec-websocket-extensions", HeaderValue::from_str(v).unwrap());
        negotiate(&h).map(|a| a.answer)
    }

    #[test]
    fn answers_the_offers_it_can_honour() {
        assert_eq!(offer("permessage-deflate").as_deref(), Some("permessage-deflate"));
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits; server_no_context_takeover").as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        assert_eq!(offer("permessage-deflate; server_max_window_bits=10"), None);
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits=10, permessage-deflate").as_deref(),
            Some("permessage-deflate")
        );
        assert_eq!(offer("x-webkit-deflate-frame"), None);
        assert_eq!(offer("permessage-deflate; foo"), None);
    }

    #[test]
    fn frames_inflate_back_with_the_tail_restored() {
        let agreed = negotiate(&{
            let mut h = HeaderMap::new();
            h.insert("sec-websocket-extensions", HeaderValue::from_static("permessage-deflate"));
            h
        })
        .unwrap();
        let mut d = Deflater::new(&agreed);
        let mut inflate = flate2::Decompress::new(false);
        for text in ["{\"a\":1}".repeat(5000), "{\"a\":2}".repeat(7000)] {
            let f = d.text_frame(text.as_bytes()).unwrap();
            assert!(f.header().rsv1);
            let mut input = f.payload().to_vec();
            input.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(text.len() + 64);
            inflate.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
            assert_eq!(out, text.as_bytes());
        }
    }
}
