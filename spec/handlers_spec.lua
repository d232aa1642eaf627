-- Handlers: arguments, control_handler, errors inside handlers, and re-entrant calls.
local H = spec_helper
local luws = H.luws

describe("handlers", function()
  local bad, echo
  setup(function()
    bad = H.server("bad")
    echo = H.server("echo")
  end)

  it("receive the conn, the opcode, the data and handler_args", function()
    local seen
    local conn
    conn = H.open(echo.url("/"), function(c, op, data, a, b)
      seen = { c == conn, op, data, a, b }
    end, { handler_args = { "first", 2 } })
    luws.wssend(conn, 1, "hi")
    assert.is_true(H.pump(conn, function() return seen ~= nil end))
    assert.same({ true, 1, "hi", "first", 2 }, seen)
    luws.wsclose(conn)
  end)

  it("an error raised in a handler is logged and the following messages still arrive", function()
    local got = {}
    local logged = {}
    _G.luup = { log = function(msg, level) logged[#logged + 1] = msg end }
    local conn = H.open(echo.url("/"), function(c, op, data)
      got[#got + 1] = data
      if data == "boom" then error("handler exploded") end
    end)
    for _, m in ipairs({ "one", "boom", "three" }) do luws.wssend(conn, 1, m) end
    local ok = H.pump(conn, function() return #got >= 3 end)
    _G.luup = nil
    assert.is_true(ok)
    assert.same({ "one", "boom", "three" }, got)
    assert.equal(1, #logged)
    assert.matches("^luws: message handler error: .*handler exploded", logged[1])
    assert.is_true(luws.wssend(conn, 1, "connection intact"))
    luws.wsclose(conn)
  end)

  it("handler_args too many for the Lua stack: each message is handled or logged, never lost", function()
    local calls, logged = 0, {}
    _G.luup = { log = function(msg, level) logged[#logged + 1] = msg end }
    -- Past the stack limit of LuaJIT and 5.1 (8,000 slots) and 5.2–5.4 (1,000,000): the call
    -- cannot be made and is logged (5.5 makes room, then the call overflows: logged too).
    local args = {}
    for i = 1, 1000001 do args[i] = i end
    local conn = H.open(echo.url("/"), function(c, op, data, ...)
      assert(select("#", ...) == #args)
      calls = calls + 1
    end, { handler_args = args })
    for _, m in ipairs({ "one", "two" }) do luws.wssend(conn, 1, m) end
    local ok = H.pump(conn, function() return calls + #logged >= 2 end)
    _G.luup = nil
    assert.is_true(ok)
    assert.equal(2, calls + #logged)
    for _, line in ipairs(logged) do
      assert.matches("^luws: message handler error: ", line)
    end
    assert.is_true(luws.wssend(conn, 1, "connection intact"))
    luws.wsclose(conn)
  end)

  it("may call wssend on its own connection", function()
    local got = {}
    local conn = H.open(echo.url("/"), function(c, op, data)
      got[#got + 1] = data
      if data == "ping-me" then assert(luws.wssend(c, 1, "reply")) end
    end)
    luws.wssend(conn, 1, "ping-me")
    assert.is_true(H.pump(conn, function() return #got >= 2 end))
    assert.same({ "ping-me", "reply" }, got)
    luws.wsclose(conn)
  end)

  it("may call wsreceive on its own connection", function()
    local got = {}
    local conn
    conn = H.open(echo.url("/"), function(c, op, data)
      got[#got + 1] = data
      luws.wsreceive(c)
    end)
    for i = 1, 5 do luws.wssend(conn, 1, "m" .. i) end
    assert.is_true(H.pump(conn, function() return #got >= 5 end))
    assert.same({ "m1", "m2", "m3", "m4", "m5" }, got)
    luws.wsclose(conn)
  end)

  it("may call wsclose on its own connection; wsreceive then ends quietly", function()
    local got = {}
    local conn = H.open(bad.url("/push?count=5&size=3&then=none&id=" .. H.id()), function(c, op, data)
      got[#got + 1] = data
      luws.wsclose(c)
    end)
    local deadline = H.socket.gettime() + 5
    local more, n
    repeat
      more, n = luws.wsreceive(conn)
      if more == false and #got == 0 then luws.wait({ conn }, 0.05) end
    until #got > 0 or H.socket.gettime() > deadline
    assert.equal(1, #got)
    assert.is_false(more)
    assert.same({ nil, "not connected" }, { luws.wsreceive(conn) })
  end)

  describe("control_handler", function()
    it("sees pings before the automatic pong", function()
      local seen = {}
      local id = H.id()
      local conn = H.open(bad.url("/pingpong?payload=xyz&id=" .. id), function() end, {
        control_handler = function(c, op, data) seen[#seen + 1] = { op, data } end,
      })
      assert.is_true(H.pump(conn, function() return #seen >= 1 end))
      assert.same({ 9, "xyz" }, seen[1])
      local log = bad:log(id, "pong")
      assert.equal("pong xyz", log[#log])
      luws.wsclose(conn)
    end)

    it("returning false suppresses the closed notification, but the Close is still answered", function()
      local handler, got = H.recorder()
      local seen = {}
      local id = H.id()
      local conn = H.open(bad.url("/close?code=4001&reason=x&id=" .. id), handler, {
        control_handler = function(c, op, data)
          seen[#seen + 1] = { op, data }
          return false
        end,
      })
      local ok, err = H.pump(conn, function() return false end)
      assert.is_nil(ok)
      assert.equal("closed", err)
      assert.same({ { 8, "\15\161x" } }, seen)
      assert.same({}, got)
      local log = bad:log(id, "close")
      assert.matches("^close 4001", log[#log])
    end)

    it("a custom pong sent from it replaces the automatic one", function()
      local id = H.id()
      local conn = H.open(bad.url("/pingpong?payload=abc&id=" .. id), function() end, {
        control_handler = function(c, op, data)
          if op == 9 then luws.wssend(c, 10, "custom") return false end
        end,
      })
      H.pump(conn, function() return false end, 0.3)
      local log = bad:log(id, "pong")
      local pongs = {}
      for _, l in ipairs(log) do if l:match("^pong") then pongs[#pongs + 1] = l end end
      assert.same({ "pong custom" }, pongs)
      luws.wsclose(conn)
    end)
  end)
end)
