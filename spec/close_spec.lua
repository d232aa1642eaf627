-- wsclose and the connection's life: closing handshake, idempotence, garbage collection, methods.
local H = spec_helper
local luws = H.luws

describe("wsclose", function()
  local bad, echo
  setup(function()
    bad = H.server("bad")
    echo = H.server("echo")
  end)

  it("sends Close 1000 and closes the socket", function()
    local id = H.id()
    local conn = H.open(bad.url("/echo?id=" .. id), function() end)
    local fd = conn:getfd()
    assert.is_true(fd >= 0)
    luws.wsclose(conn)
    assert.equal(-1, conn:getfd())
    local log = bad:log(id, "close")
    assert.equal("close 1000", log[#log])
  end)

  it("waits only a bounded moment for a peer that never answers the Close", function()
    local conn = H.open(bad.url("/silence?id=" .. H.id()), function() end, { close_timeout = 0.3 })
    local t = H.elapsed(function() luws.wsclose(conn) end)
    assert.is_true(t < 1.5, "took " .. t)
    assert.equal(-1, conn:getfd())
  end)

  it("is safe twice, on nil, and after the peer closed", function()
    local conn = H.open(echo.url("/"), function() end)
    luws.wsclose(conn)
    luws.wsclose(conn)
    luws.wsclose(nil)
    local c2 = H.open(bad.url("/close?code=1000&id=" .. H.id()), function() end)
    H.pump(c2, function() return false end, 5)
    luws.wsclose(c2)
  end)

  it("a connection dropped without wsclose closes its socket when collected", function()
    local id = H.id()
    local fd, target
    do
      local conn = H.open(bad.url("/echo?id=" .. id), function() end)
      fd = conn:getfd()
      target = H.fd_target(fd)
      assert.matches("^socket:", target)
    end
    collectgarbage()
    collectgarbage()
    assert.not_equal(target, H.fd_target(fd))
    local log = bad:log(id, "close")
    assert.equal("close 1001", log[#log])
  end)

  it("a handler that refers to its own conn does not keep it alive", function()
    local fd, target
    do
      local conn
      conn = H.open(echo.url("/"), function(c) local _ = conn end)
      fd = conn:getfd()
      target = H.fd_target(fd)
    end
    collectgarbage()
    collectgarbage()
    assert.not_equal(target, H.fd_target(fd))
  end)

  it("the hot calls reach the right conn after the conn they saw last was collected", function()
    -- wssend, wsreceive, wait and the methods remember the conn they saw last; once it is
    -- collected, a new conn (often in the same memory) must be recognised afresh.
    local reused = 0
    for round = 1, 20 do
      local old_fd
      do
        local old = H.open(echo.url("/"), function() end)
        old_fd = old:getfd()
        assert.is_true(luws.wssend(old, 1, "old"))
        luws.wait({ old }, 0)
        luws.wsreceive(old)
        old:dirty()
      end
      collectgarbage()
      collectgarbage()
      local got = {}
      local conn = H.open(echo.url("/"), function(c, op, data) got[#got + 1] = { c, op, data } end)
      if conn:getfd() == old_fd then reused = reused + 1 end
      assert.is_true(luws.wssend(conn, 1, "new " .. round))
      assert.is_true(H.pump(conn, function() return #got >= 1 end))
      assert.equal(conn, got[1][1])
      assert.same({ 1, "new " .. round }, { got[1][2], got[1][3] })
      assert.is_true(conn:send(1, "again"))
      assert.same({ conn }, luws.wait({ conn }, 5))
      assert.is_true(H.pump(conn, function() return #got >= 2 end))
      assert.equal("again", got[2][3])
      luws.wsclose(conn)
    end
    -- The old conn's descriptor was free again for the new one: it was really collected.
    assert.is_true(reused > 0, "no round reused the collected conn's descriptor")
  end)

  it("offers methods: send, receive, close, getfd, dirty, lastping", function()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler)
    assert.is_true(conn:send(1, "via method"))
    local deadline = H.socket.gettime() + 5
    while #got == 0 and H.socket.gettime() < deadline do
      conn:receive()
      luws.wait({ conn }, 0.05)
    end
    assert.same({ 1, "via method" }, got[1])
    assert.is_false(conn:dirty())
    assert.is_number(conn:lastping())
    conn:close()
    assert.same({ false, "not connected" }, { conn:send(1, "x") })
  end)
end)
