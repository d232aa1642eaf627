//! `wsopen` options: the LuWS table read into the core's `OpenSpec`, plus the parts that stay
//! in Lua (handlers, the `connect` function). Defaults are written back into the caller's
//! table, as LuWS does.

use std::time::Duration;

use mlua::{Function, Table, Value};

use super::args::lua_error;
use crate::error::Error;
use crate::open::OpenSpec;

/// The Lua-side parts of the options.
pub struct LuaParts {
    pub control_handler: Option<Function>,
    pub handler_args: Option<Table>,
    pub connect: Option<Function>,
}

fn bad(name: &'static str, msg: impl Into<String>) -> mlua::Error {
    lua_error(Error::BadOption {
        name,
        func: "wsopen",
        msg: msg.into(),
    })
}

fn number(t: &Table, name: &'static str) -> mlua::Result<Option<f64>> {
    match t.get::<Value>(name)? {
        Value::Nil => Ok(None),
        Value::Integer(i) => Ok(Some(i as f64)),
        Value::Number(n) if n.is_finite() => Ok(Some(n)),
        Value::Number(_) => Err(bad(name, "finite number expected")),
        Value::String(s) => match s.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()) {
            Some(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(bad(name, "number expected")),
        },
        other => Err(bad(
            name,
            format!("number expected, got {}", super::args::type_name(&other)),
        )),
    }
}

fn seconds(t: &Table, name: &'static str) -> mlua::Result<Option<Duration>> {
    match number(t, name)? {
        None => Ok(None),
        Some(n) if !(0.0..=1e9).contains(&n) => Err(bad(name, "seconds must be between 0 and 1e9")),
        Some(n) => Ok(Some(Duration::from_secs_f64(n))),
    }
}

fn size(t: &Table, name: &'static str, min: f64, max: f64) -> mlua::Result<Option<usize>> {
    match number(t, name)? {
        None => Ok(None),
        Some(n) if n < min || n > max || n.fract() != 0.0 => {
            Err(bad(name, format!("integer from {min} to {max} expected")))
        }
        Some(n) => Ok(Some(n as usize)),
    }
}

fn string(t: &Table, name: &'static str) -> mlua::Result<Option<String>> {
    match t.get::<Value>(name)? {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_string_lossy())),
        other => Err(bad(
            name,
            format!("string expected, got {}", super::args::type_name(&other)),
        )),
    }
}

fn function(t: &Table, name: &'static str) -> mlua::Result<Option<Function>> {
    match t.get::<Value>(name)? {
        Value::Nil => Ok(None),
        Value::Function(f) => Ok(Some(f)),
        other => Err(bad(
            name,
            format!("function expected, got {}", super::args::type_name(&other)),
        )),
    }
}

/// A LuaSec-style list: a table of strings, or a comma-separated string (LuWS splits on commas).
fn list(t: &Table, name: &'static str) -> mlua::Result<Vec<String>> {
    match t.get::<Value>(name)? {
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
                other => Err(bad(
                    name,
                    format!("strings expected, got {}", super::args::type_name(&other)),
                )),
            })
            .collect(),
        other => Err(bad(
            name,
            format!(
                "string or table expected, got {}",
                super::args::type_name(&other)
            ),
        )),
    }
}

