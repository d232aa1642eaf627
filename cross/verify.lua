-- cross/verify.lua DIR PORT [TLS_PORT PIN CAFILE [SOCKS_PORT]] — run by cross/verify.sh under
-- the target's own Lua 5.1 (qemu-user). Loads DIR/luws.so and talks to a loopback echo server
-- on the host at ws://127.0.0.1:PORT/echo; with TLS_PORT, also to a TLS echo server whose
-- certificate (CAFILE, key pin PIN) names only luws.test, and through a SOCKS5 proxy.
-- Exits 0 when every check passes.
local dir, port = assert(arg[1], "usage: verify.lua DIR PORT"), assert(tonumber(arg[2]), "PORT")
local tls_port, pin, cafile, socks_port = tonumber(arg[3]), arg[4], arg[5], tonumber(arg[6])
package.cpath = dir .. "/?.so;" .. package.cpath
local passed, failed = 0, 0
local function check(name, cond, detail)
  if cond then passed = passed + 1 else failed = failed + 1 end
  local d = detail ~= nil and tostring(detail):gsub("\n.*", "") or ""
  if #d > 100 then d = d:sub(1, 100) .. "..." end
  print(string.format("%-4s %s%s", cond and "ok" or "FAIL", name, d ~= "" and ("  [" .. d .. "]") or ""))
end

local ok, luws = pcall(require, "luws")
check("require 'luws'", ok and type(luws) == "table", not ok and luws or
  string.format("VERSION %s, _VERSION %s, tls %s", tostring(luws.VERSION), tostring(luws._VERSION), tostring(luws.tls_backend)))
if not ok then print(string.format("verify: %d passed, %d failed", passed, failed)); os.exit(1) end
for _, f in ipairs({ "wsopen", "wssend", "wsreceive", "wsclose", "wslastping" }) do
  check("luws." .. f .. " is a function", type(luws[f]) == "function")
end

-- A Rust error becomes a Lua error (argument check in Rust; pcall catches it).
local url = string.format("ws://127.0.0.1:%d/echo", port)
local e_ok, err = pcall(luws.wsopen, 42)
check("Rust error -> Lua error: pcall(wsopen, 42)", not e_ok and tostring(err):find("wsopen", 1, true), err)
-- Floats into Rust: 1.5 must be seen as non-integral, -0.25 as negative.
e_ok, err = pcall(luws.wsopen, url, function() end, { receive_chunk_size = 1.5 })
check("float 1.5 into Rust (receive_chunk_size rejected)", not e_ok and tostring(err):find("integer", 1, true), err)
e_ok, err = pcall(luws.wsopen, url, function() end, { receive_timeout = -0.25 })
check("float -0.25 into Rust (receive_timeout rejected)", not e_ok and tostring(err):find("between", 1, true), err)
-- A float out of Rust with no connection.
check("float out of Rust: wslastping(nil) == 0.0", luws.wslastping(nil) == 0)

