-- wsopen: URLs, arguments, the opening handshake and its failures, each bounded in time.
local H = spec_helper
local luws = H.luws

describe("wsopen", function()
  local bad, echo
  setup(function()
    bad = H.server("bad")
    echo = H.server("echo")
  end)

  it("opens a connection and names it luws-websock[host:port]", function()
    local conn = H.open(echo.url("/"), function() end)
    assert.equal("luws-websock[127.0.0.1:" .. echo.port .. "]", tostring(conn))
    luws.wsclose(conn)
  end)

  describe("returns false and an error for a bad URL string", function()
    local cases = {
      { nil, "URL missing" },
      { "", "empty URL" },
      { "http://example.com/", "scheme must be ws:// or wss://" },
      { "ws://", "no host" },
      { "ws:///path", "no host" },
      { "ws://host:70000/", "port out of range" },
      { "ws://host:0/", "port out of range" },
      { "ws://[::1/", "invalid IP address" },
      { "ws://host/#frag", "fragment (#) not allowed" },
    }
    for _, c in ipairs(cases) do
      it(tostring(c[1]), function()
        local ok, err = luws.wsopen(c[1], function() end)
        assert.is_false(ok)
        assert.equal("Invalid protocol/address for WebSocket open in " .. tostring(c[1]) .. ": " .. c[2], err)
      end)
    end
  end)

  describe("raises an error naming the argument of a wrong type", function()
    it("handler", function()
      local ok, err = pcall(luws.wsopen, "ws://127.0.0.1:1/", "not a function")
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'wsopen' %(function expected, got string%)", tostring(err))
    end)
    it("options", function()
      local ok, err = pcall(luws.wsopen, "ws://127.0.0.1:1/", function() end, 5)
      assert.is_false(ok)
      assert.matches("bad argument #3 to 'wsopen' %(table expected, got number%)", tostring(err))
    end)
    it("url", function()
      local ok, err = pcall(luws.wsopen, {}, function() end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'wsopen' %(string expected, got table%)", tostring(err))
    end)
    it("an option", function()
      local ok, err = pcall(luws.wsopen, "ws://127.0.0.1:1/", function() end, { receive_timeout = "soon" })
      assert.is_false(ok)
      assert.matches("bad option 'receive_timeout' to 'wsopen' %(number expected%)", tostring(err))
    end)
  end)

  it("sends Host with a non-default port, a fresh key per connection, version 13 and extra headers", function()
    local keys = {}
    for i = 1, 2 do
      local handler, got = H.recorder()
      local conn = H.open(bad.url("/headers?id=" .. H.id()), handler,
        { upgrade_headers = { ["X-Token"] = "abc", Origin = "http://luws.test" } })
      assert.is_true(H.pump(conn, function() return #got >= 1 end))
      local head = got[1][2]
      assert.matches("^GET /headers%?id=", head)
      assert.matches("\nHost: 127%.0%.0%.1:" .. bad.port .. "\n", head .. "\n")
      assert.matches("\nSec%-WebSocket%-Version: 13\n", head .. "\n")
      assert.matches("\nX%-Token: abc\n", head .. "\n")
      assert.matches("\nOrigin: http://luws%.test\n", head .. "\n")
      keys[i] = head:match("\nSec%-WebSocket%-Key: ([^\n]+)")
      assert.equal(24, #keys[i])
      luws.wsclose(conn)
    end
    assert.not_equal(keys[1], keys[2])
  end)

  it("refuses upgrade headers that luws must set itself", function()
    local ok, err = pcall(luws.wsopen, bad.url("/echo"), function() end, { upgrade_headers = { Upgrade = "h2c" } })
    assert.is_false(ok)
    assert.matches("bad option 'upgrade_headers' to 'wsopen' %(header 'Upgrade' is set by luws%)", tostring(err))
  end)

  it("fills LuWS's defaults into the options table", function()
    local opts = {}
    local conn = H.open(echo.url("/"), function() end, opts)
    assert.equal(0, opts.receive_timeout)
    assert.equal(65535, opts.max_payload_size)
    assert.is_true(opts.use_masking)
    assert.is_number(opts.receive_chunk_size)
    luws.wsclose(conn)
  end)

  describe("fails the handshake with the LuWS-style message", function()
    local cases = {
      { "/status?code=404&reason=Not%20Found", "upgrade failed; HTTP/1.1 404 Not Found" },
      { "/status?code=302&reason=Found", "upgrade failed; HTTP/1.1 302 Found" },
      { "/badaccept", "upgrade failed; Sec-WebSocket-Accept mismatch" },
      { "/noaccept", "upgrade failed; Sec-WebSocket-Accept missing" },
      { "/noupgrade", "upgrade failed; Upgrade header missing" },
      { "/notws", "upgrade failed; Upgrade header is not websocket" },
      { "/garbage", "upgrade failed; hello" },
      { "/eof", "upgrade failed; closed" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local ok, err = luws.wsopen(bad.url(c[1]), function() end)
        assert.is_false(ok)
        assert.equal(c[2], err)
      end)
    end
  end)

  it("gives up on a server that accepts TCP but never answers, within handshake_timeout", function()
    local t, ok, err = H.elapsed(function()
      return luws.wsopen(bad.url("/hang"), function() end, { handshake_timeout = 0.5 })
    end)
    assert.is_false(ok)
    assert.equal("upgrade failed; timeout", err)
    assert.is_true(t >= 0.4 and t < 3, "took " .. t .. " s")
  end)

  it("reports a refused connection as LuWS does", function()
    -- A port that was just free: bind, read the number, close.
    local s = H.socket.bind("127.0.0.1", 0)
    local _, port = s:getsockname()
    s:close()
    local ok, err = luws.wsopen("ws://127.0.0.1:" .. port .. "/", function() end)
    assert.is_false(ok)
    assert.equal("Connection to 127.0.0.1:" .. port .. " failed: connection refused", err)
  end)

  it("reports a name that does not resolve", function()
    local ok, err = luws.wsopen("ws://no-such-host.invalid/", function() end, { connect_timeout = 5 })
    assert.is_false(ok)
    assert.equal("Connection to no-such-host.invalid:80 failed: host not found", err)
  end)

  it("connects to an IPv6 literal", function()
    local srv = H.socket.tcp6 and H.socket.tcp6()
    if not srv or not srv:bind("::1", 0) then
      pending("no IPv6 loopback here")
      return
    end
    srv:listen(1)
    local _, port = srv:getsockname()
    -- Nothing answers the upgrade: the point is that TCP reaches [::1]:port.
    local ok, err = luws.wsopen("ws://[::1]:" .. port .. "/", function() end, { handshake_timeout = 0.2 })
    srv:close()
    assert.is_false(ok)
    assert.equal("upgrade failed; timeout", err)
  end)

  describe("subprotocols and the server's answer", function()
    it("offers protocols in order; conn:protocol() is the server's choice, conn:response() its 101", function()
      local conn = H.open(echo.url("/"), function() end, { protocols = { "xmpp", "superchat", "chat" } })
      assert.equal("superchat", conn:protocol())
      local status, reason, headers = conn:response()
      assert.equal(101, status)
      assert.equal("Switching Protocols", reason)
      assert.equal("superchat", headers["sec-websocket-protocol"])
      assert.equal("websocket", headers.upgrade:lower())
      luws.wsclose(conn)
    end)

    it("takes LuWS's comma-separated form; nil when the server chose none", function()
      local conn = H.open(echo.url("/"), function() end, { protocols = "chat, xmpp" })
      assert.equal("chat", conn:protocol())
      luws.wsclose(conn)
      conn = H.open(echo.url("/"), function() end, { protocols = { "xmpp" } })
      assert.is_nil(conn:protocol())
      luws.wsclose(conn)
      conn = H.open(echo.url("/"), function() end)
      assert.is_nil(conn:protocol())
      assert.equal(101, (conn:response()))
      luws.wsclose(conn)
    end)

    it("refuses protocol names that are not tokens, and protocols given twice", function()
      local ok, err = pcall(luws.wsopen, echo.url("/"), function() end, { protocols = { "a b" } })
      assert.is_false(ok)
      assert.equal("bad option 'protocols' to 'wsopen' ('a b' is not a protocol name)", err)
      ok, err = pcall(luws.wsopen, echo.url("/"), function() end,
        { protocols = { "chat" }, upgrade_headers = { ["Sec-WebSocket-Protocol"] = "chat" } })
      assert.is_false(ok)
      assert.equal("bad option 'protocols' to 'wsopen' (given twice: also as Sec-WebSocket-Protocol in upgrade_headers)", err)
    end)

    it("a refused upgrade keeps LuWS's error and gives the status and headers third", function()
      local ok, err, answer = luws.wsopen(bad.url("/status?code=403&reason=Forbidden"), function() end)
      assert.is_false(ok)
      assert.equal("upgrade failed; HTTP/1.1 403 Forbidden", err)
      assert.equal(403, answer.status)
      assert.equal("Forbidden", answer.reason)
      assert.equal("0", answer.headers["content-length"])
    end)

    it("verawebsockets: create's options take protocols; wso:protocol() and wso:response() after event 3", function()
      local got
      local wso = luws.create(echo.url("/"), {
        [3] = function(w) got = { w:protocol(), (w:response()) } end,
      }, nil, false, { protocols = { "chat" } })
      luws.connect(wso)
      local deadline = H.socket.gettime() + 5
      while not got and H.socket.gettime() < deadline do
        luws.loop()
        H.socket.sleep(0.01)
      end
      assert.same({ "chat", 101 }, got)
      luws.close(wso)
      for _ = 1, 50 do luws.loop() H.socket.sleep(0.01) end
    end)
  end)

  describe("against Python websockets (an independent server)", function()
    local function first_message(url, opts)
      local handler, got = H.recorder()
      local conn = H.open(url, handler, opts)
      assert.is_true(H.pump(conn, function() return #got >= 1 end, 5))
      local url_now, _, _, headers = conn:url(), conn:response()
      luws.wsclose(conn)
      return got[1][2], url_now, headers
    end

    it("shows the extra headers of its 101 in conn:response()", function()
      local conn = H.open(echo.url("/"), function() end, { protocols = { "chat" } })
      local status, _, headers = conn:response()
      assert.equal(101, status)
      assert.matches("^websockets/%d", headers["x-luws-peer"])
      assert.equal("chat", conn:protocol())
      luws.wsclose(conn)
    end)

    it("follows its redirects, keeping credentials on the same host and dropping them elsewhere", function()
      local function via(code, to) return "/redirect?code=" .. code .. "&to=" .. to:gsub(":", "%%3A") end
      local same = echo.url(via(302, echo.url("/headers"))):gsub("^ws://", "ws://user:pw@")
      local request, url = first_message(same, { follow_redirects = 1 })
      assert.matches("Authorization: Basic dXNlcjpwdw==", request, 1, true)
      assert.equal(echo.url("/headers"), url)
      local elsewhere = echo.url("/headers"):gsub("127%.0%.0%.1", "localhost")
      local other = echo.url(via(307, elsewhere)):gsub("^ws://", "ws://user:pw@")
      request, url = first_message(other, { follow_redirects = 1,
        upgrade_headers = { Authorization = "Bearer secret" } })
      assert.is_nil(request:find("Authorization", 1, true), request)
      assert.equal(elsewhere, url)
    end)

    it("a redirect to itself is a loop", function()
      local ok, err = luws.wsopen(echo.url("/redirect?code=301&to=self"), function() end, { follow_redirects = 3 })
      assert.is_false(ok)
      assert.equal("upgrade failed; redirect loop", err)
    end)
  end)

  describe("follow_redirects", function()
    local function enc(v)
      return (v:gsub("[^%w%-%._~/]", function(ch) return ("%%%02X"):format(ch:byte()) end))
    end
    local function redirect(code, location) return "/status?code=" .. code .. "&location=" .. enc(location) end
    -- The first message of bad's /headers is the request it received.
    local function first_message(url, opts)
      local handler, got = H.recorder()
      local conn = H.open(url, handler, opts)
      assert.is_true(H.pump(conn, function() return #got >= 1 end, 5))
      local url_now = conn:url()
      luws.wsclose(conn)
      return got[1][2], url_now
    end

    it("is off by default, as in LuWS: the redirect's status and Location come back", function()
      local ok, err, answer = luws.wsopen(bad.url(redirect(302, echo.url("/"))), function() end)
      assert.is_false(ok)
      assert.equal("upgrade failed; HTTP/1.1 302 Not Found", err)
      assert.equal(302, answer.status)
      assert.equal(echo.url("/"), answer.headers.location)
    end)

    it("follows 301, 302, 303, 307 and 308 to ws://, http:// and relative URLs; conn:url() is where it ended", function()
      for _, code in ipairs({ 301, 302, 303, 307, 308 }) do
        local conn = H.open(bad.url(redirect(code, echo.url("/"))), function() end, { follow_redirects = 1 })
        assert.equal(echo.url("/"), conn:url())
        luws.wsclose(conn)
      end
      local http = echo.url("/"):gsub("^ws://", "http://")
      local conn = H.open(bad.url(redirect(302, http)), function() end, { follow_redirects = 1 })
      assert.equal(echo.url("/"), conn:url())
      luws.wsclose(conn)
      local request = first_message(bad.url(redirect(307, "/headers?via=relative")), { follow_redirects = 1 })
      assert.matches("^GET /headers%?via=relative HTTP/1.1", request)
    end)

    it("keeps credentials on the same host and drops them when the host changes", function()
      local same = bad.url(redirect(302, "/headers")):gsub("^ws://", "ws://user:pw@")
      local request = first_message(same, { follow_redirects = 1 })
      assert.matches("Authorization: Basic dXNlcjpwdw==", request)
      local other = bad.url(redirect(302, bad.url("/headers"):gsub("127%.0%.0%.1", "localhost")))
      request = first_message(other:gsub("^ws://", "ws://user:pw@"), { follow_redirects = 1 })
      assert.matches("^GET /headers HTTP/1.1", request)
      assert.is_nil(request:find("Authorization", 1, true))
    end)

    it("stops at follow_redirects hops, at a loop, and at a Location that is no WebSocket URL", function()
      local two = bad.url(redirect(302, redirect(302, echo.url("/"))))
      local ok, err = luws.wsopen(two, function() end, { follow_redirects = 1 })
      assert.is_false(ok)
      assert.equal("upgrade failed; too many redirects", err)
      local conn = H.open(two, function() end, { follow_redirects = 2 })
      assert.equal(echo.url("/"), conn:url())
      luws.wsclose(conn)
      ok, err = luws.wsopen(bad.url(redirect(302, "@self")), function() end, { follow_redirects = 5 })
      assert.is_false(ok)
      assert.equal("upgrade failed; redirect loop", err)
      ok, err = luws.wsopen(bad.url(redirect(302, "ftp://example/x")), function() end, { follow_redirects = 5 })
      assert.is_false(ok)
      assert.equal("upgrade failed; bad redirect location ftp://example/x", err)
    end)
  end)
end)
