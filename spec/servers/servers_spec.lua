-- Sanity checks for the test-peer harness itself (spec/support/servers.lua):
-- start each server kind, talk to the bad server over raw LuaSocket, query
-- /log and /count, stop. Independent of the luws module.
local socket = require "socket"
local servers = require "spec.support.servers"

local function raw_ws(port, path)
  local c = assert(socket.tcp())
  c:settimeout(5)
  assert(c:connect("127.0.0.1", port))
  assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1:" .. port ..
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
  local status = assert(c:receive("*l"))
  local accept
  repeat
    local line = assert(c:receive("*l"))
    accept = accept or line:match("^Sec%-WebSocket%-Accept: (.*)$")
  until line == ""
  return c, status, accept
end

describe("test servers", function()
  it("bad server: handshake, log and count", function()
    local s = servers.start("bad")
    finally(function() s:stop() end)
    assert.is_number(s.port)
    assert.equal("ws://127.0.0.1:" .. s.port .. "/echo", s.url("/echo"))
    local id = servers.unique_id()
    local c, status, accept = raw_ws(s.port, "/echo?id=" .. id)
    assert.equal("HTTP/1.1 101 Switching Protocols", status)
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept) -- RFC 6455 example key
    -- masked text "hi" with a zero mask, echoed unmasked
    assert(c:send(string.char(0x81, 0x82, 0, 0, 0, 0) .. "hi"))
    assert.equal(string.char(0x81, 0x02) .. "hi", c:receive(4))
    assert.same({ "open", "text 2 hi" }, s:log(id, "text"))
    assert.equal(1, s:count())
    c:close()
    assert.equal(0, s:count(0))
    assert.same({ "open", "text 2 hi", "eof" }, s:log(id, "eof"))
  end)

  it("bad server: /status answers and the log wait is bounded", function()
    local s = servers.start("bad")
    finally(function() s:stop() end)
    local _, status = raw_ws(s.port, "/status?code=403&reason=Forbidden")
    assert.equal("HTTP/1.1 403 Forbidden", status)
    local t0 = socket.gettime()
    assert.same({}, s:log("nobody", "open", 0.2))
    assert.is_true(socket.gettime() - t0 < 2)
  end)

  it("TLS files exist and TLS servers start", function()
    local cert, key = servers.tls_files()
    local ca = servers.tls_ca()
    local ccert, ckey = servers.client_cert()
    for _, f in ipairs({ cert, key, ca, ccert, ckey }) do
      assert.truthy(io.open(f, "r"), f)
    end
    local s = servers.start("bad", { tls = "ca" })
    finally(function() s:stop() end)
    assert.equal("wss://localhost:" .. s.port .. "/x", s.url("/x"))
    assert.equal(0, s:count()) -- plain-text control requests work on TLS ports
  end)

  it("echo server starts and stops", function()
    local s = servers.start("echo")
    local pid = s.pid
    local c = assert(socket.tcp())
    c:settimeout(5)
    assert(c:connect("127.0.0.1", s.port))
    c:close()
    s:stop()
    assert.is_nil(io.open("/proc/" .. pid .. "/stat", "r"))
  end)

  it("node echo server (ws): handshake, echo, stop", function()
    local s = servers.start("node")
    local pid = s.pid
    local c, status, accept = raw_ws(s.port, "/")
    assert.equal("HTTP/1.1 101 Switching Protocols", status)
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept)
    assert(c:send(string.char(0x81, 0x82, 0, 0, 0, 0) .. "hi"))
    assert.equal(string.char(0x81, 0x02) .. "hi", c:receive(4))
    c:close()
    s:stop()
    assert.is_nil(io.open("/proc/" .. pid .. "/stat", "r"))
  end)

  it("reports what a server printed when it fails to start", function()
    local saved = servers.python
    servers.python = "/nonexistent/python3"
    local ok, err = pcall(servers.start, "bad")
    servers.python = saved
    assert.is_false(ok)
    assert.matches("did not start", err)
    assert.matches("nonexistent", err)
  end)
end)