/// Reads the options table into `spec` and returns the Lua-side parts.
pub fn read(t: &Table, spec: &mut OpenSpec) -> mlua::Result<LuaParts> {
    let s = &mut spec.session;
    if let Some(d) = seconds(t, "receive_timeout")? {
        s.receive_timeout = (!d.is_zero()).then_some(d);
    }
    if let Some(d) = seconds(t, "keepalive")? {
        s.keepalive = (!d.is_zero()).then_some(d);
    }
    if let Some(d) = seconds(t, "send_timeout")? {
        s.send_timeout = d;
    }
    if let Some(d) = seconds(t, "close_timeout")? {
        s.close_timeout = d;
    }
    if let Some(n) = size(t, "receive_chunk_size", 1.0, 16.0 * 1024.0 * 1024.0)? {
        // tungstenite needs room for a whole frame header per read.
        s.chunk_size = n.max(16);
    }
    if let Some(n) = size(t, "receive_budget", 1.0, 1e12)? {
        s.receive_budget = n;
    }
    if let Some(n) = size(t, "max_payload_size", 1.0, 1e15)? {
        s.max_payload_size = n;
    }
    if let Some(d) = seconds(t, "connect_timeout")? {
        spec.connect_timeout = d;
    }
    if let Some(d) = seconds(t, "handshake_timeout")? {
        spec.handshake_timeout = d;
    }

    // use_masking: accepted for compatibility; RFC 6455 §5.3 requires clients to mask, so
    // luws always does.
    match t.get::<Value>("use_masking")? {
        Value::Nil | Value::Boolean(_) => {}
        other => {
            return Err(bad(
                "use_masking",
                format!("boolean expected, got {}", super::args::type_name(&other)),
            ));
        }
    }

    let tls = &mut spec.tls;
    if let Some(p) = string(t, "ssl_protocol")? {
        tls.apply_protocol(&p).map_err(|m| bad("ssl_protocol", m))?;
    }
    for flag in list(t, "ssl_options")? {
        tls.apply_option(&flag).map_err(|m| bad("ssl_options", m))?;
    }
    for v in list(t, "ssl_verify")? {
        match v.as_str() {
            "none" => {}
            "peer" | "client_once" | "fail_if_no_peer_cert" => tls.verify = true,
            other => return Err(bad("ssl_verify", format!("unknown value '{other}'"))),
        }
    }
    if let Some(m) = string(t, "ssl_mode")? {
        if m != "client" {
            return Err(bad("ssl_mode", "only 'client' is possible for a client"));
        }
    }
    tls.cafile = string(t, "ssl_cafile")?;
    tls.certificate = string(t, "ssl_certificate")?;
    tls.key = string(t, "ssl_key")?;
    tls.validate().map_err(|m| bad("ssl_key", m))?;

    match t.get::<Value>("upgrade_headers")? {
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
                    (Some(k), Some(v)) => spec.headers.push((k, v)),
                    _ => return Err(bad("upgrade_headers", "string keys and values expected")),
                }
            }
            // pairs() order is arbitrary; a stable order makes requests reproducible.
            spec.headers.sort();
            crate::handshake::check_extra_headers(&spec.headers)
                .map_err(|m| bad("upgrade_headers", m))?;
        }
        other => {
            return Err(bad(
                "upgrade_headers",
                format!("table expected, got {}", super::args::type_name(&other)),
            ));
        }
    }

    spec.notify = notify(t)?;

    let handler_args = match t.get::<Value>("handler_args")? {
        Value::Nil => None,
        Value::Table(a) => Some(a),
        other => {
            return Err(bad(
                "handler_args",
                format!("table expected, got {}", super::args::type_name(&other)),
            ));
        }
    };
    Ok(LuaParts {
        control_handler: function(t, "control_handler")?,
        handler_args,
        connect: function(t, "connect")?,
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
    set("use_masking", Value::Boolean(true))?;
    Ok(())
}

/// `notify = { device = N, service = "...", action = "HandleReceive", host =, port =, pid = }`.
fn notify(t: &Table) -> mlua::Result<Option<crate::notify::NotifyTarget>> {
    static NEXT_PID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let n = match t.get::<Value>("notify")? {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Table(n) => n,
        other => {
            return Err(bad(
                "notify",
                format!("table expected, got {}", super::args::type_name(&other)),
            ));
        }
    };
    let device = match number(&n, "device")? {
        Some(d) if d >= 0.0 && d.fract() == 0.0 => d as i64,
        _ => return Err(bad("notify", "device (a Luup device number) expected")),
    };
    let service =
        string(&n, "service")?.ok_or_else(|| bad("notify", "service (a serviceId) expected"))?;
    let action = string(&n, "action")?.unwrap_or_else(|| "HandleReceive".into());
    let host = string(&n, "host")?.unwrap_or_else(|| "127.0.0.1".into());
    let port = size(&n, "port", 1.0, 65535.0)?.unwrap_or(3480) as u16;
    let pid = match n.get::<Value>("pid")? {
        Value::Nil => NEXT_PID
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string(),
        Value::String(s) => s.to_string_lossy(),
        v @ (Value::Integer(_) | Value::Number(_)) => v.to_string()?,
        other => {
            return Err(bad(
                "notify",
                format!(
                    "pid: string expected, got {}",
                    super::args::type_name(&other)
                ),
            ));
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
