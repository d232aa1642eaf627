-- Test peers for the luws specs: start/stop spec/servers/*.py (and node_echo.js) and query them.
-- Lua 5.1-5.4 and LuaJIT; needs LuaSocket and, for TLS, the `openssl` CLI.
--
--   local servers = require "spec.support.servers"
--   local s = servers.start("bad")            -- or "echo", "node", "luup", "sockproxy"; opts below
--   s.port, s.pid, s.url("/echo?id=x")        -- also s:url(path)
--   s:log(id, wait_prefix, timeout) -> { "open", "text 5 hello", ... }
--   s:count(wait_for, timeout) -> open TCP connections on the server
--   s:stop()
--
-- opts: tls = true | "self" (self-signed leaf) | "ca" (leaf signed by tls_ca())
--             | "expired"    (leaf signed by tls_ca(), valid 2000-2001 only)
--             | "not_yet_valid" (leaf signed by tls_ca(), valid 2090-2091 only)
--             | "wrong_host" (leaf signed by tls_ca() for wrong.example only)
--             | "wrong_purpose" (leaf signed by tls_ca() for clientAuth only)
--             | "bad_signature" (the "ca" leaf with its signature altered)
--       stall = true       (bad + tls: accept TCP, never finish the TLS handshake)
--       client_ca = true   (bad + tls: ask for an optional client certificate;
--                           the log then records "client-cert <CN>|none")
--       hold = <s>         (luup: seconds an answered connection is held open; 90)
--       refuse = true      (sockproxy: answer every CONN with ERR CONN)
-- "node" is spec/servers/node_echo.js (Node's `ws`), run by $LUWS_NODE (default node) with
--   NODE_PATH at $LUWS_NODE_PATH (default target/node/node_modules, where tools/install-deps.sh
--   puts the pinned `ws`); plain ws:// only.
-- "luup" is spec/servers/fake_luup.py (query it over HTTP: GET /requests, /open);
-- "sockproxy" is spec/servers/sockproxy_relay.py (its XLOG command reports a session).
-- "tinyproxy", "microsocks": the real proxies (spec/servers/real_proxy.py), with
--   auth = "user:pass" and, for tinyproxy, log = <file> (its Info-level log);
-- "badproxy": spec/servers/bad_proxy.py, mode = stall|close|garbage|flood|refuse|
--   socks-noauth|socks-reply (code = the SOCKS5 reply code).

local socket = require "socket"

local M = {}

M.python = os.getenv("LUWS_PYTHON") or "python3"
M.node = os.getenv("LUWS_NODE") or "node"
M.start_timeout = 15 -- enforced by the servers themselves (startup alarm)

local running = {} -- pid -> server
local tls_dir, tls = nil, nil
local counter = 0

-------------------------------------------------------------------- helpers

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exec_ok(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end -- Lua 5.1 / LuaJIT
  return a == true and (c == nil or c == 0)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local d = f:read("*a")
  f:close()
  return d
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function cwd()
  local p = io.popen("pwd")
  local d = p and p:read("*l")
  if p then p:close() end
  return d or "."
end

local servers_dir = (function()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$")
  if not dir then return cwd() .. "/spec/servers" end
  if dir:sub(1, 1) ~= "/" then dir = cwd() .. "/" .. dir end
  return dir .. "/../servers"
end)()

M.node_path = os.getenv("LUWS_NODE_PATH") or (servers_dir .. "/../../target/node/node_modules")

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch)
    return string.format("%%%02X", ch:byte())
  end))
end

local function sleep(s) socket.sleep(s) end

-- state of a process: nil when gone, "Z" for a zombie, else a state letter
local function proc_state(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then return stat:match("^%d+ %b() (%a)") or "?" end
  if read_file("/proc/self/stat") then return nil end -- Linux: no entry = gone
  return exec_ok("kill -0 " .. pid .. " 2>/dev/null") and "?" or nil
end

-------------------------------------------------------------------- TLS files

local function openssl(dir, args)
  local log = dir .. "/openssl.log"
  if not exec_ok("cd " .. shell_quote(dir) .. " && openssl " .. args .. " >" ..
                 shell_quote(log) .. " 2>&1") then
    error("openssl " .. args .. " failed:\n" .. (read_file(log) or "?"), 0)
  end
end

-- Server certificates that ssl_verify = "peer" refuses, each for one reason (make_tls).
local FAILING_LEAVES = {
  expired = true, not_yet_valid = true, wrong_host = true, wrong_purpose = true,
  bad_signature = true,
}

local function make_tls()
  if tls then return tls end
  local p = io.popen("mktemp -d \"${TMPDIR:-/tmp}/luws-spec-tls.XXXXXX\"")
  local dir = p:read("*l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  tls_dir = dir
  -- Removed by cleanup() (the spec helper calls it when the run ends). No background
  -- cleaner: it would inherit the servers' pipes and make pclose() wait forever.
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local san = "subjectAltName=DNS:localhost,IP:127.0.0.1"
  openssl(dir, "req -x509 " .. ec .. " -keyout self.key -out self.crt -days 7" ..
          " -subj /CN=localhost -addext " .. san)
  openssl(dir, "req -x509 " .. ec .. " -keyout ca.key -out ca.crt -days 7" ..
          " -subj '/CN=luws test CA'")
  write_file(dir .. "/leaf.ext", san .. "\nextendedKeyUsage=serverAuth\n")
  write_file(dir .. "/client.ext", "extendedKeyUsage=clientAuth\n")
  for _, v in ipairs({ { "leaf", "localhost" }, { "client", "luws-client" } }) do
    local name, cn = v[1], v[2]
    openssl(dir, "req -new " .. ec .. " -keyout " .. name .. ".key -out " .. name ..
            ".csr -subj /CN=" .. cn)
    openssl(dir, "x509 -req -in " .. name .. ".csr -CA ca.crt -CAkey ca.key" ..
            " -CAcreateserial -days 7 -out " .. name .. ".crt -extfile " .. name .. ".ext")
  end
  openssl(dir, "pkcs12 -export -in client.crt -inkey client.key -certfile ca.crt" ..
          " -out client.p12 -passout pass:")
  -- Leaves that fail verification for one reason each, all issued by the test CA: outside
  -- their validity dates (`openssl ca` takes explicit dates; `x509 -req` only -days), one
  -- for another host name, one not for TLS servers, and one whose signature is wrong.
  write_file(dir .. "/wrong_host.ext", "subjectAltName=DNS:wrong.example\n" ..
             "extendedKeyUsage=serverAuth\n")
  write_file(dir .. "/wrong_purpose.ext", san .. "\nextendedKeyUsage=clientAuth\n")
  write_file(dir .. "/ca.cnf", table.concat({
    "[ca]", "default_ca = luws_ca", "[luws_ca]", "database = ca.index",
    "serial = ca.serial", "new_certs_dir = .", "default_md = sha256",
    "policy = luws_policy", "unique_subject = no", "[luws_policy]",
    "commonName = supplied", "",
  }, "\n"))
  write_file(dir .. "/ca.index", "")
  write_file(dir .. "/ca.serial", "1000\n")
  local failing = {
    { "expired", "localhost", "leaf", "20000101000000Z", "20010101000000Z" },
    { "not_yet_valid", "localhost", "leaf", "20900101000000Z", "20910101000000Z" },
    { "wrong_host", "wrong.example", "wrong_host" },
    { "wrong_purpose", "localhost", "wrong_purpose" },
  }
  for _, v in ipairs(failing) do
    local name, cn, ext, from, to = v[1], v[2], v[3], v[4], v[5]
    openssl(dir, "req -new " .. ec .. " -keyout " .. name .. ".key -out " .. name ..
            ".csr -subj /CN=" .. cn)
    if from then
      openssl(dir, "ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in " ..
              name .. ".csr -out " .. name .. ".crt -startdate " .. from .. " -enddate " ..
              to .. " -extfile " .. ext .. ".ext")
    else
      openssl(dir, "x509 -req -in " .. name .. ".csr -CA ca.crt -CAkey ca.key" ..
              " -CAcreateserial -days 7 -out " .. name .. ".crt -extfile " .. ext .. ".ext")
    end
  end
  -- The leaf with the last byte of its signature changed (that of the ECDSA `s` value, so
  -- the DER stays well-formed); the key still matches it.
  openssl(dir, "x509 -in leaf.crt -outform DER -out bad_signature.der")
  local der = assert(read_file(dir .. "/bad_signature.der"))
  write_file(dir .. "/bad_signature.der",
             der:sub(1, -2) .. string.char((der:byte(-1) + 1) % 256))
  openssl(dir, "x509 -inform DER -in bad_signature.der -out bad_signature.crt")
  tls = {
    cert = dir .. "/self.crt", key = dir .. "/self.key",
    ca = dir .. "/ca.crt", leaf = dir .. "/leaf.crt", leaf_key = dir .. "/leaf.key",
    client = dir .. "/client.crt", client_key = dir .. "/client.key",
    client_p12 = dir .. "/client.p12",
  }
  for _, v in ipairs(failing) do
    tls[v[1]] = dir .. "/" .. v[1] .. ".crt"
    tls[v[1] .. "_key"] = dir .. "/" .. v[1] .. ".key"
  end
  tls.bad_signature, tls.bad_signature_key = dir .. "/bad_signature.crt", dir .. "/leaf.key"
  return tls
end

--- Self-signed certificate (CN=localhost, SAN DNS:localhost, IP:127.0.0.1).
function M.tls_files()
  local t = make_tls()
  return t.cert, t.key
end

--- CA certificate that signs the leaf used by start(kind, {tls="ca"}).
function M.tls_ca()
  return make_tls().ca
end

--- Client certificate (CN=luws-client, clientAuth) signed by tls_ca().
-- Returns cert_pem, key_pem (PKCS#8), pkcs12 (empty password).
function M.client_cert()
  local t = make_tls()
  return t.client, t.client_key, t.client_p12
end

--- The certificate file a server started with `tls = which` presents (true/"self", "ca",
-- or a failing leaf's name).
function M.tls_cert(which)
  local t = make_tls()
  if which == true or which == "self" then return t.cert end
  if which == "ca" then return t.leaf end
  return assert(t[which], "no certificate " .. tostring(which))
end

--- A fresh token for ?id=.
function M.unique_id()
  counter = counter + 1
  local t = socket.gettime()
  return string.format("id%x%04x%03d", math.floor(t), counter, math.floor((t % 1) * 1000))
end

-------------------------------------------------------------------- servers

local Server = {}
Server.__index = Server

local function http_get(self, target, timeout)
  if self.kind ~= "bad" then
    error("the log/count endpoint only exists on the bad server", 3)
  end
  local c = assert(socket.tcp())
  c:settimeout(timeout)
  local ok, err = c:connect("127.0.0.1", self.port)
  if not ok then
    c:close()
    error("cannot reach test server on port " .. self.port .. ": " .. tostring(err), 3)
  end
  c:send("GET " .. target .. " HTTP/1.1\r\nHost: 127.0.0.1:" .. self.port .. "\r\n\r\n")
  local status, e = c:receive("*l")
  if not status then
    c:close()
    error("test server " .. target .. ": " .. tostring(e), 3)
  end
  local len = 0
  while true do
    local line = c:receive("*l")
    if not line or line == "" then break end
    local n = line:lower():match("^content%-length:%s*(%d+)")
    if n then len = tonumber(n) end
  end
  local body = len > 0 and c:receive(len) or ""
  c:close()
  if not status:match("^HTTP/1%.1 200") then
    error("test server " .. target .. ": " .. status, 3)
  end
  return body or ""
end

--- Events recorded for `id`, after waiting (at most `timeout` s, default 5,
-- max 30) until one starts with `wait_prefix` (if given).  Never raises on
-- a timeout: the caller asserts on what it got.
function Server:log(id, wait_prefix, timeout)
  timeout = timeout or 5
  local target = "/log?id=" .. urlencode(id) .. "&timeout=" .. timeout
  if wait_prefix then target = target .. "&wait=" .. urlencode(wait_prefix) end
  local body = http_get(self, target, math.min(timeout, 30) + 5)
  local lines = {}
  for line in body:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

--- Number of open TCP connections on the server (log/count requests excluded).
-- With `wait_for`, waits (at most `timeout` s, default 5) until the count
-- equals it, then returns the count (equal or not).
function Server:count(wait_for, timeout)
  timeout = timeout or 5
  local target = "/count"
  if wait_for then target = target .. "?wait=" .. wait_for .. "&timeout=" .. timeout end
  local body = http_get(self, target, math.min(timeout, 30) + 5)
  return tonumber(body:match("%d+"))
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  running[self.pid] = nil
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 3
  while socket.gettime() < deadline do
    local st = proc_state(self.pid)
    if st == nil or st == "Z" then break end
    sleep(0.02)
  end
  local st = proc_state(self.pid)
  if st ~= nil and st ~= "Z" then
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  end
  self.handle:close() -- reaps the process
end

--- Start a server: kind "bad" or "echo"; see opts at the top of this file.
function M.start(kind, opts)
  opts = opts or {}
  local script
  if kind == "bad" then
    script = "bad_server.py"
  elseif kind == "echo" then
    script = "echo_server.py"
  elseif kind == "node" then
    script = "node_echo.js"
  elseif kind == "luup" then
    script = "fake_luup.py"
  elseif kind == "sockproxy" then
    script = "sockproxy_relay.py"
  elseif kind == "tinyproxy" or kind == "microsocks" then
    script = "real_proxy.py"
  elseif kind == "badproxy" then
    script = "bad_proxy.py"
  else
    error("unknown server kind " .. tostring(kind) ..
          " (bad|echo|node|luup|sockproxy|tinyproxy|microsocks|badproxy)", 2)
  end
  local args = ""
  if kind ~= "bad" and kind ~= "echo" and opts.tls then
    error("tls is a bad/echo server option", 2)
  end
  if kind == "tinyproxy" or kind == "microsocks" then
    args = " " .. kind
    if opts.auth then args = args .. " --auth " .. shell_quote(opts.auth) end
    if opts.log then args = args .. " --log " .. shell_quote(opts.log) end
  end
  if kind == "badproxy" then
    args = " " .. shell_quote(assert(opts.mode, "badproxy needs a mode"))
    if opts.code then args = args .. " " .. tonumber(opts.code) end
  end
  if kind == "luup" and opts.hold then args = " --hold " .. tonumber(opts.hold) end
  if kind == "sockproxy" and opts.refuse then args = " --refuse" end
  if opts.tls then
    local t = make_tls()
    local cert, key
    if opts.tls == true or opts.tls == "self" then
      cert, key = t.cert, t.key
    elseif opts.tls == "ca" then
      cert, key = t.leaf, t.leaf_key
    elseif FAILING_LEAVES[opts.tls] then
      cert, key = t[opts.tls], t[opts.tls .. "_key"]
    else
      error("unknown tls option " .. tostring(opts.tls) .. " (true|self|ca|expired|" ..
            "not_yet_valid|wrong_host|wrong_purpose|bad_signature)", 2)
    end
    args = args .. " --tls " .. shell_quote(cert) .. " " .. shell_quote(key)
    if kind == "bad" and opts.stall then args = args .. " --stall-tls" end
    if kind == "bad" and opts.client_ca then args = args .. " --client-ca " .. shell_quote(t.ca) end
  elseif opts.stall or opts.client_ca then
    error("stall/client_ca need tls", 2)
  end
  if kind ~= "bad" and (opts.stall or opts.client_ca) then
    error("stall/client_ca are bad-server options", 2)
  end
  local cmd = "exec " .. shell_quote(M.python) .. " " ..
              shell_quote(servers_dir .. "/" .. script) .. args .. " 2>&1"
  if kind == "node" then
    cmd = "exec env NODE_PATH=" .. shell_quote(M.node_path) .. " " .. shell_quote(M.node) .. " " ..
          shell_quote(servers_dir .. "/" .. script) .. " 2>&1"
  end
  local handle = assert(io.popen(cmd, "r"))
  local seen = {}
  local port, pid
  for _ = 1, 200 do -- tolerate a few warning lines before PORT
    local line = handle:read("*l")
    if not line then break end
    port, pid = line:match("^PORT (%d+) PID (%d+)$")
    if port then break end
    seen[#seen + 1] = line
  end
  if not port then
    local rest = handle:read("*a") or ""
    handle:close()
    error("test server " .. script .. " did not start (" .. cmd .. "):\n" ..
          table.concat(seen, "\n") .. rest, 2)
  end
  local self = setmetatable({
    kind = kind, port = tonumber(port), pid = tonumber(pid), handle = handle,
    tls = opts.tls or false, host = opts.tls and "localhost" or "127.0.0.1",
  }, Server)
  local base = (opts.tls and "wss://localhost:" or "ws://127.0.0.1:") .. self.port
  self.url = function(a, b)
    local path = a
    if type(a) == "table" then path = b end -- s:url(path) works too
    path = path or "/"
    if path:sub(1, 1) ~= "/" then path = "/" .. path end
    return base .. path
  end
  running[self.pid] = self
  return self
end

--- Stop every server started through this module.
function M.stop_all()
  local list = {}
  for _, s in pairs(running) do list[#list + 1] = s end
  for _, s in ipairs(list) do s:stop() end
end

--- stop_all() and delete the generated TLS files (done at exit too when
-- the Lua state is closed).
function M.cleanup()
  M.stop_all()
  if tls_dir then
    os.execute("rm -rf " .. shell_quote(tls_dir))
    tls_dir, tls = nil, nil
  end
end

-- Clean up when the Lua state closes (Lua 5.2+: os.exit(code, true)).
do
  local gc = function() pcall(M.cleanup) end
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = gc
    M._sentinel = p
  else
    M._sentinel = setmetatable({}, { __gc = gc })
  end
end

return M
