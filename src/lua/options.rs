//! `wsopen` options: the LuWS table read into the core's `OpenSpec`, plus the parts that stay
//! in Lua (handlers, the `connect` function). Defaults are written back into the caller's
//! table, as LuWS does.

use std::time::Duration;

use mlua::{Function, Table, Value};

use super::args::lua_error;
use crate::error::Error;
use crate::extension::DeflateConfig;
use crate::proxy::{Proxy, ProxySetting};
use crate::spec::OpenSpec;

/// The Lua-side parts of the options.
pub struct LuaParts {
    pub control_handler: Option<Function>,
    pub handler_args: Option<Table>,
    pub connect: Option<Function>,
    /// Called after every successful open (`reconnect`).
    pub on_open: Option<Function>,
}

/// Reads options for one API function, whose name the errors carry.
pub struct Reader<'a> {
    t: &'a Table,
    func: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(t: &'a Table, func: &'static str) -> Reader<'a> {
        Reader { t, func }
    }

    // Not inlined: dozens of call sites share one copy (the Vera build counts every KB).
    #[inline(never)]
    fn bad(&self, name: &'static str, msg: impl Into<String>) -> mlua::Error {
        lua_error(Error::BadOption {
            name,
            func: self.func,
            msg: msg.into(),
        })
    }

    /// `<what> expected, got <type>`.
    #[inline(never)]
    fn wrong(&self, name: &'static str, what: &str, got: &Value) -> mlua::Error {
        self.bad(
            name,
            format!("{what} expected, got {}", super::args::type_name(got)),
        )
    }

    #[inline(never)]
    fn number(&self, name: &'static str) -> mlua::Result<Option<f64>> {
        match self.t.get::<Value>(name)? {
            Value::Nil => Ok(None),
            Value::Integer(i) => Ok(Some(i as f64)),
            Value::Number(n) if n.is_finite() => Ok(Some(n)),
            Value::Number(_) => Err(self.bad(name, "finite number expected")),
            // Lua's own conversion (as tonumber), not Rust's float parser: the Vera build has
            // no room for a second one.
            Value::String(_) => match self.t.get::<Option<f64>>(name) {
                Ok(Some(n)) if n.is_finite() => Ok(Some(n)),
                _ => Err(self.bad(name, "number expected")),
            },
            other => Err(self.wrong(name, "number", &other)),
        }
    }

    #[inline(never)]
    fn seconds(&self, name: &'static str) -> mlua::Result<Option<Duration>> {
        match self.number(name)? {
            None => Ok(None),
            Some(n) if !(0.0..=1e9).contains(&n) => {
                Err(self.bad(name, "seconds must be between 0 and 1e9"))
            }
            Some(n) => Ok(Some(Duration::from_secs_f64(n))),
        }
    }

    #[inline(never)]
    fn size(&self, name: &'static str, min: f64, max: f64) -> mlua::Result<Option<usize>> {
        match self.number(name)? {
            None => Ok(None),
            Some(n) if n < min || n > max || n.fract() != 0.0 => {
                Err(self.bad(name, format!("integer from {min} to {max} expected")))
            }
            Some(n) => Ok(Some(n as usize)),
        }
    }

    #[inline(never)]
    fn string(&self, name: &'static str) -> mlua::Result<Option<String>> {
        match self.t.get::<Value>(name)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(s.to_string_lossy())),
            other => Err(self.wrong(name, "string", &other)),
        }
    }

    #[inline(never)]
    fn flag(&self, name: &'static str) -> mlua::Result<bool> {
        match self.t.get::<Value>(name)? {
            Value::Nil => Ok(false),
            Value::Boolean(b) => Ok(b),
            other => Err(self.wrong(name, "boolean", &other)),
        }
    }

    #[inline(never)]
    fn function(&self, name: &'static str) -> mlua::Result<Option<Function>> {
        match self.t.get::<Value>(name)? {
            Value::Nil => Ok(None),
            Value::Function(f) => Ok(Some(f)),
            other => Err(self.wrong(name, "function", &other)),
        }
    }

    /// A LuaSec-style list: a table of strings, or a comma-separated string (LuWS splits on commas).
    #[inline(never)]
    fn list(&self, name: &'static str) -> mlua::Result<Vec<String>> {
        match self.t.get::<Value>(name)? {
            Value::Nil => Ok(Vec::new()),
            Value::String(s) => Ok(s
                .to_string_lossy()
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()),
            Value::Table(items) => items
                .sequence_values::<Value>()
                .map(|v| match v? {
                    Value::String(s) => Ok(s.to_string_lossy()),
                    other => Err(self.wrong(name, "strings", &other)),
                })
                .collect(),
            other => Err(self.wrong(name, "string or table", &other)),
        }
    }
}

