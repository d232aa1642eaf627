-- SockProxy compatibility: the connect option returning a LuaSocket object that already went
-- through SockProxy's greeting and CONN exchange (spec/servers/sockproxy_relay.py). luws takes
-- over its descriptor and runs the upgrade, and TLS for wss://, through it.
local H = spec_helper
local luws = H.luws
local socket = H.socket

local SID = "urn:luws-test:serviceId:Proxy1"

-- The LuWS README's connect_sockproxy, with the proxy port and what happened made visible.
-- One change: after a failed negotiation the README reconnects the same (connected) object,
-- which fails (already connected), so this one takes a new socket then.
local function connect_sockproxy(proxy_port, seen)
  return function(ip, port)
    local sock = socket.tcp()
    if not sock then
      return nil, "Can't get socket for connection"
    end
    seen.sock = sock
    -- Try SockProxy first
    sock:settimeout(5)
    local st = sock:connect("127.0.0.1", proxy_port)
    if st then
      local ans = sock:receive("*l")
      seen.greeting = ans
      if ans and ans:match("^OK TOGGLEDBITS%-SOCKPROXY") then
        sock:send(string.format("CONN %s:%d NTFY=%d/%s/%s RTIM=0 PACE=0\n",
          ip, port, 42, SID, "HandleReceive"))
        ans = sock:receive("*l")
        seen.answer = ans
        if ans and ans:match("^OK CONN") then
          seen.proxied, seen.id = true, ans:match("^OK CONN (%S+)")
          return sock
        end
      end
      sock:close()
      sock = socket.tcp()
      seen.sock = sock
    end
    -- No proxy (or it refused): plain connect.
    seen.proxied = false
    sock:settimeout(15)
    local r, e = sock:connect(ip, port)
    if r then
      return sock
    end
    sock:close()
    return nil, string.format("Connection to %s:%s failed: %s", ip, port, tostring(e))
  end
end

local function tohex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- The relay's record of session `id` (its test-only XLOG command), as a table of strings;
-- `marker` is looked for in each direction.
local function xlog(relay, id, marker)
  local c = assert(socket.tcp())
  c:settimeout(5)
  assert(c:connect("127.0.0.1", relay.port))
  assert(c:receive("*l"))
  c:send("XLOG " .. id .. (marker and (" " .. tohex(marker)) or "") .. "\n")
  local line = assert(c:receive("*l"))
  c:close()
  local rec = { line = line }
  for k, v in line:gmatch("([%w_]+)=(%S+)") do rec[k] = v end
  return rec
end

-- Waits (at most 5 s) until the relay's session `id` is over.
local function session_over(relay, id)
  local deadline = socket.gettime() + 5
  local rec
  repeat
    rec = xlog(relay, id)
    if rec.open == "0" then return rec end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return rec
end

local function unused_port()
  local probe = assert(socket.bind("127.0.0.1", 0))
  local _, port = probe:getsockname()
  probe:close()
  return tonumber(port)
end

