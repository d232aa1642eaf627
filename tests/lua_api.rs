//! The Lua layer exercised from Rust with a vendored Lua (`cargo test --no-default-features
//! --features lua51,vendored,tls-native`): the module table loads, and a real exchange with a
//! tungstenite server thread goes through wsopen / wssend / wsreceive / wsclose.
#![cfg(feature = "vendored")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::thread;

use mlua::{Lua, Table};

fn lua_with_luws() -> Lua {
    let lua = Lua::new();
    let t = luws::exports(&lua).unwrap();
    lua.globals().set("luws", t).unwrap();
    lua
}

/// An echo server for `n` connections, on a port of its own.
fn echo_server(n: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                while let Ok(msg) = ws.read() {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn module_table_has_both_apis() {
    let lua = lua_with_luws();
    let t: Table = lua.globals().get("luws").unwrap();
    for f in [
        "wsopen",
        "wssend",
        "wsreceive",
        "wsclose",
        "wslastping",
        "wsreset",
        "wait",
        "create",
        "connect",
        "loop",
        "set_log_level",
        "send",
        "close",
    ] {
        assert!(t.get::<mlua::Function>(f).is_ok(), "{f}");
    }
    assert_eq!(t.get::<i64>("_VERSION").unwrap(), 26325);
}

#[test]
fn echo_round_trip_through_the_luws_api() {
    let port = echo_server(1);
    let lua = lua_with_luws();
    let got: String = lua
        .load(format!(
            r#"
            local got
            local conn = assert(luws.wsopen("ws://127.0.0.1:{port}/", function(c, op, data)
              got = op .. ":" .. data
            end))
            assert(luws.wssend(conn, 1, "hello from rust"))
            for _ = 1, 200 do
              if got then break end
              luws.wait({{ conn }}, 0.05)
              assert(luws.wsreceive(conn) ~= nil)
            end
            luws.wsclose(conn)
            return got
            "#
        ))
        .eval()
        .unwrap();
    assert_eq!(got, "1:hello from rust");
}

#[test]
fn bad_urls_are_returned_and_bad_types_raised() {
    let lua = lua_with_luws();
    let (ok, err): (bool, String) = lua
        .load(r#"return luws.wsopen("ftp://x", function() end)"#)
        .eval()
        .unwrap();
    assert!(!ok);
    assert!(err.starts_with("Invalid protocol/address for WebSocket open in ftp://x"));
    let raised = lua
        .load(r#"luws.wsopen("ws://x/", 42)"#)
        .exec()
        .unwrap_err();
    assert!(
        raised
            .to_string()
            .contains("bad argument #2 to 'wsopen' (function expected, got number)")
    );
}

#[test]
fn verawebsockets_events_on_the_calling_thread() {
    let port = echo_server(1);
    let lua = lua_with_luws();
    let events: String = lua
        .load(format!(
            r#"
            local ev = {{}}
            local wso = luws.create("ws://127.0.0.1:{port}/", {{
              [3] = function(w) ev[#ev + 1] = "3"; luws.send(w, "x") end,
              [8] = function(data, w) ev[#ev + 1] = "8" .. data; luws.close(w) end,
              [4] = function() ev[#ev + 1] = "4" end,
            }}, nil, true)
            luws.connect(wso)
            luws.loop()
            return table.concat(ev, ",")
            "#
        ))
        .eval()
        .unwrap();
    assert_eq!(events, "3,8x,4");
}