/// Reads the options table of `func` (`wsopen`, or `create`'s fifth argument) into `spec` and
/// returns the Lua-side parts.
pub fn read(t: &Table, spec: &mut OpenSpec, func: &'static str) -> mlua::Result<LuaParts> {
    let r = Reader::new(t, func);
    read_session(&r, &mut spec.session)?;
    if let Some(d) = r.seconds("connect_timeout")? {
        spec.connect_timeout = d;
    }
    if let Some(d) = r.seconds("handshake_timeout")? {
        spec.handshake_timeout = d;
    }
    if let Some(n) = r.size("follow_redirects", 0.0, 20.0)? {
        spec.follow_redirects = n as u32;
    }
    read_tls(&r, &mut spec.tls)?;
    spec.proxy = proxy(&r)?;
    read_headers(&r, &mut spec.headers)?;
    read_protocols(&r, &mut spec.headers)?;
    spec.deflate = permessage_deflate(&r)?;
    spec.notify = notify(&r)?;
    spec.reconnect = reconnect(&r)?;
    let parts = lua_parts(&r)?;
    if spec.proxy != ProxySetting::Direct && parts.connect.is_some() {
        // The connect function decides where the socket leads.
        return Err(r.bad("proxy", "cannot be combined with a connect function"));
    }
    if spec.reconnect.is_some() && parts.connect.is_some() {
        // The reopening runs off the Lua thread, where a Lua function cannot be called.
        return Err(r.bad("reconnect", "cannot reopen through a connect function"));
    }
    Ok(parts)
}

/// `proxy = "http://[user:pass@]host:port" | "socks5://…" | "socks5h://…" | "env" | false`.
fn proxy(r: &Reader) -> mlua::Result<ProxySetting> {
    match r.t.get::<Value>("proxy")? {
        Value::Nil | Value::Boolean(false) => Ok(ProxySetting::Direct),
        Value::String(s) => {
            let text = s.to_string_lossy();
            if text.trim() == "env" {
                return Ok(ProxySetting::FromEnv);
            }
            Proxy::parse(&text)
                .map(ProxySetting::Via)
                .map_err(|why| r.bad("proxy", why.to_string()))
        }
        other => Err(r.wrong("proxy", "string", &other)),
    }
}

/// `permessage_deflate = true | { client_max_window_bits = 8..15, server_max_window_bits = 8..15,
/// client_no_context_takeover = bool, server_no_context_takeover = bool, threshold = bytes }`.
fn permessage_deflate(r: &Reader) -> mlua::Result<Option<DeflateConfig>> {
    let t = match r.t.get::<Value>("permessage_deflate")? {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Boolean(true) => return Ok(Some(DeflateConfig::default())),
        Value::Table(t) => t,
        other => return Err(r.wrong("permessage_deflate", "table or boolean", &other)),
    };
    let rt = Reader::new(&t, r.func);
    let bits = |name| rt.size(name, 8.0, 15.0).map(|n| n.map(|n| n as u8));
    // `client_max_window_bits`: 8..15, or true (the default: offered without a value, the
    // server may choose) or false (not offered).
    let (client_max_window_bits, offer_client_window) =
        match t.get::<Value>("client_max_window_bits")? {
            Value::Boolean(b) => (None, b),
            _ => (bits("client_max_window_bits")?, true),
        };
    let mut c = DeflateConfig {
        client_max_window_bits,
        offer_client_window,
        server_max_window_bits: bits("server_max_window_bits")?,
        client_no_context_takeover: rt.flag("client_no_context_takeover")?,
        server_no_context_takeover: rt.flag("server_no_context_takeover")?,
        ..DeflateConfig::default()
    };
    if let Some(n) = rt.size("threshold", 0.0, 1e15)? {
        c.threshold = n;
    }
    Ok(Some(c))
}

/// `reconnect = true | { initial = 1, max = 60, factor = 2, jitter = 0.25, attempts = nil }`.
fn reconnect(r: &Reader) -> mlua::Result<Option<crate::backoff::Policy>> {
    let t = match r.t.get::<Value>("reconnect")? {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Boolean(true) => return Ok(Some(crate::backoff::Policy::default())),
        Value::Table(t) => t,
        other => {
            return Err(r.wrong("reconnect", "table or boolean", &other));
        }
    };
    let rt = Reader::new(&t, r.func);
    let mut p = crate::backoff::Policy::default();
    if let Some(d) = rt.seconds("initial")? {
        p.initial = d;
    }
    if let Some(d) = rt.seconds("max")? {
        p.max = d;
    }
    match rt.number("factor")? {
        Some(f) if !(1.0..=100.0).contains(&f) => {
            return Err(rt.bad("factor", "a number from 1 to 100 expected"));
        }
        Some(f) => p.factor = f,
        None => {}
    }
    match rt.number("jitter")? {
        Some(j) if !(0.0..=1.0).contains(&j) => {
            return Err(rt.bad("jitter", "a fraction from 0 to 1 expected"));
        }
        Some(j) => p.jitter = j,
        None => {}
    }
    p.attempts = rt
        .size("attempts", 1.0, f64::from(u32::MAX))?
        .map(|n| n as u32);
    Ok(Some(p))
}

