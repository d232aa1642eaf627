//! The ceiling: a pure-Rust tungstenite client doing the same work as `client.lua`, with plain
//! blocking I/O and luws's default buffer settings (read_buffer_size 4096, write_buffer_size 0).
//!
//! `luws-bench client MODE COUNT SIZE URL` prints one `RESULT key=value ...` line; `secs` is the
//! timed part only (after the connection is open, except for `openclose`).

use std::net::TcpStream;
use std::time::Instant;

use tungstenite::protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode};
use tungstenite::{Bytes, Message, Utf8Bytes, WebSocket};

/// The 32-byte text message of the echo test (the same as client.lua's).
pub const ECHO_TEXT: &str = "luws-bench echo 32 bytes payload";

pub const READ_BUFFER_SIZE: usize = 4096;
pub const WRITE_BUFFER_SIZE: usize = 0;

type Ws = WebSocket<TcpStream>;

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("rust client: {what}: {e}");
    std::process::exit(1)
}

fn open(url: &str) -> Ws {
    let hostport = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| die("url", url));
    let tcp = TcpStream::connect(hostport).unwrap_or_else(|e| die("connect", e));
    // luws sets TCP_NODELAY too.
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(WRITE_BUFFER_SIZE)
        .max_message_size(Some(32 << 20))
        .max_frame_size(Some(32 << 20));
    match tungstenite::client::client_with_config(url, tcp, Some(config)) {
        Ok((ws, _)) => ws,
        Err(e) => die("handshake", e),
    }
}

/// Sends Close 1000, waits for the peer's Close, closes the socket (what `wsclose` does).
fn close(mut ws: Ws) {
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static(""),
    }));
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => die("close", e),
        }
    }
}

fn read(ws: &mut Ws) -> Message {
    ws.read().unwrap_or_else(|e| die("read", e))
}

fn send(ws: &mut Ws, m: Message) {
    ws.send(m).unwrap_or_else(|e| die("send", e))
}

fn wait_text(ws: &mut Ws, want: &str) {
    loop {
        if let Message::Text(t) = read(ws) {
            if t.as_str() == want {
                return;
            }
            die("unexpected text", t.as_str());
        }
    }
}

/// A KiB figure of /proc/self/status (VmRSS:, VmHWM: — the peak of this process image; getrusage's
/// maxrss would include the parent's memory from before exec).
pub fn status_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn main(args: &[String]) {
    let [mode, count, size, url] = args else {
        die("usage", "client MODE COUNT SIZE URL");
    };
    let n: usize = count.parse().unwrap_or_else(|e| die("count", e));
    let size: usize = size.parse().unwrap_or_else(|e| die("size", e));
    match mode.as_str() {
        "echo" => {
            let mut ws = open(url);
            let text = Utf8Bytes::from_static(ECHO_TEXT);
            let t0 = Instant::now();
            for _ in 0..n {
                send(&mut ws, Message::Text(text.clone()));
                wait_text(&mut ws, ECHO_TEXT);
            }
            let secs = t0.elapsed().as_secs_f64();
            close(ws);
            println!("RESULT mode=echo n={n} secs={secs:.6}");
        }
        "recv" | "big" => {
            let mut ws = open(url);
            let t0 = Instant::now();
            send(&mut ws, Message::text(format!("push {size} {n}")));
            let mut got = 0;
            while got < n {
                match read(&mut ws) {
                    Message::Binary(b) if b.len() == size => got += 1,
                    Message::Binary(b) => die("wrong size", b.len()),
                    _ => {}
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            close(ws);
            println!("RESULT mode={mode} n={n} secs={secs:.6} hwm={}", status_kib("VmHWM:"));
        }
        "send" => {
            let mut ws = open(url);
            let payload = Bytes::from(vec![0x5au8; size]);
            let t0 = Instant::now();
            for _ in 0..n {
                send(&mut ws, Message::Binary(payload.clone()));
            }
            send(&mut ws, Message::text("done"));
            wait_text(&mut ws, "ack");
            let secs = t0.elapsed().as_secs_f64();
            close(ws);
            println!("RESULT mode=send n={n} secs={secs:.6}");
        }
        "openclose" => {
            let t0 = Instant::now();
            for _ in 0..n {
                close(open(url));
            }
            let secs = t0.elapsed().as_secs_f64();
            println!("RESULT mode=openclose n={n} secs={secs:.6}");
        }
        "mem" => {
            // RSS before any connection, with one open (after a first one that faulted the code
            // in), and with n more: the same steps as client.lua's.
            let r0 = status_kib("VmRSS:");
            let first = open(url);
            let r1 = status_kib("VmRSS:");
            let second = open(url);
            let r2 = status_kib("VmRSS:");
            let many: Vec<Ws> = (0..n).map(|_| open(url)).collect();
            let r3 = status_kib("VmRSS:");
            println!("RESULT mode=mem n={n} rss0={r0} rss1={r1} rss2={r2} rss3={r3}");
            drop((first, second, many));
        }
        other => die("unknown mode", other),
    }
}
