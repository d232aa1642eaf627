-- wssend: text, binary, control frames, LTN12 sources, any size, and its failures.
local H = spec_helper
local luws = H.luws

describe("wssend", function()
  local bad, echo
  setup(function()
    bad = H.server("bad")
    echo = H.server("echo")
  end)

  local function roundtrip(opcode, data, opts)
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, opts)
    assert.same({ true }, { luws.wssend(conn, opcode, data) })
    assert.is_true(H.pump(conn, function() return #got >= 1 end, 10))
    luws.wsclose(conn)
    return got[1]
  end

  for _, size in ipairs({ 0, 125, 126, 65535, 65536, 1000000 }) do
    it("sends a binary message of " .. size .. " bytes (7-, 16- and 64-bit lengths)", function()
      local data = string.rep("\0\1\2\3", math.floor(size / 4)) .. string.rep("z", size % 4)
      local got = roundtrip(2, data, { max_payload_size = 2 * 1024 * 1024 })
      assert.equal(2, got[1])
      assert.equal(size, #got[2])
      assert.equal(data, got[2])
    end)
  end

  it("sends a 16 MiB text message", function()
    local data = string.rep("0123456789abcdef", 1024 * 1024)
    local got = roundtrip(1, data, { max_payload_size = 32 * 1024 * 1024 })
    assert.equal(1, got[1])
    assert.equal(#data, #got[2])
    assert.is_true(got[2] == data)
  end)

  it("drains an LTN12 source into one message", function()
    local parts = { "alpha ", "beta ", "gamma" }
    local i = 0
    local source = function()
      i = i + 1
      return parts[i]
    end
    assert.same({ 1, "alpha beta gamma" }, roundtrip(1, source))
  end)

  it("fails without sending when an LTN12 source reports an error", function()
    local conn = H.open(echo.url("/"), function() end)
    local n = 0
    local ok, err = luws.wssend(conn, 1, function()
      n = n + 1
      if n == 1 then return "part" end
      return nil, "disk gone"
    end)
    assert.is_false(ok)
    assert.equal("send error: source: disk gone", err)
    assert.is_true(luws.wssend(conn, 1, "still open"))
    luws.wsclose(conn)
  end)

  it("sends a ping whose pong comes back to the control handler", function()
    local seen = {}
    local conn = H.open(echo.url("/"), function() end, {
      control_handler = function(c, op, data) seen[#seen + 1] = { op, data } end,
    })
    assert.is_true(luws.wssend(conn, 9, "are you there"))
    assert.is_true(H.pump(conn, function() return #seen >= 1 end))
    assert.same({ 10, "are you there" }, seen[1])
    luws.wsclose(conn)
  end)

  it("refuses control payloads over 125 bytes and bad close bodies", function()
    local conn = H.open(echo.url("/"), function() end)
    assert.same({ false, "send error: control frame payload over 125 bytes" },
      { luws.wssend(conn, 9, string.rep("p", 126)) })
    assert.same({ false, "send error: close payload must be empty or a valid 2-byte code and UTF-8 reason" },
      { luws.wssend(conn, 8, "\3") })
    assert.same({ false, "send error: invalid UTF-8 in text message" }, { luws.wssend(conn, 1, "\255\254") })
    assert.is_true(luws.wssend(conn, 1, "the connection is still usable"))
    luws.wsclose(conn)
  end)

  it("sends a Close with a code; then answers closing", function()
    local id = H.id()
    local conn = H.open(bad.url("/echo?id=" .. id), function() end)
    assert.is_true(luws.wssend(conn, 8, "\15\160going")) -- 4000 "going"
    assert.same({ false, "closing" }, { luws.wssend(conn, 1, "late") })
    local log = bad:log(id, "close")
    assert.equal("close 4000 going", log[#log])
    luws.wsclose(conn)
  end)

  it("answers not connected after wsclose and for a nil connection", function()
    local conn = H.open(echo.url("/"), function() end)
    luws.wsclose(conn)
    assert.same({ false, "not connected" }, { luws.wssend(conn, 1, "x") })
    assert.same({ false, "not connected" }, { luws.wssend(nil, 1, "x") })
  end)

  it("raises for an opcode or data of the wrong kind", function()
    local conn = H.open(echo.url("/"), function() end)
    local ok, err = pcall(luws.wssend, conn, 3, "x")
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'wssend' %(opcode must be 1, 2, 8, 9 or 10%)", tostring(err))
    ok, err = pcall(luws.wssend, conn, 1, {})
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'wssend' %(string or function expected, got table%)", tostring(err))
    ok, err = pcall(luws.wssend, "conn", 1, "x")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'wssend' %(luws connection expected, got string%)", tostring(err))
    luws.wsclose(conn)
  end)

  it("gives up within send_timeout on a peer that stops reading", function()
    local conn = H.open(bad.url("/slowread?id=" .. H.id()), function() end, { send_timeout = 0.5 })
    local chunk = string.rep("x", 1024 * 1024)
    local t0 = H.socket.gettime()
    local ok, err
    for _ = 1, 64 do
      ok, err = luws.wssend(conn, 2, chunk)
      if not ok then break end
    end
    local t = H.socket.gettime() - t0
    assert.is_false(ok)
    assert.equal("send error: timeout", err)
    assert.is_true(t < 10, "took " .. t)
    assert.same({ false, "not connected" }, { luws.wssend(conn, 1, "x") })
    luws.wsclose(conn)
  end)

  it("with send_timeout = 0 never waits: what the socket cannot take goes out on later calls", function()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, { send_timeout = 0, max_payload_size = 8 * 1024 * 1024 })
    local data = string.rep("y", 4 * 1024 * 1024)
    local t, ok = H.elapsed(function() return luws.wssend(conn, 2, data) end)
    assert.is_true(ok)
    assert.is_true(H.pump(conn, function() return #got >= 1 end, 10))
    assert.equal(#data, #got[1][2])
    luws.wsclose(conn)
  end)
  -- LuWS's opt-out for trivial servers that cannot unmask (it breaks RFC 6455 §5.3, so the
  -- project's strict server notices and fails the connection with 1002, which proves it).
  it("masks by default and sends unmasked frames with use_masking = false", function()
    for _, masking in ipairs({ true, false }) do
      local id = H.id()
      local handler, got = H.recorder()
      local opts = { use_masking = masking }
      local conn = H.open(bad.url("/echo?id=" .. id), handler, opts)
      assert.equal(masking, opts.use_masking)
      assert.is_true(luws.wssend(conn, 1, "plain"))
      local log
      if masking then
        assert.is_true(H.pump(conn, function() return #got >= 1 end, 5))
        assert.same({ 1, "plain" }, got[1])
        log = bad:log(id, "text")
      else
        local ok, err = H.pump(conn, function() return false end, 5)
        assert.is_nil(ok)
        assert.equal("closed", err)
        log = bad:log(id, "unmasked")
      end
      local seen = table.concat(log, "|")
      if masking then
        assert.matches("text 5 plain", seen)
        assert.is_nil(seen:find("unmasked", 1, true))
      else
        assert.matches("unmasked", seen)
      end
      luws.wsclose(conn)
    end
  end)
end)
