-- Bounded output: a peer that never reads cannot make luws buffer without limit, pending output
-- that makes no progress fails the connection, and a connection whose send side is full never
-- makes wsreceive block.
--
-- Regressions pinned here:
--  * Unbounded pong queue: every ping from a peer that never reads got a pong appended to
--    tungstenite's write buffer, which had no cap. RSS grew by ~+202 MiB after 200 MB of pings:
--    the whole flood, kept as pongs. Now the buffer is capped (1 MiB of pending output per
--    connection) and only the latest pong waits beyond it.
--  * Pending output that never drained never failed the connection: send_timeout only limited
--    wssend itself. Now output that makes no progress for send_timeout ends the connection with
--    "send error: timeout".
--  * With send_timeout = 0, wssend buffered without limit. Now it returns
--    "send error: buffer full" and the connection stays usable.
--  * wsreceive blocking for close_timeout: when a peer's Close arrived while our send side was
--    full, wsreceive waited (up to close_timeout) to get our Close echo out. A protocol error
--    (a masked frame, bad UTF-8) waited up to 200 ms. Now every call returns at once and the
--    socket is closed within close_timeout, across the later calls.
--
-- Peers: bad_server.py /pingflood (pings, never reads) and /stallclose (never reads, then a
-- Close, a masked frame or bad UTF-8). Their "rx-quiet" log lines give the wall time at which
-- our output stopped reaching them.
local H = spec_helper
local luws = H.luws
local gettime = H.socket.gettime

local MSG = string.rep("m", 60000) -- under the default max_payload_size, so echoes come back
local CAP_KIB = 1024

--- The url of `path` on `server` with `id` appended to its query.
local function with_id(server, path, id)
  return server.url(path .. (path:find("?", 1, true) and "&" or "?") .. "id=" .. id)
end

--- Sends MSG with send_timeout = 0 until wssend fails or `limit` messages went.
--- Returns the number accepted, the failure (or nil) and the peak RSS growth in KiB.
local function fill(conn, limit)
  local r0, peak = H.rss(), 0
  local accepted, ok, err = 0, true, nil
  while accepted < limit do
    ok, err = luws.wssend(conn, 2, MSG)
    local g = H.rss() - r0
    if g > peak then peak = g end
    if not ok then break end
    accepted = accepted + 1
  end
  if ok then err = nil end
  return accepted, err, peak
end

--- Calls wsreceive until it returns nil (at most `limit` s). Returns the time it did (nil if it
--- never did), its error, and the longest call as { seconds, call number }.
local function receive_until_end(conn, limit)
  local deadline = gettime() + limit
  local slowest, calls = { 0, 0 }, 0
  while gettime() < deadline do
    local t0 = gettime()
    local more, err = luws.wsreceive(conn)
    local t1 = gettime()
    calls = calls + 1
    if t1 - t0 > slowest[1] then slowest = { t1 - t0, calls } end
    if more == nil then return t1, err, slowest end
    if not more then luws.wait({ conn }, 0.02) end
  end
  return nil, nil, slowest
end

--- Asserts `slowest` (from receive_until_end or later calls) stayed under 50 ms.
local function assert_quick(slowest, what)
  assert.is_true(slowest[1] < 0.05, string.format("%s: wsreceive call %d took %.3f s",
    what, slowest[2], slowest[1]))
end

