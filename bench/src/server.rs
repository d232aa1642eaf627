//! The benchmark's server: native tungstenite, blocking, one thread per connection, so it is
//! never the bottleneck. What it does is chosen by the client's text messages:
//!
//! * `push SIZE COUNT`: sends COUNT binary messages of SIZE bytes (each ending with its number),
//!   as fast as the socket takes them;
//! * `done`: answers `ack` (the end of a send run: every byte before it has arrived);
//! * any other text: echoed back, at once, or 10 ms late on a connection opened at `/late`;
//! * binary messages: discarded.
//!
//! The late echo is for the instruction counts: a reply that cannot already be there when the
//! client starts waiting makes every client poll the same way for every message (one wait, then
//! one receive that reads the reply and one that finds nothing), so Ir/msg is the same from run to
//! run and the same pattern for luws, the C floor and the ceiling.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message};

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
    // The error type is tungstenite's (its Callback trait's), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let path = |req: &Request, resp: Response| {
        late = req.uri().path() == LATE_PATH;
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
