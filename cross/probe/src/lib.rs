use mlua::prelude::*;
use std::sync::Arc;

fn tls_check() -> Result<String, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::empty();
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("example.org").map_err(|e| e.to_string())?;
    // Creating a client connection runs ring's key generation + the RNG.
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    Ok(format!("rustls client ok, wants_write={}", conn.wants_write()))
}

#[mlua::lua_module]
fn probe(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("add", lua.create_function(|_, (a, b): (f64, f64)| Ok(a + b))?)?;
    t.set("fail", lua.create_function(|_, ()| -> LuaResult<()> { Err(LuaError::runtime("probe failure")) })?)?;
    t.set("panic", lua.create_function(|_, ()| -> LuaResult<()> { panic!("probe panic") })?)?;
    t.set("tls", lua.create_function(|_, ()| tls_check().map_err(LuaError::runtime))?)?;
    t.set("random", lua.create_function(|_, ()| {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| LuaError::runtime(e.to_string()))?;
        Ok(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
    })?)?;
    Ok(t)
}
