//! The driver: starts the server on a loopback port, runs the clients (luws from Lua 5.1, the
//! pure-Rust ceiling, and the C floor and luws under LuaJIT when given) through the same cases,
//! measures, and writes the markdown report.
//!
//! * wall clock: messages/s of the timed part, median of 5 runs (1 in smoke mode);
//! * callgrind: instructions of the whole client process for two counts N1 < N2; the difference
//!   divided by N2 - N1 is the cost per message, without start-up. These runs connect to the
//!   server's late-echo path, so every client polls the same way for every echo;
//! * strace -f -c: syscalls per idle `wsreceive`, also by difference;
//! * RSS and peak RSS (VmRSS, VmHWM) from /proc/self/status inside the client;
//! * the large-JSON row (`json`): a 2 MB state dump with and without permessage-deflate, also
//!   alone (`--only json`).

mod json;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{READ_BUFFER_SIZE, WRITE_BUFFER_SIZE};

type Res<T> = Result<T, String>;
/// Syscalls per call, in all and by name.
type IdleSys = (f64, Vec<(String, f64)>);

const BENCH_DIR: &str = env!("CARGO_MANIFEST_DIR");
const TUNGSTENITE_VERSION: &str = "0.30.0";
const BIG: usize = 16 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Lua,
    Rust,
}

/// One throughput case: both clients, wall clock and instructions per message.
struct Case {
    label: &'static str,
    mode: &'static str,
    size: usize,
    /// Messages per timed run (full, smoke).
    timed: (usize, usize),
    /// Callgrind counts N1, N2 (full).
    cg: (usize, usize),
    /// The same under LuaJIT. Its collector runs a few cycles in a thousand echoes, so one
    /// cycle more or less in the window moves the figure by ±100: more echoes average it out.
    cg_jit: (usize, usize),
    /// Budget on instructions ours ÷ ceiling.
    budget: f64,
}

const CASES: &[Case] = &[
    // Callgrind echoes wait the server's 10 ms each: 1,000 of them add 10 s to a run.
    Case { label: "echo 32 B text (round trip)", mode: "echo", size: 32, timed: (20_000, 200), cg: (300, 1_300), cg_jit: (300, 5_300), budget: 1.5 },
    Case { label: "receive 32 B binary", mode: "recv", size: 32, timed: (300_000, 2_000), cg: (5_000, 25_000), cg_jit: (5_000, 25_000), budget: 1.5 },
    Case { label: "receive 16 KiB binary", mode: "recv", size: 16 << 10, timed: (30_000, 200), cg: (500, 2_500), cg_jit: (500, 2_500), budget: 1.5 },
    Case { label: "send 16 KiB binary", mode: "send", size: 16 << 10, timed: (30_000, 200), cg: (500, 2_500), cg_jit: (500, 2_500), budget: 1.5 },
    Case { label: "open + close (ws://)", mode: "openclose", size: 0, timed: (2_000, 20), cg: (20, 120), cg_jit: (20, 120), budget: 2.0 },
];

/// A Lua side of the benchmark: an interpreter and the directory whose `luws.so` it loads
/// (luws itself, or the C floor built as `luws.so`).
#[derive(Clone)]
struct LuaRt {
    /// What the report calls it.
    name: String,
    /// The interpreter run: one beside the module (the symbol build's lua-host) wins.
    exe: String,
    /// The system interpreter's package.path and package.cpath (the module's dir goes first).
    path: String,
    cpath: String,
}

impl LuaRt {
    fn new(name: &str, interp: &str, dir: PathBuf) -> LuaRt {
        let own = dir.join(interp);
        LuaRt {
            name: name.to_string(),
            exe: if own.exists() { own.display().to_string() } else { interp.to_string() },
            path: capture(interp, &["-e", "io.write(package.path)"]),
            cpath: format!("{}/?.so;{}", dir.display(), capture(interp, &["-e", "io.write(package.cpath)"])),
        }
    }

    fn exists(dir: &Option<PathBuf>) -> Option<&PathBuf> {
        dir.as_ref().filter(|d| d.join("luws.so").exists())
    }
}

/// The workloads of the floor tables: everything on an open connection (open + close is not:
/// the floor's opening handshake is simple and blocking, and not what issue 13 compares).
const FLOOR_MODES: &[&str] = &["echo", "recv", "send"];

/// One Lua side's figures in a floor table: Ir per message of each floor workload (in CASES
/// order), and the idle `wsreceive`'s Ir and syscalls per call.
struct Column {
    ir: Vec<Option<f64>>,
    idle_ir: Option<f64>,
    idle_sys: Option<IdleSys>,
}

struct Ctx {
    smoke: bool,
    url: String,
    /// The same server, echoing 10 ms late (for the callgrind runs).
    url_late: String,
    lua51: LuaRt,
    sym: Option<LuaRt>,
    work: PathBuf,
    self_exe: PathBuf,
    client_lua: PathBuf,
    have_valgrind: bool,
    have_strace: bool,
    timeout: Duration,
    /// Lines of progress, also kept for the report's notes.
    notes: Vec<String>,
}

struct Ran {
    stdout: String,
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn capture(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        })
        .unwrap_or_default()
}

fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let want = lim.rlim_max.min(65536);
            if lim.rlim_cur < want {
                lim.rlim_cur = want;
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

impl Ctx {
    /// The command line of one client run (without any tool in front).
    fn client_argv(&self, c: Client, rt: &LuaRt, url: &str, mode: &str, n: usize, size: usize) -> (Vec<String>, Vec<(String, String)>) {
        let tail = vec![mode.to_string(), n.to_string(), size.to_string(), url.to_string()];
        match c {
            Client::Lua => {
                let mut v = vec![rt.exe.clone(), self.client_lua.display().to_string()];
                v.extend(tail);
                (v, vec![("LUA_CPATH".into(), rt.cpath.clone()), ("LUA_PATH".into(), rt.path.clone())])
            }
            Client::Rust => {
                let mut v = vec![self.self_exe.display().to_string(), "client".to_string()];
                v.extend(tail);
                (v, vec![])
            }
        }
    }

    /// Runs a command to its end (or kills it, by its pid, after the timeout).
    fn exec(&self, argv: &[String], env: &[(String, String)], tag: &str) -> Res<Ran> {
        let out_path = self.work.join(format!("{tag}.out"));
        let err_path = self.work.join(format!("{tag}.err"));
        let out = fs::File::create(&out_path).map_err(|e| e.to_string())?;
        let err = fs::File::create(&err_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
        let pid = child.id() as libc::pid_t;
        let deadline = Instant::now() + self.timeout;
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waiting for our own child by pid.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if r < 0 {
                return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
            }
            if Instant::now() > deadline {
                // SAFETY: the pid is our unreaped child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                return Err(format!("{tag}: timed out after {:?}: {}", self.timeout, argv.join(" ")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::forget(child);
        let stdout = fs::read_to_string(&out_path).unwrap_or_default();
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            let stderr = fs::read_to_string(&err_path).unwrap_or_default();
            let tail: String = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            return Err(format!("{tag} failed (status {status}): {}\n{stdout}{tail}", argv.join(" ")));
        }
        Ok(Ran { stdout })
    }

    /// Runs a client and returns the key=value pairs of its RESULT line.
    fn client(&self, c: Client, rt: &LuaRt, mode: &str, n: usize, size: usize, tag: &str) -> Res<(BTreeMap<String, String>, Ran)> {
        let (argv, env) = self.client_argv(c, rt, &self.url, mode, n, size);
        let ran = self.exec(&argv, &env, tag)?;
        let kv = result_line(&ran.stdout).ok_or_else(|| format!("{tag}: no RESULT line in {:?}", ran.stdout))?;
        Ok((kv, ran))
    }

    fn secs(&self, c: Client, mode: &str, n: usize, size: usize, tag: &str) -> Res<f64> {
        let (kv, _) = self.client(c, &self.lua51, mode, n, size, tag)?;
        num(&kv, "secs")
    }

    /// Total instructions (Ir) of one client run under callgrind, and its output file.
    fn callgrind(&self, c: Client, rt: &LuaRt, mode: &str, n: usize, size: usize, tag: &str) -> Res<(u64, PathBuf)> {
        let file = self.work.join(format!("{tag}.callgrind"));
        let (inner, env) = self.client_argv(c, rt, &self.url_late, mode, n, size);
        let mut argv = vec![
            "valgrind".to_string(),
            "--tool=callgrind".to_string(),
            format!("--callgrind-out-file={}", file.display()),
        ];
        argv.extend(inner);
        self.exec(&argv, &env, tag)?;
        result_line(&fs::read_to_string(self.work.join(format!("{tag}.out"))).unwrap_or_default())
            .ok_or_else(|| format!("{tag}: no RESULT line"))?;
        let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("{}: no summary line", file.display()))?;
        Ok((total, file))
    }

    /// Instructions per message by difference of two runs.
    fn per_msg(&self, c: Client, rt: &LuaRt, mode: &str, size: usize, (n1, n2): (usize, usize), tag: &str) -> Res<(f64, PathBuf, PathBuf)> {
        let (i1, f1) = self.callgrind(c, rt, mode, n1, size, &format!("{tag}-n1"))?;
        let (i2, f2) = self.callgrind(c, rt, mode, n2, size, &format!("{tag}-n2"))?;
        Ok(((i2 as f64 - i1 as f64) / (n2 - n1) as f64, f1, f2))
    }

    /// One Lua side through the floor workloads and the idle call. In smoke mode each workload
    /// runs once with tiny counts and only the first goes through callgrind (5 and 15): enough
    /// that none of it can rot, no figures.
    fn column(&self, rt: &LuaRt, tag: &str, idle_counts: (usize, usize), jit: bool) -> Res<Column> {
        eprintln!("bench: {}: floor workloads", rt.name);
        let mut ir = Vec::new();
        for (ci, case) in CASES.iter().enumerate().filter(|(_, c)| FLOOR_MODES.contains(&c.mode)) {
            let t = format!("{tag}-c{ci}");
            if self.smoke {
                self.client(Client::Lua, rt, case.mode, case.timed.1, case.size, &t)?;
                let cg = (ci == 0 && self.have_valgrind).then_some((5, 15));
                ir.push(match cg {
                    Some(counts) => Some(self.per_msg(Client::Lua, rt, case.mode, case.size, counts, &t)?.0),
                    None => None,
                });
            } else {
                let counts = if jit { case.cg_jit } else { case.cg };
                ir.push(Some(self.per_msg(Client::Lua, rt, case.mode, case.size, counts, &t)?.0));
            }
        }
        let t = format!("{tag}-idle");
        self.client(Client::Lua, rt, "idle", idle_counts.0, 0, &t)?;
        let idle_ir = match self.have_valgrind && !self.smoke {
            true => Some(self.per_msg(Client::Lua, rt, "idle", 0, idle_counts, &t)?.0),
            false => None,
        };
        let idle_sys = match self.have_strace {
            true => Some(self.idle_syscalls(rt, idle_counts, &t)?),
            false => None,
        };
        Ok(Column { ir, idle_ir, idle_sys })
    }

    /// Syscalls per idle `wsreceive`, in all and by name, by difference of two strace runs.
    fn idle_syscalls(&self, rt: &LuaRt, (n1, n2): (usize, usize), tag: &str) -> Res<IdleSys> {
        let dn = (n2 - n1) as f64;
        let a = self.strace(rt, "idle", n1, &format!("{tag}-strace-n1"))?;
        let b = self.strace(rt, "idle", n2, &format!("{tag}-strace-n2"))?;
        let total = (b.values().sum::<u64>() as f64 - a.values().sum::<u64>() as f64) / dn;
        let mut by: Vec<(String, f64)> = b
            .iter()
            .map(|(k, v)| (k.clone(), (*v as f64 - *a.get(k).unwrap_or(&0) as f64) / dn))
            .filter(|(_, d)| d.abs() >= 0.005)
            .collect();
        by.sort_by(|x, y| y.1.total_cmp(&x.1));
        Ok((total, by))
    }

    /// Syscalls by name of one run under `strace -f -c`.
    fn strace(&self, rt: &LuaRt, mode: &str, n: usize, tag: &str) -> Res<BTreeMap<String, u64>> {
        let file = self.work.join(format!("{tag}.strace"));
        let (inner, env) = self.client_argv(Client::Lua, rt, &self.url, mode, n, 0);
        let mut argv = vec!["strace".to_string(), "-f".into(), "-c".into(), "-o".into(), file.display().to_string()];
        argv.extend(inner);
        self.exec(&argv, &env, tag)?;
        let text = fs::read_to_string(&file).map_err(|e| e.to_string())?;
        let mut calls = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || f[0].parse::<f64>().is_err() {
                continue;
            }
            let name = f[f.len() - 1];
            if name == "total" {
                continue;
            }
            if let Ok(c) = f[3].parse::<u64>() {
                calls.insert(name.to_string(), c);
            }
        }
        Ok(calls)
    }
}