describe("the connect option (SockProxy)", function()
  local echo, tls_echo, relay
  setup(function()
    echo = H.server("echo")
    tls_echo = H.server("echo", { tls = true })
    relay = H.server("sockproxy")
  end)

  it("carries a ws:// session through the relay: greeting, CONN, then transparent bytes", function()
    local seen = {}
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, { connect = connect_sockproxy(relay.port, seen) })
    assert.matches("^OK TOGGLEDBITS%-SOCKPROXY 1 %x+$", seen.greeting)
    assert.is_true(seen.proxied)
    assert.equal(-1, seen.sock:getfd(), "luws took the descriptor over (setfd(-1))")
    seen.sock:close() -- the LuaSocket object no longer owns the connection
    local marker = "plain-marker-" .. H.id()
    assert.is_true(luws.wssend(conn, 1, marker))
    assert.is_true(H.pump(conn, function() return #got >= 1 end))
    assert.same({ { 1, marker } }, got)
    local rec = xlog(relay, seen.id, marker)
    assert.equal("127.0.0.1:" .. echo.port, rec.target)
    assert.equal("42/" .. SID .. "/HandleReceive", rec.ntfy)
    assert.equal("1", rec.marker_down, "the echo passed the relay in clear (" .. rec.line .. ")")
    assert.equal("0", rec.marker_up, "client frames are masked")
    luws.wsclose(conn)
    assert.equal("0", session_over(relay, seen.id).open)
  end)

  it("carries a wss:// session with TLS end to end: the relay sees only ciphertext", function()
    local seen = {}
    local handler, got = H.recorder()
    local conn = H.open(tls_echo.url("/"), handler,
                        { connect = connect_sockproxy(relay.port, seen), ssl_verify = "peer",
                          ssl_cafile = (H.servers.tls_files()) })
    assert.is_true(seen.proxied)
    local marker = "secret-marker-" .. H.id()
    for i = 1, 3 do
      assert.is_true(luws.wssend(conn, 1, marker .. i))
    end
    assert.is_true(H.pump(conn, function() return #got >= 3 end))
    assert.same({ { 1, marker .. 1 }, { 1, marker .. 2 }, { 1, marker .. 3 } }, got)
    local rec = xlog(relay, seen.id, marker)
    assert.equal("localhost:" .. tls_echo.port, rec.target)
    assert.equal("0", rec.marker_down, rec.line)
    assert.equal("0", rec.marker_up, rec.line)
    assert.is_true(tonumber(rec.down) > 3 * #marker, rec.line)
    -- A TLS handshake record (0x16 0x03) went up: the TLS ran through the relay.
    assert.equal("1", xlog(relay, seen.id, "\22\3").marker_up)
    luws.wsclose(conn)
    assert.equal("0", session_over(relay, seen.id).open)
  end)

  it("works with the notify option on a proxied connection", function()
    local luup = H.server("luup")
    local seen, pid = {}, H.id()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, { connect = connect_sockproxy(relay.port, seen),
      notify = { device = 42, service = SID, port = luup.port, pid = pid } })
    assert.is_true(seen.proxied)
    luws.wssend(conn, 1, "x")
    -- wait for the fake Luup's record of the notification
    local c = assert(socket.tcp())
    c:settimeout(10)
    assert(c:connect("127.0.0.1", luup.port))
    c:send("GET /requests?wait=1&match=Pid%3D" .. pid .. " HTTP/1.1\r\nHost: x\r\n\r\n")
    local body = c:receive("*a")
    c:close()
    local n = select(2, body:gsub("&Pid=" .. pid .. "\n", ""))
    assert.equal(1, n)
    assert.is_true(H.pump(conn, function() return #got >= 1 end))
    luws.wsclose(conn)
  end)

  it("falls back to a plain connect on the same socket object when no proxy listens", function()
    local seen = {}
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, { connect = connect_sockproxy(unused_port(), seen) })
    assert.is_false(seen.proxied)
    assert.is_nil(seen.greeting)
    assert.is_true(luws.wssend(conn, 1, "direct"))
    assert.is_true(H.pump(conn, function() return #got >= 1 end))
    assert.same({ { 1, "direct" } }, got)
    luws.wsclose(conn)
  end)

  it("falls back to a plain connect when the proxy answers ERR CONN", function()
    local refusing = H.server("sockproxy", { refuse = true })
    local seen = {}
    local handler, got = H.recorder()
    local conn = H.open(tls_echo.url("/"), handler, { connect = connect_sockproxy(refusing.port, seen) })
    assert.equal("ERR CONN refused by test relay", seen.answer)
    assert.is_false(seen.proxied)
    assert.is_true(luws.wssend(conn, 1, "direct"))
    assert.is_true(H.pump(conn, function() return #got >= 1 end))
    assert.same({ { 1, "direct" } }, got)
    luws.wsclose(conn)
  end)

  it("passes the host and port of the URL to the connect function", function()
    local args
    local ok, err = luws.wsopen("wss://example.invalid:4443/x", function() end, {
      connect = function(host, port) args = { host, port }; return nil, "stop here" end })
    assert.same({ "example.invalid", 4443 }, args)
    assert.is_false(ok)
    assert.equal("stop here", err)
  end)

  it("returns false and the connect function's message when it returns nil, msg", function()
    local ok, err = luws.wsopen(echo.url("/"), function() end, {
      connect = function() return nil, "SockProxy says no" end })
    assert.is_false(ok)
    assert.equal("SockProxy says no", err)
  end)

  it("returns false, \"Can't get socket for connection\" for an object without getfd", function()
    local ok, err = luws.wsopen(echo.url("/"), function() end, {
      connect = function() return {} end })
    assert.is_false(ok)
    assert.equal("Can't get socket for connection", err)
  end)

  it("returns false, \"Can't get socket for connection\" for a LuaSocket object never connected", function()
    local sock = socket.tcp()
    local ok, err = luws.wsopen(echo.url("/"), function() end, {
      connect = function() return sock end })
    assert.is_false(ok)
    assert.equal("Can't get socket for connection", err)
    sock:close()
  end)
end)

describe("the connect option's socket", function()
  -- Regression: luws closed the original descriptor even when the object could not let go of
  -- it (no setfd), so the object's own close later hit whatever reused that number.
  it("stays with an object that has getfd but no setfd; luws works on its own copy", function()
    local H = spec_helper
    local echo = H.server("echo")
    local sock = H.socket.tcp()
    sock:settimeout(5)
    assert(sock:connect("127.0.0.1", echo.port))
    local fd = sock:getfd()
    local target = H.fd_target(fd)
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, {
      connect = function() return { getfd = function() return fd end } end,
    })
    assert.equal(target, H.fd_target(fd))
    assert.not_equal(fd, conn:getfd())
    assert.is_true(H.luws.wssend(conn, 1, "through a copy"))
    assert.is_true(H.pump(conn, function() return #got >= 1 end))
    assert.same({ 1, "through a copy" }, got[1])
    H.luws.wsclose(conn)
    sock:close()
  end)
end)
