//! luws benchmark.
//!
//! * `luws-bench run [--smoke] [--only json] [--lua-dir DIR] [--sym-lua-dir DIR] [--out FILE]`:
//!   the whole benchmark (what `make bench` / `make bench-smoke` call), or only its large-JSON
//!   row (`make bench-json`);
//! * `luws-bench server [PORT]`: the benchmark server alone, in the foreground;
//! * `luws-bench client MODE COUNT SIZE URL`: the pure-Rust tungstenite ceiling client.

mod client;
mod deflate;
mod run;
mod server;
mod state_dump;

use std::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("client") => client::main(&args[1..]),
        Some("server") => {
            let port = args.get(1).map_or("0", String::as_str);
            let listener = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap_or_else(|e| {
                eprintln!("bind: {e}");
                std::process::exit(1)
            });
            if let Ok(a) = listener.local_addr() {
                println!("listening on ws://{a}/");
            }
            server::serve(listener);
        }
        Some("run") => {
            if let Err(e) = run::main(&args[1..]) {
                eprintln!("bench: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!(
                "usage: luws-bench run [--smoke] [--only json] [--lua-dir DIR] [--sym-lua-dir DIR] [--out FILE]\n\
                 \x20      luws-bench server [PORT]\n\
                 \x20      luws-bench client MODE COUNT SIZE URL"
            );
            std::process::exit(2);
        }
    }
}