fn result_line(stdout: &str) -> Option<BTreeMap<String, String>> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn num(kv: &BTreeMap<String, String>, k: &str) -> Res<f64> {
    kv.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| format!("no {k} in RESULT"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Exclusive instructions per function from callgrind_annotate.
fn functions(file: &Path) -> Res<BTreeMap<String, f64>> {
    let out = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--auto=no", "--inclusive=no", "--show-percs=no"])
        .arg(file)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.contains("file:function") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let t = line.trim_start();
        let Some(end) = t.find(|ch: char| !(ch.is_ascii_digit() || ch == ',')) else { continue };
        if end == 0 {
            continue;
        }
        let Ok(ir) = t[..end].replace(',', "").parse::<f64>() else { continue };
        let name = t[end..].trim();
        if name.is_empty() {
            continue;
        }
        *map.entry(name.to_string()).or_insert(0.0) += ir;
    }
    if map.is_empty() {
        return Err(format!("callgrind_annotate gave no functions for {}", file.display()));
    }
    Ok(map)
}

/// A readable, bounded function name: `???:` and the object path go, the object's file name stays.
fn short_name(raw: &str) -> String {
    let (name, obj) = match raw.rfind(" [") {
        Some(i) if raw.ends_with(']') => (&raw[..i], &raw[i + 2..raw.len() - 1]),
        _ => (raw, ""),
    };
    let name = name.strip_prefix("???:").unwrap_or(name);
    let name = match name.rfind(":") {
        // file:function → function (keep `::` paths intact)
        Some(i) if !name[..i].ends_with(':') && !name[i + 1..].starts_with(':') && name[..i].contains('/') => &name[i + 1..],
        _ => name,
    };
    let mut name = name.to_string();
    if name.len() > 90 {
        let cut = (0..=87).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
        name.truncate(cut);
        name.push('…');
    }
    let obj = Path::new(obj).file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    if obj.is_empty() { name } else { format!("{name} [{obj}]") }
}

/// The object file a callgrind_annotate function name ends with (`… [/path/obj]`).
fn object_of(raw: &str) -> String {
    match raw.rfind(" [") {
        Some(i) if raw.ends_with(']') => Path::new(&raw[i + 2..raw.len() - 1])
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default(),
        _ => "(object not named)".into(),
    }
}

/// Instructions per message by function (top `k`) and by object file: the difference of the N2
/// and N1 profiles.
struct Profile {
    top: Vec<(String, f64)>,
    objects: Vec<(String, f64)>,
}

fn profile_of(f1: &Path, f2: &Path, dn: usize) -> Res<Profile> {
    let k = 10;
    let a = functions(f1)?;
    let b = functions(f2)?;
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    let delta: Vec<(&String, f64)> = names
        .into_iter()
        .map(|n| (n, (b.get(n).copied().unwrap_or(0.0) - a.get(n).copied().unwrap_or(0.0)) / dn as f64))
        .collect();
    let mut objects: BTreeMap<String, f64> = BTreeMap::new();
    for (n, d) in &delta {
        *objects.entry(object_of(n)).or_insert(0.0) += d;
    }
    let mut objects: Vec<(String, f64)> = objects.into_iter().filter(|(_, d)| *d >= 0.5).collect();
    objects.sort_by(|x, y| y.1.total_cmp(&x.1));
    let mut top: Vec<(String, f64)> = delta.into_iter().filter(|(_, d)| *d > 0.0).map(|(n, d)| (short_name(n), d)).collect();
    top.sort_by(|x, y| y.1.total_cmp(&x.1));
    top.truncate(k);
    Ok(Profile { top, objects })
}

fn fmt_int(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn fmt_kib(kib: f64) -> String {
    if kib.abs() >= 10240.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else {
        format!("{kib:.0} KiB")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**MISSED**" }
}

struct Row {
    label: &'static str,
    lua_rate: f64,
    rust_rate: f64,
    lua_ir: Option<f64>,
    rust_ir: Option<f64>,
    budget: f64,
    profile: Option<(Profile, Profile)>,
}

pub fn main(args: &[String]) -> Res<()> {
    let bench = PathBuf::from(BENCH_DIR);
    let repo = bench.parent().map(Path::to_path_buf).unwrap_or_else(|| bench.clone());
    let mut smoke = false;
    let mut lua_dir = bench.join("target/lua51");
    let mut sym_lua_dir = None;
    let (mut floor_dir, mut jit_dir, mut floor_jit_dir) = (None, None, None);
    let mut out = None;
    let mut only_json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--lua-dir" => lua_dir = it.next().ok_or("--lua-dir DIR")?.into(),
            "--sym-lua-dir" => sym_lua_dir = Some(PathBuf::from(it.next().ok_or("--sym-lua-dir DIR")?)),
            "--floor-dir" => floor_dir = Some(PathBuf::from(it.next().ok_or("--floor-dir DIR")?)),
            "--jit-dir" => jit_dir = Some(PathBuf::from(it.next().ok_or("--jit-dir DIR")?)),
            "--floor-jit-dir" => floor_jit_dir = Some(PathBuf::from(it.next().ok_or("--floor-jit-dir DIR")?)),
            "--out" => out = Some(PathBuf::from(it.next().ok_or("--out FILE")?)),
            "--only" => match it.next().map(String::as_str) {
                Some("json") => only_json = true,
                _ => return Err("--only json (the only part that runs alone)".into()),
            },
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let out = out.unwrap_or_else(|| {
        bench.join(match (smoke, only_json) {
            (true, _) => "target/results-smoke.md",
            (false, true) => "target/results-json.md",
            (false, false) => "results.md",
        })
    });
    if !lua_dir.join("luws.so").exists() {
        return Err(format!("{}/luws.so missing (run through make bench)", lua_dir.display()));
    }
    let work = bench.join(if smoke { "target/work-smoke" } else { "target/work" });
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    raise_nofile();

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || crate::server::serve(listener));

    let have_luajit = have("luajit");
    // The floor and luws under LuaJIT: each only when its module was built.
    let floor51 = LuaRt::exists(&floor_dir).map(|d| LuaRt::new("C floor (Lua 5.1)", "lua5.1", d.clone()));
    let jit = LuaRt::exists(&jit_dir).filter(|_| have_luajit).map(|d| LuaRt::new("luws (LuaJIT)", "luajit", d.clone()));
    let floor_jit = LuaRt::exists(&floor_jit_dir).filter(|_| have_luajit).map(|d| LuaRt::new("C floor (LuaJIT)", "luajit", d.clone()));
    let mut ctx = Ctx {
        smoke,
        url: format!("ws://127.0.0.1:{port}/"),
        url_late: format!("ws://127.0.0.1:{port}{}", crate::server::LATE_PATH),
        lua51: LuaRt::new("luws (Lua 5.1)", "lua5.1", lua_dir),
        sym: LuaRt::exists(&sym_lua_dir).map(|d| LuaRt::new("luws (Lua 5.1, symbols)", "lua5.1", d.clone())),
        work,
        self_exe: std::env::current_exe().map_err(|e| e.to_string())?,
        client_lua: bench.join("client.lua"),
        have_valgrind: have("valgrind") && have("callgrind_annotate"),
        have_strace: have("strace"),
        timeout: Duration::from_secs(if smoke { 45 } else { 600 }),
        notes: Vec::new(),
    };
    if !smoke && !(ctx.have_valgrind && ctx.have_strace) {
        return Err("valgrind and strace are needed (apt-get install valgrind strace)".into());
    }
    let say = |s: &str| eprintln!("bench: {s}");

    // --- identification
    let date = capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let arch = capture("uname", &["-m"]);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown".into());
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let lua_version = capture("lua5.1", &["-v"]).split("  ").next().unwrap_or("").to_string();
    let version_of = |interp: &str, rt: &LuaRt, tag: &str| -> Res<String> {
        let env = vec![("LUA_CPATH".to_string(), rt.cpath.clone())];
        let argv = vec![
            interp.to_string(),
            "-e".into(),
            "local l = require 'luws'; print(l.VERSION .. ' (_VERSION ' .. l._VERSION .. ', TLS ' .. tostring(l.tls_backend) .. ')')".into(),
        ];
        Ok(ctx.exec(&argv, &env, tag)?.stdout.trim().to_string())
    };
    let luws_version = version_of("lua5.1", &ctx.lua51, "version")?;
    let jit_version = match &jit {
        Some(rt) => Some((version_of("luajit", rt, "version-jit")?, capture("luajit", &["-v"]))),
        None => None,
    };
    let git = capture("git", &["-C", &repo.display().to_string(), "describe", "--always", "--dirty"]);
    let rustc = capture("rustc", &["--version"]);
    let tung = fs::read_to_string(bench.join("Cargo.lock"))
        .ok()
        .and_then(|l| {
            let i = l.find("name = \"tungstenite\"")?;
            let rest = &l[i..];
            let v = rest.lines().nth(1)?.strip_prefix("version = \"")?.trim_end_matches('"');
            Some(v.to_string())
        })
        .unwrap_or_else(|| TUNGSTENITE_VERSION.into());
    let flate2 = fs::read_to_string(bench.join("Cargo.lock"))
        .ok()
        .and_then(|l| {
            let i = l.find("name = \"flate2\"")?;
            l[i..].lines().nth(1)?.strip_prefix("version = \"").map(|v| v.trim_end_matches('"').to_string())
        })
        .unwrap_or_else(|| "1".into());
    let luws_tung = fs::read_to_string(repo.join("Cargo.lock"))
        .ok()
        .and_then(|l| {
            let i = l.find("name = \"tungstenite\"")?;
            l[i..].lines().nth(1)?.strip_prefix("version = \"").map(|v| v.trim_end_matches('"').to_string())
        })
        .unwrap_or_else(|| "?".into());

    // --- the report's head (written now, so that `--only json` has it too)
    let runs = if smoke { 1 } else { 5 };
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# luws benchmark{}\n", if smoke { " (smoke: tiny counts, not figures to quote)" } else { "" });
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| date | {date} |");
    let _ = writeln!(w, "| machine | {arch}, {cpu}, {ncpu} CPUs; load average at start {load} (wall-clock figures depend on it; instruction counts do not) |");
    let _ = writeln!(w, "| ours | luws {luws_version}, git {git}, driven from {lua_version} (tungstenite {luws_tung} inside) |");
    let _ = writeln!(w, "| ceiling | pure-Rust tungstenite {tung} client, blocking I/O, read_buffer_size {READ_BUFFER_SIZE}, write_buffer_size {WRITE_BUFFER_SIZE} (luws's defaults), TCP_NODELAY; {rustc} |");
    let _ = writeln!(w, "| server | tungstenite {tung}, thread per connection, blocking, 127.0.0.1; for the instruction counts, echoes 10 ms late (path `{}`); permessage-deflate when the client offers it (flate2 {flate2}, miniz_oxide, level 1, context takeover) |", crate::server::LATE_PATH);
    let cc = capture("cc", &["--version"]).lines().next().unwrap_or("").to_string();
    let _ = writeln!(w, "| floor | `bench/floor/luws_floor.c` ({cc}, -O2), built as luws.so against Lua 5.1's and LuaJIT's headers |");
    if let Some((v, jv)) = &jit_version {
        let _ = writeln!(w, "| LuaJIT | luws {v} built with `--no-default-features --features luajit,module,tls-native`, driven from {jv} |");
    }
    let _ = writeln!(w, "| method | msg/s: median of {runs} run(s) of the timed loop; instr/msg: callgrind on the client process only, (Ir(N2) − Ir(N1)) / (N2 − N1) |\n");

    if only_json {
        let rows = json::measure(&ctx, runs)?;
        json::report(&mut md, &rows, runs);
        return finish(md, ctx.notes.clone(), &ctx.work, &out);
    }

    // --- throughput and instructions
    let mut rows = Vec::new();
    for (ci, case) in CASES.iter().enumerate() {
        let n = if smoke { case.timed.1 } else { case.timed.0 };
        say(&format!("{}: {runs} timed run(s) of {n} per client", case.label));
        let (mut lua, mut rust) = (Vec::new(), Vec::new());
        for r in 0..runs {
            let s = ctx.secs(Client::Lua, case.mode, n, case.size, &format!("c{ci}-lua-t{r}"))?;
            lua.push(n as f64 / s);
            let s = ctx.secs(Client::Rust, case.mode, n, case.size, &format!("c{ci}-rust-t{r}"))?;
            rust.push(n as f64 / s);
        }
        let cg = if smoke {
            // A tiny callgrind run of the first case only, so the pipeline cannot rot.
            (ci == 0 && ctx.have_valgrind).then_some((5, 15))
        } else {
            Some(case.cg)
        };
        let (mut lua_ir, mut rust_ir, mut profile) = (None, None, None);
        if let Some(counts) = cg {
            say(&format!("{}: callgrind at N1={} and N2={}", case.label, counts.0, counts.1));
            let lua51 = ctx.lua51.clone();
            let (l, _, _) = ctx.per_msg(Client::Lua, &lua51, case.mode, case.size, counts, &format!("c{ci}-lua"))?;
            let (r, rf1, rf2) = ctx.per_msg(Client::Rust, &lua51, case.mode, case.size, counts, &format!("c{ci}-rust"))?;
            lua_ir = Some(l);
            rust_ir = Some(r);
            let missed = l / r > case.budget;
            if missed || smoke {
                // Per-function profile from the symbol build of luws (same code, not stripped).
                let sym = ctx.sym.clone().unwrap_or_else(|| ctx.lua51.clone());
                if ctx.sym.is_none() {
                    ctx.notes.push("luws symbols: no unstripped build given, luws's own functions show as addresses".into());
                }
                let (_, sf1, sf2) = ctx.per_msg(Client::Lua, &sym, case.mode, case.size, counts, &format!("c{ci}-luasym"))?;
                let dn = counts.1 - counts.0;
                profile = Some((profile_of(&sf1, &sf2, dn)?, profile_of(&rf1, &rf2, dn)?));
            }
        }
        rows.push(Row {
            label: case.label,
            lua_rate: median(lua),
            rust_rate: median(rust),
            lua_ir,
            rust_ir,
            budget: case.budget,
            profile,
        });
    }

    // --- the large-JSON row
    let json_rows = json::measure(&ctx, runs)?;

    // --- idle wsreceive
    let idle_counts = if smoke { (100, 1_100) } else { (1_000, 11_000) };
    let idle_dn = (idle_counts.1 - idle_counts.0) as f64;
    say(&format!("idle wsreceive: {} calls", idle_counts.1 - idle_counts.0));
    ctx.client(Client::Lua, &ctx.lua51, "idle", idle_counts.0, 0, "idle-plain")?;
    let idle_sys = if ctx.have_strace {
        Some(ctx.idle_syscalls(&ctx.lua51, idle_counts, "idle")?)
    } else {
        ctx.notes.push("strace not installed: idle syscalls skipped".into());
        None
    };
    // The wait between wsreceive calls (socket.select, or luws.wait once it exists).
    let (wait_kv, _) = ctx.client(Client::Lua, &ctx.lua51, "wait", idle_counts.0, 0, "wait-plain")?;
    let waiter = wait_kv.get("waiter").cloned().unwrap_or_else(|| "?".into());
    let (mut idle_ir, mut wait_ir, mut idle_profile) = (None, None, None);
    if ctx.have_valgrind && !smoke {
        let lua51 = ctx.lua51.clone();
        idle_ir = Some(ctx.per_msg(Client::Lua, &lua51, "idle", 0, idle_counts, "idle")?.0);
        wait_ir = Some(ctx.per_msg(Client::Lua, &lua51, "wait", 0, idle_counts, "wait")?.0);
        if let Some(sym) = ctx.sym.clone() {
            let (_, f1, f2) = ctx.per_msg(Client::Lua, &sym, "idle", 0, idle_counts, "idle-sym")?;
            idle_profile = Some(profile_of(&f1, &f2, idle_counts.1 - idle_counts.0)?);
        }
    }

    // --- the Lua floor (issue 13): the C floor beside luws, under Lua 5.1 and under LuaJIT
    let floor_idx: Vec<usize> = CASES.iter().enumerate().filter(|(_, c)| FLOOR_MODES.contains(&c.mode)).map(|(i, _)| i).collect();
    let luws51 = Column {
        ir: floor_idx.iter().map(|&i| rows[i].lua_ir).collect(),
        idle_ir,
        idle_sys: idle_sys.clone(),
    };
    let column = |rt: &Option<LuaRt>, tag: &str, jit: bool| -> Res<Option<Column>> {
        rt.as_ref().map(|rt| ctx.column(rt, tag, idle_counts, jit)).transpose()
    };
    let floor51_col = column(&floor51, "floor51", false)?;
    let jit_col = column(&jit, "jit", true)?;
    let floor_jit_col = column(&floor_jit, "floorjit", true)?;
    for (flag, col) in [("--floor-dir", &floor51_col), ("--jit-dir", &jit_col), ("--floor-jit-dir", &floor_jit_col)] {
        if col.is_none() {
            ctx.notes.push(format!("{flag}: no luws.so there (or no luajit): not measured"));
        }
    }

    // --- memory
    let nconn = if smoke { 50 } else { 1_000 };
    say(&format!("memory: {nconn} idle connections, one {} MiB message", BIG >> 20));
    let mem = |c: Client, tag: &str| -> Res<[f64; 4]> {
        let (kv, _) = ctx.client(c, &ctx.lua51, "mem", nconn, 0, tag)?;
        Ok([num(&kv, "rss0")?, num(&kv, "rss1")?, num(&kv, "rss2")?, num(&kv, "rss3")?])
    };
    let lmem = mem(Client::Lua, "mem-lua")?;
    let rmem = mem(Client::Rust, "mem-rust")?;
    let peak = |c: Client, size: usize, tag: &str| -> Res<f64> {
        let (kv, _) = ctx.client(c, &ctx.lua51, "big", 1, size, tag)?;
        num(&kv, "hwm")
    };
    let lpeak = (peak(Client::Lua, BIG, "big-lua")?, peak(Client::Lua, 32, "big-lua-base")?);
    let rpeak = (peak(Client::Rust, BIG, "big-rust")?, peak(Client::Rust, 32, "big-rust-base")?);

    // --- report
    let w = &mut md;
    let _ = writeln!(w, "## Throughput and instructions per message\n");
    let _ = writeln!(w, "| case | luws msg/s | Rust msg/s | speed ours/Rust | luws instr/msg | Rust instr/msg | instr ours÷Rust | budget | |");
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut missed = Vec::new();
    for r in &rows {
        let (li, ri, ratio, verdict_s) = match (r.lua_ir, r.rust_ir) {
            (Some(l), Some(ru)) => {
                let q = l / ru;
                if q > r.budget {
                    missed.push(format!("{}: {q:.2}× > {}×", r.label, r.budget));
                }
                (fmt_int(l), fmt_int(ru), format!("{q:.2}×"), verdict(q <= r.budget).to_string())
            }
            _ => ("—".into(), "—".into(), "—".into(), "not measured".into()),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.2} | {li} | {ri} | {ratio} | ≤ {}× | {verdict_s} |",
            r.label,
            fmt_int(r.lua_rate),
            fmt_int(r.rust_rate),
            r.lua_rate / r.rust_rate,
            r.budget
        );
    }
    json::report(w, &json_rows, runs);

    let _ = writeln!(w, "\n## The Lua floor\n");
    let _ = writeln!(
        w,
        "Instructions per message (callgrind, client process only, (Ir(N2) − Ir(N1)) / (N2 − N1)) of the pure-Rust ceiling, of the C floor (`bench/floor/`: what any correct Lua client module must do per message, driven by the same `client.lua`) and of luws. Idle wsreceive: per call on an open connection with nothing to read. Under LuaJIT the echo is counted over 5,000 echoes rather than 1,000 (N1 = 300, N2 = 5,300): its collector runs a few cycles in a thousand, and one cycle more or less in the window moves the figure by about 100.\n"
    );
    let tables = [("Lua 5.1", Some(&luws51), floor51_col.as_ref()), ("LuaJIT", jit_col.as_ref(), floor_jit_col.as_ref())];
    for (title, luws_col, floor_col) in tables {
        if luws_col.is_none() && floor_col.is_none() {
            continue;
        }
        let _ = writeln!(w, "### {title}\n");
        let _ = writeln!(w, "| workload | Rust ceiling | C floor | luws | luws ÷ floor | luws ÷ Rust |");
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|");
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "—".into(),
        };
        let opt = |x: Option<f64>| x.map_or("—".to_string(), fmt_int);
        for (k, &ci) in floor_idx.iter().enumerate() {
            let f = floor_col.and_then(|c| c.ir[k]);
            let l = luws_col.and_then(|c| c.ir[k]);
            let r = rows[ci].rust_ir;
            let _ = writeln!(w, "| {} | {} | {} | {} | {} | {} |", rows[ci].label, opt(r), opt(f), opt(l), ratio(l, f), ratio(l, r));
        }
        let f = floor_col.and_then(|c| c.idle_ir);
        let l = luws_col.and_then(|c| c.idle_ir);
        let _ = writeln!(w, "| idle wsreceive (no data), Ir per call | — | {} | {} | {} | — |", opt(f), opt(l), ratio(l, f));
        let sys = |c: Option<&Column>| match c.and_then(|c| c.idle_sys.as_ref()) {
            Some((total, by)) => {
                let detail: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
                format!("{total:.2} ({})", detail.join(", "))
            }
            None => "—".into(),
        };
        let _ = writeln!(w, "| idle wsreceive, syscalls per call (strace -f -c) | — | {} | {} | | — |", sys(floor_col), sys(luws_col));
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "\n## Idle wsreceive and memory\n");
    let _ = writeln!(w, "| measure | luws | Rust | budget | |");
    let _ = writeln!(w, "|---|---:|---:|---:|---|");
    match &idle_sys {
        Some((total, by)) => {
            let detail: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            let ok = (*total - 1.0).abs() < 0.05;
            if !ok {
                missed.push(format!("idle wsreceive: {total:.2} syscalls/call > 1"));
            }
            let _ = writeln!(w, "| syscalls per idle wsreceive (strace -f -c, {} calls) | {total:.2} ({}) | — | 1 | {} |", idle_dn, detail.join(", "), verdict(ok));
        }
        None => {
            let _ = writeln!(w, "| syscalls per idle wsreceive | not measured | — | 1 | |");
        }
    }
    let opt = |x: Option<f64>| x.map_or("not measured".to_string(), fmt_int);
    let _ = writeln!(w, "| instructions per idle wsreceive (callgrind) | {} | — | — | |", opt(idle_ir));
    let _ = writeln!(
        w,
        "| instructions per zero-timeout `{waiter}` on one idle luws conn (the wait the luws loops above make; not part of the budgets) | {} | — | — | |",
        opt(wait_ir)
    );
    let first = (lmem[1] - lmem[0], rmem[1] - rmem[0]);
    let one = (lmem[2] - lmem[1], rmem[2] - rmem[1]);
    let per = ((lmem[3] - lmem[2]) / nconn as f64, (rmem[3] - rmem[2]) / nconn as f64);
    let _ = writeln!(w, "| RSS of the 1st idle connection (process with 1 conn − without; includes code faulted in) | {} | {} | — | |", fmt_kib(first.0), fmt_kib(first.1));
    let ok = one.0 <= 64.0;
    if !ok {
        missed.push(format!("one idle connection: {} > 64 KiB", fmt_kib(one.0)));
    }
    let _ = writeln!(w, "| RSS of one idle connection (2 conns − 1 conn) | {} | {} | ≤ 64 KiB | {} |", fmt_kib(one.0), fmt_kib(one.1), verdict(ok));
    let ok = per.0 <= 64.0;
    if !ok {
        missed.push(format!("{nconn} idle connections: {} each > 64 KiB", fmt_kib(per.0)));
    }
    let _ = writeln!(
        w,
        "| RSS of {nconn} idle connections in one process (total; per connection) | {}; {} | {}; {} | ≤ 64 KiB each | {} |",
        fmt_kib(lmem[3] - lmem[2]),
        fmt_kib(per.0),
        fmt_kib(rmem[3] - rmem[2]),
        fmt_kib(per.1),
        verdict(ok)
    );
    let big_kib = (BIG / 1024) as f64;
    let ok_abs = lpeak.0 <= 2.5 * big_kib;
    let ok_inc = lpeak.0 - lpeak.1 <= 2.5 * big_kib;
    if !ok_abs {
        missed.push(format!("peak RSS receiving 16 MiB: {:.2}× the message > 2.5×", lpeak.0 / big_kib));
    }
    let _ = writeln!(
        w,
        "| peak RSS receiving one 16 MiB message (VmHWM of the whole process; ÷ message) | {} ({:.2}×) | {} ({:.2}×) | ≤ 2.5× | {} |",
        fmt_kib(lpeak.0),
        lpeak.0 / big_kib,
        fmt_kib(rpeak.0),
        rpeak.0 / big_kib,
        verdict(ok_abs)
    );
    let _ = writeln!(
        w,
        "| same, minus the peak of the same run receiving 32 B (÷ message) | {} ({:.2}×) | {} ({:.2}×) | ≤ 2.5× | {} |",
        fmt_kib(lpeak.0 - lpeak.1),
        (lpeak.0 - lpeak.1) / big_kib,
        fmt_kib(rpeak.0 - rpeak.1),
        (rpeak.0 - rpeak.1) / big_kib,
        verdict(ok_inc)
    );

    let _ = writeln!(w, "\n## Budgets missed\n");
    if missed.is_empty() {
        let _ = writeln!(w, "None.");
    } else {
        for m in &missed {
            let _ = writeln!(w, "- {m}");
        }
    }
    let profiled: Vec<&Row> = rows.iter().filter(|r| r.profile.is_some()).collect();
    if !profiled.is_empty() || idle_profile.is_some() {
        let _ = writeln!(
            w,
            "\n## Where the instructions go\n\nExclusive instructions per message by function and by object file, callgrind N2 − N1. For these profiles only, luws is an unstripped build of the same code and, when `make bench` could build it, Lua 5.1.5 is a host built from Lua's own sources with symbols (`lua-host`; Debian's lua5.1 is stripped), so the sums differ a little from the table above.\n"
        );
        for r in profiled {
            let Some((ours, theirs)) = &r.profile else { continue };
            let _ = writeln!(w, "### {}\n", r.label);
            let _ = writeln!(w, "| # | luws (Lua 5.1) | Ir/msg | Rust ceiling | Ir/msg |\n|---:|---|---:|---|---:|");
            let objs = |p: &Profile| {
                p.objects.iter().map(|(o, d)| format!("{o} {}", fmt_int(*d))).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(w, "| | by object: {} | | by object: {} | |", objs(ours), objs(theirs));
            let (ours, theirs) = (&ours.top, &theirs.top);
            for i in 0..ours.len().max(theirs.len()) {
                let a = ours.get(i).map(|(n, d)| (n.replace('|', "\\|"), fmt_int(*d))).unwrap_or_default();
                let b = theirs.get(i).map(|(n, d)| (n.replace('|', "\\|"), fmt_int(*d))).unwrap_or_default();
                let _ = writeln!(w, "| {} | `{}` | {} | `{}` | {} |", i + 1, a.0, a.1, b.0, b.1);
            }
            let _ = writeln!(w);
        }
    }
    if let Some(p) = &idle_profile {
        let _ = writeln!(w, "### idle wsreceive (luws only)\n");
        let objs = p.objects.iter().map(|(o, d)| format!("{o} {}", fmt_int(*d))).collect::<Vec<_>>().join(", ");
        let _ = writeln!(w, "| # | luws (Lua 5.1) | Ir/call |\n|---:|---|---:|\n| | by object: {objs} | |");
        for (i, (n, d)) in p.top.iter().enumerate() {
            let _ = writeln!(w, "| {} | `{}` | {} |", i + 1, n.replace('|', "\\|"), fmt_int(*d));
        }
        let _ = writeln!(w);
    }
    let mut notes = ctx.notes.clone();
    notes.push("The Lua client waits (`{waiter}`, 1 s timeout) before each `wsreceive` unless the last call returned `more`; the Rust client blocks in `read()`. Handlers only count messages and keep the last one.".replace("{waiter}", &waiter));
    notes.push("Pushed messages end with their sequence number, so every received Lua string is new (no interning shortcut); the echo test sends the same 32-byte text each time, as the Rust client does.".into());
    notes.push("callgrind counts each iteration of `rep movsb`/`rep stosb` (glibc's memcpy/memset for large sizes) as one instruction: a 16 KiB copy is ~16,000 Ir, though it takes ~1 µs.".into());
    notes.push("Memory: VmRSS inside the client after a full GC; the 1st connection also faults in code; \"one idle connection\" is the 2nd. Peak: VmHWM of the client at the end of the run.".into());
    finish(md, notes, &ctx.work, &out)
}

/// The notes, then the report printed and written to `out`.
fn finish(mut md: String, mut notes: Vec<String>, work: &Path, out: &Path) -> Res<()> {
    let w = &mut md;
    notes.sort();
    notes.dedup();
    notes.push(format!("callgrind files and client output: {}", work.display()));
    let _ = writeln!(w, "\n## Notes\n");
    for n in notes {
        let _ = writeln!(w, "- {n}");
    }
    print!("{md}");
    fs::write(out, &md).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("bench: written to {}", out.display());
    Ok(())
}
