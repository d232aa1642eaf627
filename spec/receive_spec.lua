-- wsreceive: non-blocking receive, reassembly, control frames, limits and peer failures.
local H = spec_helper
local luws = H.luws

describe("wsreceive", function()
  local bad, echo
  setup(function()
    bad = H.server("bad")
    echo = H.server("echo")
  end)

  it("returns false, 0 at once when nothing is waiting", function()
    local conn = H.open(bad.url("/silence?id=" .. H.id()), function() end)
    local t, more, n = H.elapsed(function() return luws.wsreceive(conn) end)
    assert.is_false(more)
    assert.equal(0, n)
    assert.is_true(t < 0.05, "took " .. t .. " s")
    luws.wsclose(conn)
  end)

  it("delivers text as opcode 1 and binary as opcode 2, with the byte count", function()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler)
    assert.is_true(luws.wssend(conn, 1, "héllo"))
    assert.is_true(luws.wssend(conn, 2, "\0\1\2\255"))
    assert.is_true(H.pump(conn, function() return #got >= 2 end))
    assert.same({ 1, "héllo" }, got[1])
    assert.same({ 2, "\0\1\2\255" }, got[2])
    luws.wsclose(conn)
  end)

  it("delivers every message that arrived together with the server's FIN before the close", function()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/push?count=50&size=100&then=fin&id=" .. H.id()), handler)
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.equal(51, #got)
    for i = 1, 50 do
      assert.equal(1, got[i][1])
      assert.equal(100, #got[i][2])
    end
    assert.same({ false, "receiver error: closed" }, got[51])
  end)

  it("delivers messages sent before a Close frame, then reports the close", function()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/push?count=3&size=10&then=close&id=" .. H.id()), handler)
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.equal(4, #got)
    assert.same({ false, "receiver error: closed" }, got[4])
  end)

  it("reassembles a fragmented message and answers the ping inside it with the same payload", function()
    local id = H.id()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/fragmented?id=" .. id), handler)
    assert.is_true(H.pump(conn, function() return #got >= 1 end))
    assert.same({ 1, "Hello, fragmented world" }, got[1])
    local log = bad:log(id, "pong")
    assert.equal("pong ping-in-the-middle", log[#log])
    luws.wsclose(conn)
  end)

  it("answers a ping with a pong echoing its payload", function()
    local id = H.id()
    local conn = H.open(bad.url("/pingpong?payload=abc&id=" .. id), function() end)
    H.pump(conn, function() return false end, 0.3)
    local log = bad:log(id, "pong")
    assert.equal("pong abc", log[#log])
    luws.wsclose(conn)
  end)

  it("answers a Close with a Close echoing its code, tells the handler, and closes the socket", function()
    local id = H.id()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/close?code=4000&reason=bye&id=" .. id), handler)
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.same({ { false, "receiver error: closed" } }, got)
    local log = bad:log(id, "close")
    assert.matches("^close 4000", log[#log])
    assert.equal(-1, conn:getfd())
    assert.same({ false, "closing" }, { luws.wssend(conn, 1, "x") }, "after the peer's close")
  end)

  it("answers a Close without a code with a Close without a code", function()
    local id = H.id()
    local conn = H.open(bad.url("/close?id=" .. id), function() end)
    H.pump(conn, function() return false end, 5)
    local log = bad:log(id, "close")
    assert.matches("^close none", log[#log])
  end)

  it("reports message timeout after receive_timeout seconds of silence", function()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/silence?id=" .. H.id()), handler, { receive_timeout = 0.3 })
    local t, ok, err = H.elapsed(function() return H.pump(conn, function() return false end, 5) end)
    assert.is_nil(ok)
    assert.equal("message timeout", err)
    assert.same({ { false, "message timeout" } }, got)
    assert.is_true(t >= 0.25 and t < 2, "took " .. t)
    assert.equal(-1, conn:getfd())
  end)

  describe("fails the connection with the RFC close code", function()
    local cases = {
      { "/masked", "receiver error: protocol error: masked frame from server", "close 1002" },
      { "/rsv", "receiver error: protocol error: reserved bits set", "close 1002" },
      { "/badopcode", "receiver error: protocol error: unknown opcode", "close 1002" },
      { "/bigping", "receiver error: protocol error: control frame too big", "close 1002" },
      { "/badutf8", "receiver error: invalid UTF-8 in text message", "close 1007" },
      { "/badutf8-frag", "receiver error: invalid UTF-8 in text message", "close 1007" },
      { "/huge?len=1000000", "receiver error: message of 1000000 bytes exceeds max_payload_size 65535", "close 1009" },
      { "/huge?len=9000000000", "receiver error: message of 9000000000 bytes exceeds max_payload_size 65535", "close 1009" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local id = H.id()
        local handler, got = H.recorder()
        local conn = H.open(bad.url(c[1] .. (c[1]:find("?", 1, true) and "&" or "?") .. "id=" .. id), handler)
        local ok, err = H.pump(conn, function() return false end, 5)
        assert.is_nil(ok)
        assert.equal(c[2]:gsub("^receiver error: ", ""), err)
        assert.same({ { false, c[2] } }, got)
        local log = bad:log(id, "close")
        assert.matches("^" .. c[3], log[#log])
      end)
    end
  end)

  it("fails a reassembled message over max_payload_size with 1009 instead of truncating it", function()
    local id = H.id()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, { max_payload_size = 1000 })
    -- The echo server returns our 3 fragments as one 1500-byte message.
    assert.is_true(luws.wssend(conn, 1, string.rep("a", 1500)))
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("message of 1500 bytes exceeds max_payload_size 1000", err)
    assert.same({ { false, "receiver error: message of 1500 bytes exceeds max_payload_size 1000" } }, got)
  end)

  it("reports a reset in the middle of a frame as closed", function()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/reset?id=" .. H.id()), handler)
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.same({ { false, "receiver error: closed" } }, got)
  end)

  it("stops after its read budget and says more is waiting", function()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/push?count=200&size=1000&then=none&id=" .. H.id()), handler,
      { receive_budget = 8192 })
    local saw_more = false
    assert.is_true(H.pump(conn, function() return #got >= 200 end, 5) and true)
    -- A fresh burst: a call that stops with data pending returns true and at most the budget.
    luws.wssend(conn, 1, string.rep("b", 60000))
    local deadline = H.socket.gettime() + 5
    local total = 0
    repeat
      local more, n = luws.wsreceive(conn)
      assert.is_true(n <= 8192)
      total = total + n
      if more then saw_more = true; assert.is_true(conn:dirty()) end
      if not more then luws.wait({ conn }, 0.05) end
    until #got >= 201 or H.socket.gettime() > deadline
    assert.is_true(saw_more)
    assert.equal(60000, #got[201][2])
    luws.wsclose(conn)
  end)

  it("keeps a message that trickles in one byte at a time", function()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/trickle?msg=hey&id=" .. H.id()), handler)
    assert.is_true(H.pump(conn, function() return #got >= 1 end, 10))
    assert.same({ 1, "hey" }, got[1])
    luws.wsclose(conn)
  end)

  it("records the time of the last frame for wslastping", function()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler)
    local before = luws.wslastping(conn)
    assert.is_true(math.abs(before - os.time()) < 5)
    H.socket.sleep(0.05)
    luws.wssend(conn, 1, "x")
    H.pump(conn, function() return #got >= 1 end)
    assert.is_true(luws.wslastping(conn) > before)
    assert.equal(0, luws.wslastping(nil))
    luws.wsclose(conn)
  end)

  it("returns nil, not connected on a closed or nil connection", function()
    local conn = H.open(echo.url("/"), function() end)
    luws.wsclose(conn)
    assert.same({ nil, "not connected" }, { luws.wsreceive(conn) })
    assert.same({ nil, "not connected" }, { luws.wsreceive(nil) })
  end)
end)
