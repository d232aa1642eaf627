-- Lua version differences (tools/matrix.sh runs every spec on 5.1, 5.2, 5.3, 5.4 and LuaJIT):
-- integers vs floats (5.3+ has an integer subtype and prints 2.0 as "2.0"), unpack vs
-- table.unpack, the missing `module` of 5.2+, and Vera's 32-bit integers (OpenWrt's LNUM Lua 5.1
-- "double int32": every integer luws hands out must fit in 32 bits).
local H = spec_helper
local luws = H.luws

local unpack = table.unpack or unpack
local has_integers = math.type ~= nil -- Lua 5.3+

--- True when `v` is a whole number that a 32-bit lua_Integer can hold.
local function fits_int32(v)
  return type(v) == "number" and v == math.floor(v) and v >= -2 ^ 31 and v < 2 ^ 31
end

--- On 5.3+, the integer subtype; everywhere, a whole number printed without ".0".
local function assert_integer(v, what)
  assert.is_number(v, what)
  if has_integers then assert.equal("integer", math.type(v), what) end
  assert.truthy(tostring(v):match("^%-?%d+$"), what .. " prints as " .. tostring(v))
end

--- Sends `data` with `opcode` and returns what the handler got: opcode, data, and the largest
--- byte count wsreceive returned meanwhile.
local function echo_roundtrip(url, opcode, data, send)
  local handler, got = H.recorder()
  local conn = H.open(url, handler)
  assert.same({ true }, { (send or luws.wssend)(conn, opcode, data) })
  local n = 0
  local deadline = H.socket.gettime() + 5
  while #got == 0 and H.socket.gettime() < deadline do
    local more, nb = luws.wsreceive(conn)
    assert.is_not_nil(more, nb)
    if nb > n then n = nb end
    if not more and #got == 0 then luws.wait({ conn }, 0.05) end
  end
  luws.wsclose(conn)
  assert.equal(1, #got, "no echo")
  return got[1][1], got[1][2], n
end

describe("on " .. (jit and jit.version or _VERSION), function()
  local echo
  setup(function()
    echo = H.server("echo")
  end)

  describe("the module table", function()
    it("has _VERSION as a whole number that fits 32 bits, printed without a fraction", function()
      assert_integer(luws._VERSION, "_VERSION")
      assert.is_true(fits_int32(luws._VERSION))
      assert.truthy(tostring(luws._VERSION):match("^%d%d%d%d%d$"), "YYDDD")
      assert.is_string(luws.VERSION)
      assert.equal(luws.VERSION, luws.version)
    end)

    it("loads without the 5.1-only `module` and leaves no global behind", function()
      assert.is_nil(rawget(_G, "luws"))
      assert.is_table(package.loaded.luws)
      assert.equal(luws, package.loaded.luws)
    end)
  end)

  describe("opcodes", function()
    it("accepts opcodes given as floats with an integer value (1.0, 2.0)", function()
      local op, data = echo_roundtrip(echo.url("/"), 1.0, "float text")
      assert.equal(1, op)
      assert.equal("float text", data)
      op, data = echo_roundtrip(echo.url("/"), 2.0, "\0float binary")
      assert.equal(2, op)
      assert.equal("\0float binary", data)
    end)

    it("accepts a float opcode through conn:send too", function()
      local op = echo_roundtrip(echo.url("/"), 1.0, "method", function(c, o, d) return c:send(o, d) end)
      assert.equal(1, op)
    end)

    it("hands the handler an integer opcode that prints as 1, not 1.0", function()
      local op = echo_roundtrip(echo.url("/"), 1.0, "x")
      assert_integer(op, "opcode")
      assert.equal("opcode 1", "opcode " .. op)
    end)

    it("hands the control handler an integer opcode", function()
      local seen
      local conn = H.open(echo.url("/"), function() end, {
        control_handler = function(c, op, data) seen = seen or op end,
      })
      assert.is_true(luws.wssend(conn, 9.0, "p"))
      assert.is_true(H.pump(conn, function() return seen ~= nil end))
      luws.wsclose(conn)
      assert.equal(10, seen)
      assert_integer(seen, "control opcode")
    end)

    it("rejects fractional and non-finite opcodes with an argument error", function()
      local conn = H.open(echo.url("/"), function() end)
      for _, op in ipairs({ 1.5, 0 / 0, math.huge, -1 }) do
        local ok, err = pcall(luws.wssend, conn, op, "x")
        assert.is_false(ok)
        assert.matches("bad argument #2 to 'wssend' %(opcode must be 1, 2, 8, 9 or 10%)", tostring(err))
      end
      luws.wsclose(conn)
    end)
  end)

  describe("numbers handed out", function()
    it("wsreceive's byte count is a whole number (an integer on 5.3+) within 32 bits", function()
      local _, data, n = echo_roundtrip(echo.url("/"), 2, string.rep("b", 3000))
      assert.equal(3000, #data)
      assert_integer(n, "nbytes")
      assert.is_true(n >= 3000)
      assert.is_true(fits_int32(n))
    end)

    it("the idle byte count is the integer 0", function()
      local conn = H.open(echo.url("/"), function() end)
      local more, n = luws.wsreceive(conn)
      luws.wsclose(conn)
      assert.is_false(more)
      assert.equal(0, n)
      assert_integer(n, "idle nbytes")
    end)

    it("getfd is an integer within 32 bits, and -1 after close", function()
      local conn = H.open(echo.url("/"), function() end)
      local fd = conn:getfd()
      assert_integer(fd, "fd")
      assert.is_true(fits_int32(fd) and fd >= 0)
      conn:close()
      assert.equal(-1, conn:getfd())
      assert_integer(conn:getfd(), "closed fd")
    end)

    it("wslastping is a number close to the current time", function()
      local conn = H.open(echo.url("/"), function() end)
      local t = luws.wslastping(conn)
      luws.wsclose(conn)
      assert.is_number(t)
      assert.is_true(math.abs(t - os.time()) < 60, "wslastping " .. tostring(t))
    end)

    it("writes the LuWS defaults back into the options table as whole numbers", function()
      local opts = {}
      local conn = H.open(echo.url("/"), function() end, opts)
      luws.wsclose(conn)
      -- LuWS's defaults are integers; code that logs them must not see "65535.0" on 5.3+.
      assert.equal("0", tostring(opts.receive_timeout))
      assert.equal("4096", tostring(opts.receive_chunk_size))
      assert.equal("65535", tostring(opts.max_payload_size))
      assert.is_true(opts.use_masking)
    end)

    it("keeps option values the caller gave, whatever their subtype", function()
      local opts = { receive_timeout = 2.5, max_payload_size = 2 ^ 31, receive_chunk_size = 1024.0 }
      local conn = H.open(echo.url("/"), function() end, opts)
      luws.wsclose(conn)
      assert.equal(2.5, opts.receive_timeout)
      assert.equal(2 ^ 31, opts.max_payload_size)
      assert.equal(1024, opts.receive_chunk_size)
    end)
  end)

  describe("numbers taken in", function()
    it("takes integer sizes given as floats, and sizes beyond 32 bits", function()
      local handler, got = H.recorder()
      local conn = H.open(echo.url("/"), handler,
        { receive_chunk_size = 512.0, max_payload_size = 2 ^ 33, receive_timeout = 30 })
      assert.is_true(luws.wssend(conn, 2, string.rep("z", 70000)))
      assert.is_true(H.pump(conn, function() return #got >= 1 end, 10))
      luws.wsclose(conn)
      assert.equal(70000, #got[1][2])
    end)

    it("rejects a fractional size with an option error", function()
      local ok, err = pcall(luws.wsopen, echo.url("/"), function() end, { receive_chunk_size = 100.5 })
      assert.is_false(ok)
      assert.matches("bad option 'receive_chunk_size' to 'wsopen'", tostring(err))
    end)

    it("sends a number as data the way tostring prints it on this version", function()
      local values = { 42, 2.5, 2 ^ 53, -7, 1 / 3 }
      if has_integers then values[#values + 1] = 42.0 end -- "42.0" on 5.3+
      for _, v in ipairs(values) do
        local _, data = echo_roundtrip(echo.url("/"), 1, v)
        assert.equal(tostring(v), data)
      end
    end)

    it("takes wait() timeouts as integers and floats", function()
      local conn = H.open(echo.url("/"), function() end)
      local t, ready = H.elapsed(function() return luws.wait({ conn }, 0) end)
      assert.same({}, ready)
      t, ready = H.elapsed(function() return luws.wait({ conn }, 0.1) end)
      assert.same({}, ready)
      assert.is_true(t >= 0.05 and t < 2, "took " .. t)
      luws.wsclose(conn)
    end)
  end)

  describe("handler_args", function()
    --- Opens, echoes one message, and returns select('#', ...) and the extra handler arguments.
    local function args_of(handler_args)
      local count, extra
      local conn = H.open(echo.url("/"), function(c, op, data, ...)
        count, extra = select("#", ...), { ... }
      end, { handler_args = handler_args })
      luws.wssend(conn, 1, "a")
      assert.is_true(H.pump(conn, function() return count ~= nil end))
      luws.wsclose(conn)
      return count, extra
    end

    it("are passed as unpack(handler_args) would, keeping integers and floats apart", function()
      local args = { 1, 2.5, "three", true, 2 ^ 40 }
      local count, extra = args_of(args)
      assert.equal(select("#", unpack(args)), count)
      assert.same(args, extra)
      assert_integer(extra[1], "first handler arg")
      if has_integers then
        local f = { 2.0 }
        local _, e = args_of(f)
        assert.equal("float", math.type(e[1]))
      end
    end)

    it("with a nil in the middle are what unpack gives on this interpreter", function()
      -- PUC Lua counts 3 here; LuaJIT's border (and so its unpack) stops at 1.
      local args = { "a", nil, "c" }
      local count, extra = args_of(args)
      assert.equal(select("#", unpack(args)), count)
      assert.equal("a", extra[1])
      assert.is_nil(extra[2])
      if count == 3 then assert.equal("c", extra[3]) end
    end)

    it("drop trailing nils, as unpack does", function()
      local count = args_of({ "a", nil })
      assert.equal(select("#", unpack({ "a", nil })), count)
    end)

    it("may be an empty table", function()
      assert.equal(0, (args_of({})))
    end)
  end)

  describe("the verawebsockets API", function()
    it("takes a log mask given as a float", function()
      if not luws.set_log_level then return pending("set_log_level not in this build") end
      assert.has_no.errors(function() luws.set_log_level(0.0) end)
      assert.has_no.errors(function() luws.set_log_level(0) end)
    end)
  end)
end)