describe("bounded output", function()
  local bad
  setup(function() bad = H.servers.start("bad") end)
  teardown(function() if bad then bad:stop() end end)

  it("answers a 200 MB ping flood from a peer that never reads with RSS growing by less than 8 MiB", function()
    local id = H.id()
    local ended
    local conn = H.open(with_id(bad, "/pingflood?bytes=200000000&then=close&hold=1", id),
      function(_, op, data) if not op then ended = data end end,
      { send_timeout = 30, close_timeout = 1 })
    finally(function() luws.wsclose(conn) end)
    collectgarbage()
    collectgarbage()
    local r0, peak = H.rss(), 0
    local t0 = gettime()
    local ok, err = H.pump(conn, function()
      local g = H.rss() - r0
      if g > peak then peak = g end
      return ended ~= nil
    end, 30)
    local t = gettime() - t0
    io.write(string.format("\n[bounded_output] 200 MB ping flood: RSS +%.1f MiB (peak), %.2f s\n",
      peak / 1024, t))
    assert.is_true(ok, "the flood did not end within 30 s: " .. tostring(err))
    assert.equal("receiver error: closed", ended) -- the peer's Close after the whole flood
    local log, sent = bad:log(id, "sent "), 0
    for _, l in ipairs(log) do sent = tonumber(l:match("^sent (%d+)$")) or sent end
    assert.is_true(sent >= 200000000, "the peer did not send the whole flood: " .. table.concat(log, ", "))
    assert.is_true(peak < 8 * 1024, string.format("RSS grew by %.1f MiB", peak / 1024))
    local tc = H.elapsed(function() luws.wsclose(conn) end)
    assert.is_true(tc <= 1.5, "wsclose took " .. tc)
    local pongs = 0
    log = bad:log(id, "pongs", 10)
    for _, l in ipairs(log) do pongs = tonumber(l:match("^pongs (%d+)$")) or pongs end
    assert.is_true(pongs > 0, "the peer got no pongs: " .. table.concat(log, ", "))
  end)

  it("fails the connection with send error: timeout when pending output makes no progress for send_timeout", function()
    local id = H.id()
    local handler, got = H.recorder()
    local t_open = gettime()
    local conn = H.open(with_id(bad, "/pingflood?bytes=64000000&then=hold&hold=6", id), handler,
      { send_timeout = 1, close_timeout = 0.5 })
    finally(function() luws.wsclose(conn) end)
    local ok, err = H.pump(conn, function() return false end, 5)
    local t_err = gettime()
    assert.is_nil(ok, "wsreceive did not fail within 5 s")
    assert.equal("send error: timeout", err)
    assert.same({ { false, "send error: timeout" } }, got)
    -- When our output stopped reaching the peer: its last "rx-quiet" before the failure.
    local t_stall
    for _, l in ipairs(bad:log(id, "rx-quiet", 5)) do
      local t = tonumber(l:match("^rx%-quiet %d+ ([%d.]+)$") or "")
      if t and t <= t_err then t_stall = t end
    end
    assert.is_number(t_stall, "the peer saw no stall: " .. table.concat(bad:log(id), ", "))
    local dt = t_err - t_stall
    io.write(string.format("\n[bounded_output] send error: timeout %.2f s after the send side stalled" ..
      " (send_timeout 1; %.2f s after wsopen)\n", dt, t_err - t_open))
    assert.is_true(dt >= 0.5 and dt < 3, string.format("send error: timeout %.2f s after the stall", dt))
    assert.equal(-1, conn:getfd())
    assert.same({ nil, "send error: timeout" }, { luws.wsreceive(conn) }, "the ending is kept")
  end)

  it("with send_timeout = 0 refuses a message that would exceed the cap (send error: buffer full) and stays usable", function()
    local id = H.id()
    local bins, texts = 0, {}
    local conn = H.open(with_id(bad, "/slowread?pause=2", id), function(_, op, data)
      if op == 2 and #data == #MSG then bins = bins + 1 elseif op == 1 then texts[#texts + 1] = data
      else texts[#texts + 1] = tostring(op) .. ":" .. (op and #data .. " bytes" or data) end
    end, { send_timeout = 0, close_timeout = 1 })
    finally(function() luws.wsclose(conn) end)
    collectgarbage()
    collectgarbage()
    local t0 = gettime()
    local accepted, err, growth = fill(conn, 1000) -- at most 60 MB
    io.write(string.format("\n[bounded_output] send_timeout = 0: %d x 60000 B accepted, then %s;" ..
      " RSS +%.2f MiB\n", accepted, tostring(err), growth / 1024))
    assert.equal("send error: buffer full", err, "after " .. accepted .. " messages")
    assert.is_true(gettime() - t0 < 1, "filling took " .. (gettime() - t0))
    -- within the cap plus one message, plus 1 MiB of allocator slack
    assert.is_true(growth < CAP_KIB + #MSG / 1024 + 1024,
      string.format("RSS grew by %.2f MiB", growth / 1024))
    assert.is_true(conn:isopen())
    assert.is_true(conn:getfd() >= 0)
    local more = luws.wsreceive(conn)
    assert.is_not_nil(more, "wsreceive failed after buffer full")
    -- The peer starts reading after 2 s: what was accepted drains, a later wssend succeeds.
    local deadline = gettime() + 10
    local ok2, err2 = luws.wssend(conn, 1, "after")
    while not ok2 and gettime() < deadline do
      assert.equal("send error: buffer full", err2)
      assert.is_not_nil(luws.wsreceive(conn))
      luws.wait({ conn }, 0.05)
      ok2, err2 = luws.wssend(conn, 1, "after")
    end
    assert.is_true(ok2, "wssend still failing 10 s later: " .. tostring(err2))
    assert.is_true(H.pump(conn, function() return #texts >= 1 end, 10), "no echo of the later message")
    -- every accepted message came back whole and once, the refused one never went out
    assert.equal(accepted, bins)
    assert.same({ "after" }, texts)
  end)

  describe("a peer's Close, masked frame or bad UTF-8 arriving while our send side is full", function()
    local cases = {
      { "close", "closed" },
      { "masked", "protocol error: masked frame from server" },
      { "badutf8", "invalid UTF-8 in text message" },
    }
    for _, c in ipairs(cases) do
      local path, why = "/stallclose?after=0.5&then=" .. c[1], c[2]
      local want = { { false, "receiver error: " .. why } }

      it(c[1] .. ": with close_timeout = 10 every wsreceive returns within 50 ms, the first reports the end", function()
        local id = H.id()
        local handler, got = H.recorder()
        local conn = H.open(with_id(bad, path .. "&hold=1", id), handler,
          { send_timeout = 0, close_timeout = 10 })
        finally(function() luws.wsclose(conn) end)
        local fd = conn:getfd()
        local target = H.fd_target(fd)
        local _, filled = fill(conn, 300)
        local t_end, err, slowest = receive_until_end(conn, 4)
        assert.is_number(t_end, "wsreceive did not report the end within 4 s")
        assert_quick(slowest, "until the end")
        assert.equal(why, err)
        assert.same(want, got)
        -- later calls: nil at once, the same ending, no more handler calls
        local later = { 0, 0 }
        for i = 1, 10 do
          local t, a, b = H.elapsed(function() return luws.wsreceive(conn) end)
          if t > later[1] then later = { t, i } end
          assert.same({ nil, why }, { a, b }, "later call " .. i)
          H.socket.sleep(0.03)
        end
        assert_quick(later, "after the end")
        assert.same(want, got)
        local tc = H.elapsed(function() luws.wsclose(conn) end)
        assert.is_true(tc <= 10.5, "wsclose took " .. tc)
        assert.equal(-1, conn:getfd())
        assert.is_true(H.fd_target(fd) ~= target, "the socket is still open after wsclose")
        assert.equal("send error: buffer full", filled, "the send side was not full")
      end)

      it(c[1] .. ": with close_timeout = 1 the socket is closed within close_timeout while wsreceive keeps being called", function()
        local id = H.id()
        local handler, got = H.recorder()
        local conn = H.open(with_id(bad, path .. "&hold=5", id), handler,
          { send_timeout = 0, close_timeout = 1 })
        finally(function() luws.wsclose(conn) end)
        local fd = conn:getfd()
        local target = H.fd_target(fd)
        assert.truthy(target and target:match("^socket:"), tostring(target))
        local _, filled = fill(conn, 300)
        local t_end, err, slowest = receive_until_end(conn, 4)
        assert.is_number(t_end, "wsreceive did not report the end within 4 s")
        assert_quick(slowest, "until the end")
        assert.equal(why, err)
        assert.same(want, got)
        local t_gone, later = nil, { 0, 0 }
        local i = 0
        while gettime() < t_end + 1.5 do
          i = i + 1
          local t, a = H.elapsed(function() return luws.wsreceive(conn) end)
          if t > later[1] then later = { t, i } end
          assert.is_nil(a, "later call " .. i)
          if not t_gone and H.fd_target(fd) ~= target then t_gone = gettime() end
          H.socket.sleep(0.02)
        end
        assert_quick(later, "after the end")
        assert.same(want, got)
        assert.equal(-1, conn:getfd())
        assert.is_number(t_gone, "the socket is still open 1.5 s after the end (close_timeout 1)")
        assert.is_true(t_gone - t_end < 1.3, string.format("socket closed %.2f s after the end", t_gone - t_end))
        assert.equal("send error: buffer full", filled, "the send side was not full")
      end)

      it(c[1] .. ": wsclose right after the end waits at most close_timeout", function()
        local id = H.id()
        local handler, got = H.recorder()
        local conn = H.open(with_id(bad, path .. "&hold=5", id), handler,
          { send_timeout = 0, close_timeout = 1 })
        local fd = conn:getfd()
        local target = H.fd_target(fd)
        local _, filled = fill(conn, 300)
        local t_end, err, slowest = receive_until_end(conn, 4)
        assert.is_number(t_end, "wsreceive did not report the end within 4 s")
        assert_quick(slowest, "until the end")
        assert.equal(why, err)
        local tc = H.elapsed(function() luws.wsclose(conn) end)
        assert.is_true(tc <= 1.3, string.format("wsclose took %.2f s (close_timeout 1)", tc))
        assert.equal(-1, conn:getfd())
        assert.is_true(H.fd_target(fd) ~= target, "the socket is still open after wsclose")
        assert.same(want, got)
        assert.equal("send error: buffer full", filled, "the send side was not full")
      end)
    end
  end)
end)