/// The options of an open connection: timers, sizes, masking.
fn read_session(r: &Reader, s: &mut crate::session::SessionConfig) -> mlua::Result<()> {
    if let Some(d) = r.seconds("receive_timeout")? {
        s.receive_timeout = (!d.is_zero()).then_some(d);
    }
    if let Some(d) = r.seconds("keepalive")? {
        s.keepalive = (!d.is_zero()).then_some(d);
    }
    if let Some(d) = r.seconds("send_timeout")? {
        s.send_timeout = d;
        s.sends_wait = !d.is_zero();
    }
    if let Some(d) = r.seconds("close_timeout")? {
        s.close_timeout = d;
    }
    if let Some(n) = r.size("receive_chunk_size", 1.0, 16.0 * 1024.0 * 1024.0)? {
        // Room for a whole frame header per read.
        s.chunk_size = n.max(16);
    }
    if let Some(n) = r.size("receive_budget", 1.0, 1e12)? {
        s.receive_budget = n;
    }
    if let Some(n) = r.size("max_payload_size", 1.0, 1e15)? {
        s.max_payload_size = n;
    }

    // RFC 6455 §5.3 requires clients to mask; `false` is LuWS's opt-out for servers that
    // cannot unmask.
    match r.t.get::<Value>("use_masking")? {
        Value::Nil => {}
        Value::Boolean(b) => s.masking = b,
        other => {
            return Err(r.wrong("use_masking", "boolean", &other));
        }
    }
    Ok(())
}