-- Echo a text and a binary message (the binary one > 64 KiB: 64-bit length).
local got = {}
local function handler(conn, op, data) got[#got + 1] = { op = op, data = data } end
local opts = { receive_timeout = 0.25, max_payload_size = 1e6 }
local t0 = os.time()
local conn, oerr = luws.wsopen(url, handler, opts)
check("wsopen " .. url, conn, conn and type(conn) or oerr)
if conn then
  check("option floats back: receive_timeout == 0.25", opts.receive_timeout == 0.25, opts.receive_timeout)
  check("option floats back: max_payload_size == 1e6", opts.max_payload_size == 1e6, opts.max_payload_size)
  local dflt = {}
  local c2 = luws.wsopen(url, function() end, dflt)
  local mp = dflt.max_payload_size
  check("default max_payload_size: a float written by Rust", type(mp) == "number" and mp >= 1024 and mp < 1e16 and mp % 1 == 0, mp)
  if c2 then luws.wsclose(c2) end
  local text = "h\195\169llo from " .. _VERSION .. " " .. string.rep("x", 300)
  local parts = {}
  for i = 0, 255 do parts[#parts + 1] = string.char(i) end
  local bin = string.rep(table.concat(parts), 300) -- 76800 bytes, all byte values
  local s1, e1 = luws.wssend(conn, 1, text)
  local s2, e2 = luws.wssend(conn, 2, bin)
  check("wssend text + binary", s1 == true and s2 == true, e1 or e2)
  local deadline = os.time() + 30
  local rerr
  while #got < 2 and os.time() < deadline do
    local more, n = luws.wsreceive(conn)
    if more == nil then rerr = n break end
  end
  local function show(g) return g and (tostring(g.op) .. " " .. #tostring(g.data) .. " " .. tostring(g.data):sub(1, 24):gsub("[^%w%p ]", ".")) or rerr or "nothing received" end
  check("text echoed (opcode 1)", got[1] and got[1].op == 1 and got[1].data == text, show(got[1]))
  check("binary echoed (opcode 2, 76800 bytes)", got[2] and got[2].op == 2 and got[2].data == bin, show(got[2]))
  local lp, t1 = luws.wslastping(conn), os.time()
  check("float out of Rust: wslastping(conn) is a time now", type(lp) == "number" and lp >= t0 - 2 and lp <= t1 + 2,
    string.format("%.3f (os.time %d..%d)", lp, t0, t1))
  check("float arithmetic on it", math.abs((lp + 1.25 + 2.5) - lp - 3.75) < 1e-6)
  luws.wsclose(conn)
  local c_ok, cerr = luws.wssend(conn, 1, "after close")
  check("wssend after wsclose fails softly", c_ok == false and type(cerr) == "string", cerr)
end

-- One text round trip; returns the echo, or nil and the error.
local function round_trip(u, o)
  local echoed
  local c, e = luws.wsopen(u, function(_, op, data) if op == 1 then echoed = data end end, o)
  if not c then return nil, e end
  luws.wssend(c, 1, "over " .. u)
  local deadline = os.time() + 20
  while not echoed and os.time() < deadline do
    local more, n = luws.wsreceive(c)
    if more == nil then e = n break end
  end
  luws.wsclose(c)
  return echoed, e or "no echo"
end

-- permessage-deflate on the target: the echo server compresses a JSON document of 200 KB;
-- luws inflates it (every build inflates; the Vera build sends uncompressed).
do
  local parts = {}
  for i = 1, 3000 do
    parts[i] = string.format('{"entity_id":"sensor.s%d","state":"%d","attributes":{"unit":"C"}}', i, i % 97)
  end
  local doc = "[" .. table.concat(parts, ",") .. "]"
  local echoed
  local c, e = luws.wsopen(url, function(_, op, data) if op == 1 then echoed = data end end,
    { permessage_deflate = true, max_payload_size = 1e6 })
  local agreed = c and c:extensions().permessage_deflate
  check("permessage-deflate agreed", agreed ~= nil, not agreed and (e or "no extension") or nil)
  if c then
    luws.wssend(c, 1, doc)
    local deadline = os.time() + 20
    while not echoed and os.time() < deadline do
      local more, n = luws.wsreceive(c)
      if more == nil then e = n break end
    end
    luws.wsclose(c)
  end
  check("a 200 KB JSON document inflated byte-exact", echoed == doc,
    echoed and (#echoed .. " bytes") or e or "no echo")
end

-- The TLS backend on the target itself: pinning, the SNI override, a SOCKS5 tunnel.
if tls_port then
  local wss = string.format("wss://127.0.0.1:%d/echo", tls_port)
  local got, e = round_trip(wss, { ssl_pin = pin })
  check("wss with ssl_pin (no CA)", got == "over " .. wss, got or e)
  local _, perr = round_trip(wss, { ssl_pin = "sha256//" .. string.rep("A", 43) .. "=" })
  check("wss with a wrong pin refused", perr ==
    "Failed SSL negotation: certificate verify failed: public key does not match ssl_pin", perr)
  got, e = round_trip(wss, { ssl_verify = "peer", ssl_cafile = cafile, ssl_servername = "luws.test" })
  check("ssl_verify peer + ssl_servername", got == "over " .. wss, got or e)
  local _, herr = round_trip(wss, { ssl_verify = "peer", ssl_cafile = cafile })
  check("ssl_verify peer without it: hostname mismatch", herr ==
    "Failed SSL negotation: certificate verify failed: hostname mismatch", herr)
  if socks_port then
    local via = string.format("socks5h://127.0.0.1:%d", socks_port)
    got, e = round_trip(url, { proxy = via })
    check("ws through SOCKS5", got == "over " .. url, got or e)
    got, e = round_trip(wss, { proxy = via, ssl_pin = pin })
    check("wss through SOCKS5, pinned", got == "over " .. wss, got or e)
  end
end
print(string.format("verify: %d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
