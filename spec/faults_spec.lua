-- Faults: a misbehaving or vanished peer ends in a documented error within a bounded time, and
-- the socket is closed afterwards (our descriptor is gone, the server saw the connection end).
--
-- Each case uses its own server process so that `count` (open connections on the server) is
-- about this file only.
local H = spec_helper
local luws = H.luws

local rss, fd_table = H.rss, H.fd_table

--- Asserts that no descriptor was added since `before` (a fd_table()); names any that was.
local function assert_no_new_fds(before)
  local new = {}
  for fd, target in pairs(fd_table()) do
    if before[fd] ~= target and not target:match("^pipe:") then new[#new + 1] = fd .. " -> " .. target end
  end
  table.sort(new)
  assert.same({}, new, "descriptors left open")
end

--- Pumps until wsreceive fails; returns elapsed seconds, its error and the handler's calls.
local function until_failure(conn, got, limit)
  local t, ok, err = H.elapsed(function() return H.pump(conn, function() return false end, limit or 5) end)
  assert.is_nil(ok, "wsreceive did not fail within " .. (limit or 5) .. " s")
  return t, err
end

--- The url of `path` with `id` appended to its query.
local function with_id(server, path, id)
  return server.url(path .. (path:find("?", 1, true) and "&" or "?") .. "id=" .. id)
end

describe("faults", function()
  local bad
  setup(function() bad = H.servers.start("bad") end)
  teardown(function() if bad then bad:stop() end end)

  --- Common ending: our socket is closed and the server no longer holds the connection.
  local function assert_closed(conn)
    assert.equal(-1, conn:getfd())
    assert.is_false(conn:isopen())
    assert.equal(0, bad:count(0, 5), "server still holds a connection")
  end

  it("a peer that resets in the middle of a frame: receiver error: closed at once, socket closed", function()
    local id = H.id()
    local handler, got = H.recorder()
    local conn = H.open(with_id(bad, "/reset", id), handler)
    local t, err = until_failure(conn, got)
    assert.equal("closed", err)
    assert.same({ { false, "receiver error: closed" } }, got)
    -- The server sends half a frame, waits 0.3 s, then resets.
    assert.is_true(t >= 0.2 and t < 2, "took " .. t)
    assert.same({ nil, "closed" }, { luws.wsreceive(conn) }, "the ending is kept")
    assert_closed(conn)
  end)

  describe("a half-open peer (reads, never answers)", function()
    it("with receive_timeout: message timeout after that long, Close 1001 sent, socket closed", function()
      local id = H.id()
      local handler, got = H.recorder()
      local conn = H.open(with_id(bad, "/silence", id), handler, { receive_timeout = 0.3 })
      local t, err = until_failure(conn, got)
      assert.equal("message timeout", err)
      assert.same({ { false, "message timeout" } }, got)
      assert.is_true(t >= 0.25 and t < 2, "took " .. t)
      local log = bad:log(id, "close")
      assert.equal("close 1001", log[#log])
      assert_closed(conn)
    end)

    it("with keepalive = 0.3: a ping after 0.3 s of silence, keepalive timeout 0.3 s later", function()
      local id = H.id()
      local handler, got = H.recorder()
      local conn = H.open(with_id(bad, "/silence", id), handler, { keepalive = 0.3 })
      local t, err = until_failure(conn, got)
      assert.equal("keepalive timeout", err)
      assert.same({ { false, "receiver error: keepalive timeout" } }, got)
      assert.is_true(t >= 0.5 and t < 2, "took " .. t)
      local log = bad:log(id, "close")
      assert.same({ "open", "ping luws-keepalive", "close 1001" }, log)
      assert_closed(conn)
    end)

    it("keepalive does not fail a peer that answers its pings", function()
      local id = H.id()
      local handler, got = H.recorder()
      local conn = H.open(with_id(bad, "/echo", id), handler, { keepalive = 0.3 })
      local ok = H.pump(conn, function() return false end, 1.5)
      assert.is_false(ok, "wsreceive failed")
      assert.same({}, got)
      assert.is_true(conn:isopen())
      local pings = 0
      for _, l in ipairs(bad:log(id)) do if l == "ping luws-keepalive" then pings = pings + 1 end end
      assert.is_true(pings >= 2, pings .. " pings")
      luws.wsclose(conn)
      assert_closed(conn)
    end)
  end)

  describe("a server that trickles one byte per second", function()
    it("still delivers its message", function()
      local handler, got = H.recorder()
      local conn = H.open(with_id(bad, "/trickle?msg=hi", H.id()), handler)
      local t = H.elapsed(function() return H.pump(conn, function() return #got >= 1 end, 10) end)
      assert.same({ { 1, "hi" } }, got)
      assert.is_true(t >= 2.5 and t < 6, "took " .. t) -- 4 bytes, 1 s apart
      luws.wsclose(conn)
      assert_closed(conn)
    end)

    -- Documented (src/error.rs): receive_timeout fails "without a frame from the peer"; luws
    -- restarts the clock only when tungstenite completes a message or control frame, so the
    -- bytes of a frame still trickling in do not count (LuWS also counted complete frames).
    -- BYTES_COUNT = true is the behaviour proposed in the fault report (any byte read is a
    -- sign of life): the message then arrives, and the timeout comes only after it.
    local BYTES_COUNT = true
    it("with a receive_timeout shorter than the whole message but longer than 1 s", function()
      local handler, got = H.recorder()
      local conn = H.open(with_id(bad, "/trickle?msg=hello", H.id()), handler, { receive_timeout = 2.5 })
      local t, err = until_failure(conn, got, 12) -- 7 bytes, 1 s apart, then 2.5 s of silence
      assert.equal("message timeout", err)
      if BYTES_COUNT then
        assert.same({ { 1, "hello" }, { false, "message timeout" } }, got)
        assert.is_true(t >= 8 and t < 11, "took " .. t)
      else
        assert.same({ { false, "message timeout" } }, got)
        assert.is_true(t >= 2.4 and t < 4, "took " .. t)
      end
      assert_closed(conn)
    end)
  end)

  describe("a server that floods", function()
    it("beyond max_payload_size: the error names both sizes, Close 1009, socket closed", function()
      local id = H.id()
      local handler, got = H.recorder()
      local conn = H.open(with_id(bad, "/flood?size=70000", id), handler)
      local t, err = until_failure(conn, got)
      assert.equal("message of 70000 bytes exceeds max_payload_size 65535", err)
      assert.same({ { false, "receiver error: message of 70000 bytes exceeds max_payload_size 65535" } }, got)
      assert.is_true(t < 2, "took " .. t)
      local log = bad:log(id, "close")
      assert.equal("close 1009", log[#log])
      assert_closed(conn)
    end)

    it("beyond a smaller max_payload_size given as an option", function()
      local id = H.id()
      local handler, got = H.recorder()
      local conn = H.open(with_id(bad, "/flood?size=2000", id), handler, { max_payload_size = 1000 })
      local _, err = until_failure(conn, got)
      assert.equal("message of 2000 bytes exceeds max_payload_size 1000", err)
      local log = bad:log(id, "close")
      assert.equal("close 1009", log[#log])
      assert_closed(conn)
    end)

    it("just under max_payload_size for 2 s: every message arrives whole, RSS stays bounded", function()
      local id = H.id()
      local n, wrong = 0, 0
      local conn = H.open(with_id(bad, "/flood?size=65000", id), function(c, op, data)
        n = n + 1
        if op ~= 2 or #data ~= 65000 then wrong = wrong + 1 end
      end)
      assert.is_true(H.pump(conn, function() return n >= 20 end, 5)) -- warm-up
      collectgarbage()
      collectgarbage()
      local before, peak = rss(), 0
      local deadline = H.socket.gettime() + 2
      while H.socket.gettime() < deadline do
        local more, err = luws.wsreceive(conn)
        assert.is_not_nil(more, err)
        if not more then luws.wait({ conn }, 0.05) end
        local r = rss()
        if r > peak then peak = r end
      end
      local growth = peak - before
      assert.equal(0, wrong)
      assert.is_true(n > 100, "only " .. n .. " messages")
      -- Hundreds of MB arrive in the 2 s (1.6 GB on an idle machine): anything kept per
      -- message would grow RSS by far more than the bound. Growth is typically about 125 KiB; the bound leaves room for the collector's
      -- lag (Lua 5.4 with another suite running once let 4,380 KiB of strings pile up).
      assert.is_true(growth < 8192, "RSS grew by " .. growth .. " KiB while flooded")
      local t = H.elapsed(function() luws.wsclose(conn) end)
      assert.is_true(t < 2, "wsclose took " .. t)
      assert_closed(conn)
    end)
  end)

  it("a TLS server that stalls mid-handshake: Failed SSL negotation: timeout within connect_timeout", function()
    local stall = H.servers.start("bad", { tls = true, stall = true })
    finally(function() stall:stop() end)
    collectgarbage()
    local fds = fd_table()
    local t, conn, err = H.elapsed(function()
      return luws.wsopen(stall.url("/echo"), function() end, { connect_timeout = 0.5 })
    end)
    assert.is_false(conn)
    assert.equal("Failed SSL negotation: timeout", err)
    assert.is_true(t >= 0.4 and t < 2, "took " .. t)
    assert_no_new_fds(fds)
    assert.equal(0, stall:count(0, 5), "server still holds the connection")
  end)

  it("a DNS name that does not resolve: Connection to HOST:PORT failed: host not found", function()
    collectgarbage()
    local fds = fd_table()
    for _, c in ipairs({
      { "ws://no-such-host.invalid/", "Connection to no-such-host.invalid:80 failed: host not found" },
      { "wss://no-such-host.invalid:8443/x", "Connection to no-such-host.invalid:8443 failed: host not found" },
    }) do
      local t, conn, err = H.elapsed(function()
        return luws.wsopen(c[1], function() end, { connect_timeout = 2 })
      end)
      assert.is_false(conn)
      assert.equal(c[2], err)
      assert.is_true(t < 3, "took " .. t)
    end
    assert_no_new_fds(fds)
  end)

  -- A resolver that never answers, in a private network and mount namespace (needs root and
  -- unshare; skipped elsewhere): connect_timeout bounds name resolution too.
  it("a DNS server that never answers: connect_timeout bounds the lookup", function()
    local function sh_ok(cmd)
      local a, _, c = os.execute(cmd)
      if type(a) == "number" then return a == 0 end
      return a == true and (c == nil or c == 0)
    end
    if not sh_ok("unshare -mn true >/dev/null 2>&1 && command -v ip >/dev/null 2>&1") then
      pending("needs unshare -mn and ip (root)")
      return
    end
    local mk = assert(io.popen("mktemp -d"))
    local dir = mk:read("*l")
    mk:close()
    local f = assert(io.open(dir .. "/resolv.conf", "w"))
    f:write("nameserver 127.0.0.1\noptions timeout:3 attempts:1\n")
    f:close()
    f = assert(io.open(dir .. "/child.lua", "w"))
    f:write("package.cpath = ", string.format("%q", package.cpath), "\n", [[
      local socket = require "socket"
      local luws = require "luws"
      -- A black hole on port 53: queries queue up, nothing ever answers.
      local hole = assert(socket.udp())
      assert(hole:setsockname("127.0.0.1", 53))
      local t0 = socket.gettime()
      local ok, err = luws.wsopen("ws://luws-test.example/", function() end, { connect_timeout = 0.5 })
      io.write(string.format("%s|%s|%.3f\n", tostring(ok), tostring(err), socket.gettime() - t0))
    ]])
    f:close()
    local lua = os.getenv("LUWS_LUA") or "lua5.1"
    local p = io.popen("timeout 20 unshare -mn sh -c 'ip link set lo up && mount --bind " ..
      dir .. "/resolv.conf /etc/resolv.conf && exec " .. lua .. " " .. dir .. "/child.lua' 2>&1")
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf '" .. dir .. "'")
    local ok, err, t = out:match("^(%a+)|(.-)|([%d.]+)\n")
    assert.equal("false", ok, out)
    assert.equal("Connection to luws-test.example:80 failed: timeout", err)
    assert.is_true(tonumber(t) < 1.5, "took " .. t .. " s (the resolver's own timeout is 3 s)")
  end)

  describe("a protocol violation fails the connection with the RFC close code", function()
    local cases = {
      { "/badutf8", "invalid UTF-8 in text message", "close 1007" },
      { "/badutf8-frag", "invalid UTF-8 in text message", "close 1007" },
      { "/rsv", "protocol error: reserved bits set", "close 1002" },
      { "/badopcode", "protocol error: unknown opcode", "close 1002" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " -> " .. c[3], function()
        local id = H.id()
        local handler, got = H.recorder()
        local conn = H.open(with_id(bad, c[1], id), handler)
        local t, err = until_failure(conn, got)
        assert.equal(c[2], err)
        assert.same({ { false, "receiver error: " .. c[2] } }, got)
        assert.is_true(t < 1, "took " .. t)
        local log = bad:log(id, "close")
        assert.equal(c[3], log[#log])
        assert_closed(conn)
        assert.same({ false, "not connected" }, { luws.wssend(conn, 1, "x") })
      end)
    end
  end)
end)
