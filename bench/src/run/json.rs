//! The large-JSON row (issue 14): a 2 MB Home Assistant state dump (`state_dump`) received by
//! luws from Lua 5.1, without compression and with permessage-deflate: bytes on the wire,
//! instructions (callgrind, client process only, by difference of two counts) and wall clock
//! per message. Only luws: the C floor and the tungstenite ceiling cannot inflate.

use std::fmt::Write as _;

use super::{Client, Ctx, Profile, Res, fmt_int, median, num, profile_of};

/// "a 2 MB JSON state dump": the document is this or a few hundred bytes more.
pub const SIZE: usize = 2_000_000;
/// The two cases: what the report calls them, and client.lua's mode.
const CASES: &[(&str, &str)] = &[("without compression", "json"), ("permessage-deflate", "json-deflate")];
/// Messages per timed run (full, smoke); the first message starts the clock.
const TIMED: (usize, usize) = (30, 2);
/// Callgrind counts N1, N2: full; smoke (the deflate case only, at the full size: ~3 s).
const CG: (usize, usize) = (2, 22);
const CG_SMOKE: (usize, usize) = (1, 2);

pub struct Row {
    label: &'static str,
    /// Per message: the text as the handler got it, and the frame as the server wrote it.
    payload: f64,
    wire: f64,
    /// Seconds per message, median of the runs.
    secs: f64,
    ir: Option<f64>,
    /// From the symbol build (full runs only).
    profile: Option<Profile>,
}

pub fn measure(ctx: &Ctx, runs: usize) -> Res<Vec<Row>> {
    let n = if ctx.smoke { TIMED.1 } else { TIMED.0 };
    let mut rows = Vec::new();
    for (k, &(label, mode)) in CASES.iter().enumerate() {
        eprintln!("bench: 2 MB JSON {label}: {runs} timed run(s) of {n}");
        let (mut per, mut payload, mut wire) = (Vec::new(), 0.0, 0.0);
        for r in 0..runs {
            let (kv, _) = ctx.client(Client::Lua, &ctx.lua51, mode, n, SIZE, &format!("json{k}-t{r}"))?;
            per.push(num(&kv, "secs")? / num(&kv, "timed")?);
            payload = num(&kv, "bytes")? / n as f64;
            wire = num(&kv, "wire")? / n as f64;
        }
        let cg = match ctx.smoke {
            false => Some(CG),
            true => (mode == "json-deflate").then_some(CG_SMOKE),
        };
        let (mut ir, mut profile) = (None, None);
        if let Some(counts) = cg.filter(|_| ctx.have_valgrind) {
            eprintln!("bench: 2 MB JSON {label}: callgrind at N1={} and N2={}", counts.0, counts.1);
            ir = Some(ctx.per_msg(Client::Lua, &ctx.lua51, mode, SIZE, counts, &format!("json{k}"))?.0);
            if let (Some(sym), false) = (&ctx.sym, ctx.smoke) {
                let (_, f1, f2) = ctx.per_msg(Client::Lua, sym, mode, SIZE, counts, &format!("json{k}-sym"))?;
                profile = Some(profile_of(&f1, &f2, counts.1 - counts.0)?);
            }
        }
        rows.push(Row { label, payload, wire, secs: median(per), ir, profile });
    }
    Ok(rows)
}

/// The report's section.
pub fn report(w: &mut String, rows: &[Row], runs: usize) {
    let body = crate::state_dump::body(SIZE);
    let entities = body.matches("\"entity_id\"").count();
    let _ = writeln!(w, "\n## A 2 MB JSON state dump, without compression and with permessage-deflate\n");
    let _ = writeln!(
        w,
        "luws from Lua 5.1 receives Home Assistant `get_states`-like answers (`bench/src/state_dump.rs`: {} entity states, one text message each, distinct by their leading id) with `max_payload_size` 4 MiB, and checks each is whole. permessage-deflate: the server compresses each message as one frame, level 1 with a 15-bit window and context takeover (aiohttp's defaults; aiohttp is Home Assistant's server), before the first is sent. Bytes on the wire: the frame as the server wrote it (header + payload), not TCP/IP. Instructions: callgrind, client process only, (Ir(N2) − Ir(N1)) / (N2 − N1). Wall clock: from the first message's arrival to the last's, median of {runs} run(s), loopback.\n",
        fmt_int(entities as f64)
    );
    let _ = writeln!(
        w,
        "| case | payload per message | bytes on the wire per message | wire ÷ payload | luws instr/msg | instr per payload byte | wall clock per message | payload MB/s |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (ir, per_byte) = match r.ir {
            Some(i) => (fmt_int(i), format!("{:.2}", i / r.payload)),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            w,
            "| {} | {} B | {} B | {:.1} % | {ir} | {per_byte} | {:.2} ms | {:.0} |",
            r.label,
            fmt_int(r.payload),
            fmt_int(r.wire),
            100.0 * r.wire / r.payload,
            r.secs * 1e3,
            r.payload / r.secs / 1e6
        );
    }
    if let [plain, deflate] = rows {
        let ir = match (plain.ir, deflate.ir) {
            (Some(p), Some(d)) => format!("{:.1}× the instructions", d / p),
            _ => "instructions not measured".into(),
        };
        let _ = writeln!(
            w,
            "\npermessage-deflate against none: {:.1} % of the bytes on the wire, {ir}, {:.1}× the wall clock.",
            100.0 * deflate.wire / plain.wire,
            deflate.secs / plain.secs
        );
    }
    if rows.iter().any(|r| r.profile.is_some()) {
        let _ = writeln!(
            w,
            "\n### Where the instructions go\n\nExclusive instructions per message by function, callgrind N2 − N1, from the unstripped luws build (and `lua-host` when built).\n"
        );
        let _ = writeln!(w, "| # | {} | Ir/msg | {} | Ir/msg |\n|---:|---|---:|---|---:|", rows[0].label, rows[rows.len() - 1].label);
        let empty = Profile { top: Vec::new(), objects: Vec::new() };
        let a = rows[0].profile.as_ref().unwrap_or(&empty);
        let b = rows[rows.len() - 1].profile.as_ref().unwrap_or(&empty);
        let objs = |p: &Profile| p.objects.iter().map(|(o, d)| format!("{o} {}", fmt_int(*d))).collect::<Vec<_>>().join(", ");
        let _ = writeln!(w, "| | by object: {} | | by object: {} | |", objs(a), objs(b));
        for i in 0..a.top.len().max(b.top.len()) {
            let cell = |p: &Profile| p.top.get(i).map(|(n, d)| (n.replace('|', "\\|"), fmt_int(*d))).unwrap_or_default();
            let (x, y) = (cell(a), cell(b));
            let _ = writeln!(w, "| {} | `{}` | {} | `{}` | {} |", i + 1, x.0, x.1, y.0, y.1);
        }
    }
}