/// LuaSec's TLS options.
fn read_tls(r: &Reader, tls: &mut crate::tls::TlsSettings) -> mlua::Result<()> {
    if let Some(p) = r.string("ssl_protocol")? {
        tls.apply_protocol(&p)
            .map_err(|m| r.bad("ssl_protocol", m))?;
    }
    for flag in r.list("ssl_options")? {
        tls.apply_option(&flag)
            .map_err(|m| r.bad("ssl_options", m))?;
    }
    for v in r.list("ssl_verify")? {
        match v.as_str() {
            "none" => {}
            "peer" | "client_once" | "fail_if_no_peer_cert" => tls.verify = true,
            other => return Err(r.bad("ssl_verify", format!("unknown value '{other}'"))),
        }
    }
    if let Some(m) = r.string("ssl_mode")? {
        if m != "client" {
            return Err(r.bad("ssl_mode", "only 'client' is possible for a client"));
        }
    }
    // A list, or one string with pins separated by `;` (curl's --pinnedpubkey) or `,`.
    for pin in r.list("ssl_pin")?.iter().flat_map(|p| p.split(';')) {
        if !pin.trim().is_empty() {
            let parsed = crate::tls::parse_pin(pin).map_err(|m| r.bad("ssl_pin", m))?;
            tls.pins.push(parsed);
        }
    }
    if let Some(name) = r.string("ssl_servername")? {
        // A DNS name or an IP address; anything else could not be checked against a certificate.
        let ok = name.parse::<std::net::IpAddr>().is_ok()
            || (!name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !ok {
            return Err(r.bad("ssl_servername", format!("'{name}' is not a host name")));
        }
        tls.servername = Some(name);
    }
    tls.cafile = r.string("ssl_cafile")?;
    tls.certificate = r.string("ssl_certificate")?;
    tls.key = r.string("ssl_key")?;
    tls.check().map_err(|p| {
        let name = match p {
            crate::tls::SettingsProblem::HalfPair => "ssl_key",
            crate::tls::SettingsProblem::NoVersion => "ssl_options",
        };
        r.bad(name, p.to_string())
    })
}

/// `upgrade_headers`: extra request headers, in a stable order.
fn read_headers(r: &Reader, headers: &mut Vec<(String, String)>) -> mlua::Result<()> {
    match r.t.get::<Value>("upgrade_headers")? {
        Value::Nil => {}
        Value::Table(h) => {
            for pair in h.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let text = |v: &Value| match v {
                    Value::String(s) => Some(s.to_string_lossy()),
                    Value::Integer(i) => Some(i.to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                match (text(&k), text(&v)) {
                    (Some(k), Some(v)) => headers.push((k, v)),
                    _ => return Err(r.bad("upgrade_headers", "string keys and values expected")),
                }
            }
            // pairs() order is arbitrary; a stable order makes requests reproducible.
            headers.sort();
            crate::handshake::check_extra_headers(headers)
                .map_err(|m| r.bad("upgrade_headers", m))?;
        }
        other => {
            return Err(r.wrong("upgrade_headers", "table", &other));
        }
    }

    Ok(())
}

/// `protocols = { "a", "b" }` (or `"a, b"`): the subprotocols offered, in order of preference;
/// the server's choice is `conn:protocol()`, a choice not offered fails the open.
fn read_protocols(r: &Reader, headers: &mut Vec<(String, String)>) -> mlua::Result<()> {
    let offered = r.list("protocols")?;
    if offered.is_empty() {
        return Ok(());
    }
    // RFC 6455 §4.1: each is an RFC 7230 token.
    let token = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if let Some(bad) = offered.iter().find(|p| !token(p)) {
        return Err(r.bad("protocols", format!("'{bad}' is not a protocol name")));
    }
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
    {
        return Err(r.bad(
            "protocols",
            "given twice: also as Sec-WebSocket-Protocol in upgrade_headers",
        ));
    }
    headers.push(("Sec-WebSocket-Protocol".into(), offered.join(", ")));
    Ok(())
}

/// The options that stay in Lua: handlers and the `connect` function.
fn lua_parts(r: &Reader) -> mlua::Result<LuaParts> {
    let handler_args = match r.t.get::<Value>("handler_args")? {
        Value::Nil => None,
        Value::Table(a) => Some(a),
        other => {
            return Err(r.wrong("handler_args", "table", &other));
        }
    };
    Ok(LuaParts {
        control_handler: r.function("control_handler")?,
        handler_args,
        connect: r.function("connect")?,
        on_open: r.function("on_open")?,
    })
}

/// A number as LuWS gives it: an integer when whole and within `lua_Integer` (so Lua 5.3+ shows
/// `65535`, not `65535.0`; `lua_Integer` is 32-bit on 32-bit targets such as Vera), else a float.
fn whole(n: f64) -> Value {
    let fits = n >= mlua::Integer::MIN as f64 && n < mlua::Integer::MAX as f64;
    if n.fract() == 0.0 && fits {
        Value::Integer(n as mlua::Integer)
    } else {
        Value::Number(n)
    }
}

/// Writes LuWS's defaults into the caller's table where it left them unset (LuWS does this,
/// and code may read them back).
pub fn fill_defaults(t: &Table, spec: &OpenSpec) -> mlua::Result<()> {
    let s = &spec.session;
    let set = |k: &str, v: Value| -> mlua::Result<()> {
        if t.get::<Value>(k)?.is_nil() {
            t.set(k, v)?;
        }
        Ok(())
    };
    set(
        "receive_timeout",
        whole(s.receive_timeout.map_or(0.0, |d| d.as_secs_f64())),
    )?;
    set("receive_chunk_size", whole(s.chunk_size as f64))?;
    set("max_payload_size", whole(s.max_payload_size as f64))?;
    set("use_masking", Value::Boolean(s.masking))?;
    Ok(())
}

/// `notify = { device = N, service = "...", action = "HandleReceive", host =, port =, pid = }`.
fn notify(r: &Reader) -> mlua::Result<Option<crate::notify::NotifyTarget>> {
    static NEXT_PID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let n = match r.t.get::<Value>("notify")? {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Table(n) => n,
        other => {
            return Err(r.wrong("notify", "table", &other));
        }
    };
    let rn = Reader::new(&n, r.func);
    let device = match rn.number("device")? {
        Some(d) if d >= 0.0 && d.fract() == 0.0 => d as i64,
        _ => return Err(r.bad("notify", "device (a Luup device number) expected")),
    };
    let service = rn
        .string("service")?
        .ok_or_else(|| r.bad("notify", "service (a serviceId) expected"))?;
    let action = rn
        .string("action")?
        .unwrap_or_else(|| "HandleReceive".into());
    let host = rn.string("host")?.unwrap_or_else(|| "127.0.0.1".into());
    let port = rn.size("port", 1.0, 65535.0)?.unwrap_or(3480) as u16;
    let pid = match n.get::<Value>("pid")? {
        Value::Nil => NEXT_PID
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string(),
        Value::String(s) => s.to_string_lossy(),
        v @ (Value::Integer(_) | Value::Number(_)) => v.to_string()?,
        other => {
            return Err(r.wrong("notify", "pid: string", &other));
        }
    };
    Ok(Some(crate::notify::NotifyTarget {
        host,
        port,
        device,
        service,
        action,
        pid,
    }))
}
