//! The benchmark's server: native tungstenite, blocking, one thread per connection, so it is
//! never the bottleneck. What it does is chosen by the client's text messages:
//!
//! * `push SIZE COUNT`: sends COUNT binary messages of SIZE bytes (each ending with its number),
//!   as fast as the socket takes them;
//! * `json SIZE COUNT`: sends COUNT text messages, Home Assistant `get_states`-like JSON of about
//!   SIZE bytes (`state_dump`), each starting with its own `{"id":N,` (N = 0, 1, …), compressed when
//!   permessage-deflate was agreed; then `wire BYTES`, the bytes those COUNT frames took on the
//!   wire (headers and payloads). All COUNT frames are built (and compressed) before the first is
//!   sent, so that the client's timed part, from the first message to the last, is not the
//!   server's compressor;
//! * `done`: answers `ack` (the end of a send run: every byte before it has arrived);
//! * any other text: echoed back, at once, or 10 ms late on a connection opened at `/late`;
//! * binary messages: discarded.
//!
//! The late echo is for the instruction counts: a reply that cannot already be there when the
//! client starts waiting makes every client poll the same way for every message (one wait, then
//! one receive that reads the reply and one that finds nothing), so Ir/msg is the same from run to
//! run and the same pattern for luws, the C floor and the ceiling.
//!
//! permessage-deflate is agreed on any path when the client offers it (`deflate`): the client's
//! offer is the switch, as with a real server, and none of the other workloads offers it.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use tungstenite::handshake::server::{Request, Response};
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::{Bytes, Message};

use crate::deflate::{self, Deflater};
use crate::state_dump;

/// The URL path whose connections get their echoes late.
pub const LATE_PATH: &str = "/late";
/// How late: far longer than a client needs to reach its wait, even under callgrind.
pub const ECHO_DELAY: Duration = Duration::from_millis(10);

/// Accepts connections for ever (the caller runs this on a thread of its own).
pub fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(s) = stream else { continue };
        // Small stacks: the memory test keeps a thousand connections (threads) open.
        let _ = thread::Builder::new()
            .name("bench-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = handle(s);
            });
    }
}

fn handle(s: TcpStream) -> tungstenite::Result<()> {
    s.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let mut late = false;
    let mut deflater = None;
    // The error type is tungstenite's (its Callback trait's), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let path = |req: &Request, mut resp: Response| {
        late = req.uri().path() == LATE_PATH;
        if let Some(agreed) = deflate::negotiate(req.headers())
            && let Ok(v) = HeaderValue::from_str(&agreed.answer)
        {
            resp.headers_mut().insert("sec-websocket-extensions", v);
            deflater = Some(Deflater::new(&agreed));
        }
        Ok(resp)
    };
    let mut ws = tungstenite::accept_hdr_with_config(s, path, Some(config)).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => {
            tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
        }
    })?;
    loop {
        // A Close is answered inside read(); the next read reports ConnectionClosed.
        match ws.read()? {
            Message::Text(t) => {
                if let Some(args) = t.as_str().strip_prefix("push ") {
                    let mut it = args.split_whitespace().map(|w| w.parse::<usize>().unwrap_or(0));
                    let (size, count) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
                    // Each message ends with its number (big-endian, so the last byte changes
                    // fastest), so that no two are equal: Lua 5.1 would otherwise find each one
                    // already interned, or, as it hashes only ~32 sampled bytes of a string
                    // (always the last one), compare every message byte by byte with the ones
                    // still alive; real traffic is neither.
                    let mut payload = vec![0xa5u8; size];
                    let tail = size.min(8);
                    for i in 0..count {
                        payload[size - tail..].copy_from_slice(&(i as u64).to_be_bytes()[8 - tail..]);
                        ws.write(Message::Binary(Bytes::copy_from_slice(&payload)))?;
                    }
                    ws.flush()?;
                } else if let Some(args) = t.as_str().strip_prefix("json ") {
                    let mut it = args.split_whitespace().map(|w| w.parse::<usize>().unwrap_or(0));
                    let (size, count) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
                    let frames = json_frames(size, count, deflater.as_mut())?;
                    let wire: usize = frames.iter().map(Frame::len).sum();
                    for f in frames {
                        ws.write(Message::Frame(f))?;
                    }
                    ws.send(Message::text(format!("wire {wire}")))?;
                } else if t.as_str() == "done" {
                    ws.send(Message::text("ack"))?;
                } else {
                    if late {
                        thread::sleep(ECHO_DELAY);
                    }
                    ws.send(Message::Text(t))?;
                }
            }
            Message::Binary(_) => {}
            _ => {}
        }
    }
}

/// The COUNT messages of `json SIZE COUNT`, as frames ready to send: the same document with the
/// id changed, compressed in order (one stream, when context takeover is kept) or plain.
fn json_frames(size: usize, count: usize, mut deflater: Option<&mut Deflater>) -> tungstenite::Result<Vec<Frame>> {
    let body = state_dump::body(size);
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        let mut doc = String::with_capacity(body.len() + 24);
        doc.push_str(state_dump::HEAD);
        doc.push_str(&i.to_string());
        doc.push_str(&body);
        frames.push(match deflater.as_deref_mut() {
            Some(d) => d.text_frame(doc.as_bytes()).map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?,
            None => Frame::message(Bytes::from(doc), OpCode::Data(Data::Text), true),
        });
    }
    Ok(frames)
}
