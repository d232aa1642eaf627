//! Build checks: exactly one Lua version, a coherent link mode, at least one TLS backend;
//! and the macOS link arguments a Lua module needs.

fn main() {
    let on = |f: &str| std::env::var_os(format!("CARGO_FEATURE_{}", f.to_uppercase())).is_some();

    let versions: Vec<&str> = ["lua51", "lua52", "lua53", "lua54", "lua55", "luajit"]
        .into_iter()
        .filter(|v| on(v))
        .collect();
    match versions.len() {
        1 => {}
        0 => fail(
            "no Lua version selected: build with one of the features lua51, lua52, lua53, lua54, \
             lua55, luajit (for example `cargo build --release --no-default-features --features \
             lua54,module,tls-native`)",
        ),
        _ => fail(&format!(
            "several Lua versions selected ({}): pick exactly one",
            versions.join(", ")
        )),
    }
    if on("module") && on("vendored") {
        fail("features `module` and `vendored` are exclusive: a module takes Lua from its host");
    }
    if !on("tls_native") && !on("tls_rustls") {
        fail("no TLS backend selected: enable `tls-native` or `tls-rustls`");
    }

    // A module leaves the lua_* symbols to the host; macOS needs to be told so.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") && on("module") {
        println!("cargo:rustc-cdylib-link-arg=-undefined");
        println!("cargo:rustc-cdylib-link-arg=dynamic_lookup");
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: luws: {msg}");
    std::process::exit(1);
}
