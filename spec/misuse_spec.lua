-- Re-entrancy and misuse: handlers that call back into luws on their own conn, a conn used
-- after wsclose, handlers that raise, and wrong argument types everywhere. Each gives its
-- documented result; never a crash, a Rust panic reaching Lua, or a corrupted connection.
local H = spec_helper
local luws = H.luws

local unpack = unpack or table.unpack -- luacheck: ignore

--- Lines of a server log that start with `prefix`.
local function lines(log, prefix)
  local out = {}
  for _, l in ipairs(log) do
    if l:sub(1, #prefix) == prefix then out[#out + 1] = l end
  end
  return out
end

--- One echo round trip on `conn` (proves the connection is intact); earlier echoes may
--- still be on their way and are skipped.
local function round_trip(conn, got, text)
  local n = #got
  local function back()
    for i = n + 1, #got do
      if got[i][2] == text then return got[i] end
    end
  end
  assert.is_true(luws.wssend(conn, 1, text))
  assert.is_true(H.pump(conn, function() return back() ~= nil end, 5), "no echo of " .. text)
  assert.same({ 1, text }, back())
end

describe("misuse", function()
  local bad, echo
  setup(function()
    bad = H.server("bad")
    echo = H.server("echo")
  end)

  describe("a handler calling back into luws on its own conn", function()
    it("wsclose from control_handler on a ping: Close 1000 sent, wsreceive ends quietly", function()
      local id = H.id()
      local handler, got = H.recorder()
      local conn = H.open(bad.url("/pingpong?payload=abc&id=" .. id), handler, {
        control_handler = function(c, op) if op == 9 then luws.wsclose(c) end end,
      })
      local deadline = H.socket.gettime() + 5
      local more, n
      repeat
        more, n = luws.wsreceive(conn)
        if conn:getfd() ~= -1 then luws.wait({ conn }, 0.05) end
      until conn:getfd() == -1 or H.socket.gettime() > deadline
      assert.is_false(more)
      assert.is_number(n)
      assert.same({}, got, "no closed notification for our own close")
      assert.same({ nil, "not connected" }, { luws.wsreceive(conn) })
      local log = bad:log(id, "close")
      assert.equal("close 1000", log[#log])
    end)

    it("wssend inside the closed notification answers closing and sends nothing", function()
      local id = H.id()
      local res = {}
      local conn = H.open(bad.url("/close?code=4000&reason=bye&id=" .. id), function(c, op, data)
        if op == false then
          res[#res + 1] = { luws.wssend(c, 1, "late") }
          res[#res + 1] = { luws.wssend(c, 8, "\3\232") }
          res[#res + 1] = { luws.wssend(c, 9, "") }
        end
      end)
      local ok, err = H.pump(conn, function() return false end, 5)
      assert.is_nil(ok)
      assert.equal("closed", err)
      assert.same({ { false, "closing" }, { false, "closing" }, { false, "closing" } }, res)
      local log = bad:log(id, "close")
      assert.same({ "close 4000 bye" }, lines(log, "close"), "exactly one Close, our echo")
      assert.same({}, lines(log, "text"))
      assert.same({}, lines(log, "ping"))
    end)

    it("wsclose inside the closed notification is harmless", function()
      local handler, got = H.recorder()
      local conn = H.open(bad.url("/close?code=1000&id=" .. H.id()), function(c, op, data)
        handler(c, op, data)
        luws.wsclose(c)
      end)
      local ok, err = H.pump(conn, function() return false end, 5)
      assert.is_nil(ok)
      assert.equal("closed", err)
      assert.same({ { false, "receiver error: closed" } }, got)
      assert.equal(-1, conn:getfd())
    end)

    it("wsclose and wsreceive inside a failure notification; the failure is kept", function()
      local inner
      local conn = H.open(bad.url("/rsv?id=" .. H.id()), function(c, op, data)
        if op == false then
          luws.wsclose(c)
          inner = { luws.wsreceive(c) }
        end
      end)
      local ok, err = H.pump(conn, function() return false end, 5)
      assert.is_nil(ok)
      assert.equal("protocol error: reserved bits set", err)
      assert.same({ nil, "protocol error: reserved bits set" }, inner)
      assert.same({ nil, "protocol error: reserved bits set" }, { luws.wsreceive(conn) })
      assert.same({ false, "not connected" }, { luws.wssend(conn, 1, "x") })
    end)

    it("nested wsreceive from control_handler in the middle of a fragmented message", function()
      local id = H.id()
      local handler, got = H.recorder()
      local nested
      local conn = H.open(bad.url("/fragmented?id=" .. id), handler, {
        control_handler = function(c, op) nested = { luws.wsreceive(c) } end,
      })
      assert.is_true(H.pump(conn, function() return #got >= 1 end, 5))
      H.pump(conn, function() return false end, 0.2)
      assert.same({ { 1, "Hello, fragmented world" } }, got, "delivered exactly once")
      assert.is_not_nil(nested[1])
      assert.same({ "pong ping-in-the-middle" }, lines(bad:log(id, "pong"), "pong"))
      round_trip(conn, got, "still intact")
      luws.wsclose(conn)
    end)

    -- Each nested wsreceive delivers the next message from inside the handler, so a burst
    -- nests one level per message. Lua limits nested C calls (LUAI_MAXCCALLS = 200 in 5.1):
    -- luws must not recurse that deep, and must not lose a message when it cannot call a handler.
    it("a handler that calls wsreceive for every message of a 400-message burst gets each once, in order", function()
      local logged = {}
      _G.luup = { log = function(msg) logged[#logged + 1] = msg end }
      local got = {}
      local conn = H.open(bad.url("/push?count=400&size=6&opcode=1&then=none&id=" .. H.id()), function(c, op, data)
        got[#got + 1] = data
        luws.wsreceive(c)
      end)
      local ok = H.pump(conn, function() return #got >= 400 end, 10)
      _G.luup = nil
      assert.equal(0, #logged, #logged .. " handler errors, the first: " .. tostring(logged[1]):match("^[^\n]*"))
      assert.is_true(ok, #got .. " of 400 messages")
      assert.equal(400, #got)
      assert.is_true(conn:isopen())
      luws.wsclose(conn)
    end)

    it("wssend from the handler during a burst: every reply reaches the server", function()
      local id = H.id()
      local n = 0
      -- /push sends 50 x "abcdef", then echoes what we send: answer the pushed ones only.
      local conn = H.open(bad.url("/push?count=50&size=6&opcode=1&then=none&id=" .. id), function(c, op, data)
        if data == "abcdef" then
          n = n + 1
          assert(luws.wssend(c, 1, "ack " .. n))
        end
      end)
      assert.is_true(H.pump(conn, function() return n >= 50 end, 5))
      local log = bad:log(id, "text 6 ack 50")
      local acks = lines(log, "text ")
      assert.equal(50, #acks)
      assert.equal("text 5 ack 1", acks[1])
      assert.equal("text 6 ack 50", acks[50])
      luws.wsclose(conn)
    end)

    it("an LTN12 source that closes its own conn: wssend answers not connected", function()
      local conn = H.open(echo.url("/"), function() end)
      local calls = 0
      local ok, err = luws.wssend(conn, 1, function()
        calls = calls + 1
        if calls == 1 then luws.wsclose(conn) return "data" end
        return nil
      end)
      assert.is_false(ok)
      assert.equal("not connected", err)
      assert.equal(-1, conn:getfd())
    end)

    it("an LTN12 source that sends on its own conn first: both messages arrive, in call order", function()
      local handler, got = H.recorder()
      local conn = H.open(echo.url("/"), handler)
      local sent = false
      assert.is_true(luws.wssend(conn, 1, function()
        if not sent then
          sent = true
          assert(luws.wssend(conn, 1, "inner"))
          return "outer"
        end
        return nil
      end))
      assert.is_true(H.pump(conn, function() return #got >= 2 end, 5))
      assert.same({ { 1, "inner" }, { 1, "outer" } }, got)
      luws.wsclose(conn)
    end)
  end)

  describe("a conn used after wsclose", function()
    local conn, port
    before_each(function()
      conn = H.open(echo.url("/"), function() end)
      port = echo.port
      luws.wsclose(conn)
    end)

    it("wssend and conn:send answer not connected, for every opcode", function()
      for _, op in ipairs({ 1, 2, 8, 9, 10 }) do
        assert.same({ false, "not connected" }, { luws.wssend(conn, op, "") })
        assert.same({ false, "not connected" }, { conn:send(op, "") })
      end
    end)

    it("wsreceive and conn:receive answer nil, not connected", function()
      assert.same({ nil, "not connected" }, { luws.wsreceive(conn) })
      assert.same({ nil, "not connected" }, { conn:receive() })
    end)

    it("wsclose, conn:close and wsreset return nothing", function()
      assert.equal(0, select("#", luws.wsclose(conn)))
      assert.equal(0, select("#", conn:close()))
      assert.equal(0, select("#", luws.wsreset(conn)))
    end)

    it("wslastping and conn:lastping still give the time of the last frame", function()
      local t = luws.wslastping(conn)
      assert.is_number(t)
      assert.is_true(math.abs(t - os.time()) < 10)
      assert.equal(t, conn:lastping())
    end)

    it("getfd is -1, dirty and isopen are false, tostring still names it", function()
      assert.equal(-1, conn:getfd())
      assert.is_false(conn:dirty())
      assert.is_false(conn:isopen())
      assert.equal("luws-websock[127.0.0.1:" .. port .. "]", tostring(conn))
    end)

    it("luws.wait skips it and returns at its timeout with nothing ready", function()
      local t, ready = H.elapsed(function() return luws.wait({ conn }, 0.1) end)
      assert.same({}, ready)
      assert.is_true(t < 1, "took " .. t)
    end)

    it("LuaSocket's select skips it (getfd = -1)", function()
      local t, r = H.elapsed(function() return H.socket.select({ conn }, nil, 0.1) end)
      assert.same({}, r)
      assert.is_true(t < 1)
    end)
  end)

  describe("a handler that raises", function()
    after_each(function() _G.luup = nil end)

    it("is logged through luup.log at level 1; the connection and later messages are intact", function()
      local logged = {}
      _G.luup = { log = function(msg, level) logged[#logged + 1] = { msg, level } end }
      local got = {}
      local conn = H.open(echo.url("/"), function(c, op, data)
        got[#got + 1] = { op, data }
        if data == "boom" then error("handler exploded") end
      end)
      luws.wssend(conn, 1, "boom")
      luws.wssend(conn, 1, "after")
      assert.is_true(H.pump(conn, function() return #got >= 2 end, 5))
      assert.equal(1, #logged)
      assert.matches("^luws: message handler error: .*handler exploded", logged[1][1])
      assert.equal(1, logged[1][2])
      assert.is_nil(logged[1][1]:find("panicked", 1, true))
      round_trip(conn, got, "intact")
      luws.wsclose(conn)
    end)

    it("raising a non-string value (a table, nil) is logged too", function()
      local logged = {}
      _G.luup = { log = function(msg) logged[#logged + 1] = msg end }
      local got = {}
      local conn = H.open(echo.url("/"), function(c, op, data)
        got[#got + 1] = { op, data }
        if data == "table" then error({ code = 1 }) end
        if data == "nil" then error(nil) end
        if data == "tostring" then error(setmetatable({}, { __tostring = function() return "custom" end })) end
      end)
      for _, m in ipairs({ "table", "nil", "tostring" }) do luws.wssend(conn, 1, m) end
      assert.is_true(H.pump(conn, function() return #got >= 3 end, 5))
      assert.equal(3, #logged)
      for _, l in ipairs(logged) do
        assert.matches("^luws: message handler error: ", l)
        assert.is_nil(l:find("panicked", 1, true))
      end
      round_trip(conn, got, "intact")
      luws.wsclose(conn)
    end)

    it("a control_handler that raises is logged and the ping is still answered", function()
      local logged = {}
      _G.luup = { log = function(msg) logged[#logged + 1] = msg end }
      local id = H.id()
      local conn = H.open(bad.url("/pingpong?payload=p1&id=" .. id), function() end, {
        control_handler = function() error("control exploded") end,
      })
      H.pump(conn, function() return #logged >= 1 end, 5)
      assert.equal(1, #logged)
      assert.matches("^luws: control handler error: .*control exploded", logged[1])
      local log = bad:log(id, "pong")
      assert.same({ "pong p1" }, lines(log, "pong"))
      luws.wsclose(conn)
    end)

    it("raising inside the failure notification: logged; wsreceive still returns nil, err", function()
      local logged = {}
      _G.luup = { log = function(msg) logged[#logged + 1] = msg end }
      local conn = H.open(bad.url("/close?code=1000&id=" .. H.id()), function(c, op)
        if op == false then error("in the notification") end
      end)
      local ok, err = H.pump(conn, function() return false end, 5)
      assert.is_nil(ok)
      assert.equal("closed", err)
      assert.equal(1, #logged)
      assert.matches("^luws: message handler error: .*in the notification", logged[1])
    end)

    -- stderr belongs to the process: run these in a child Lua and read what it wrote.
    describe("without a usable luup.log: to stderr", function()
      local function child(setup_luup)
        local script = os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write("package.cpath = ", string.format("%q", package.cpath), "\n",
                setup_luup, "\n", [[
          local luws = require "luws"
          local socket = require "socket"
          local done = false
          local conn = assert(luws.wsopen(]], string.format("%q", echo.url("/")), [[, function(c, op, data)
            if data == "boom" then error("child exploded") end
            io.stdout:write("got ", tostring(data), "\n")
            done = data == "after"
          end))
          luws.wssend(conn, 1, "boom")
          luws.wssend(conn, 1, "after")
          local deadline = socket.gettime() + 5
          repeat
            luws.wsreceive(conn)
            if not done then luws.wait({ conn }, 0.05) end
          until done or socket.gettime() > deadline
          luws.wsclose(conn)
        ]])
        f:close()
        local p = io.popen((os.getenv("LUWS_LUA") or "lua5.1") .. " " .. script .. " 2>&1")
        local out = p:read("*a")
        p:close()
        os.remove(script)
        return out
      end

      for _, c in ipairs({
        { "no luup global", "" },
        { "luup is not a table", "luup = 42" },
        { "luup.log is missing", "luup = {}" },
        { "luup.log raises", "luup = { log = function() error('log broken') end }" },
      }) do
        it(c[1], function()
          local out = child(c[2])
          assert.matches("luws: message handler error: [^\n]*child exploded", out)
          assert.matches("got after", out)
          assert.is_nil(out:find("panicked", 1, true), out)
        end)
      end
    end)
  end)

  describe("wrong argument types", function()
    local conn, got
    before_each(function()
      local handler
      handler, got = H.recorder()
      conn = H.open(echo.url("/"), handler)
    end)
    after_each(function() luws.wsclose(conn) end)

    local kinds = {
      { "nil", function() return nil end },
      { "number", function() return 42 end },
      { "float", function() return 0.5 end },
      { "string", function() return "str" end },
      { "table", function() return {} end },
      { "function", function() return function() end end },
      { "true", function() return true end },
      { "false", function() return false end },
      { "foreign userdata", function() return io.stdout end },
      { "thread", function() return coroutine.create(function() end) end },
    }

    --- Accepts documented returns: `ok(results)` says whether they are.
    local function returns_any() return true end
    local function returns_nothing(r) return r.n == 0 end
    local function returns_failure_or(pred)
      return function(r)
        if (r[1] == false or r[1] == nil) and type(r[2]) == "string" and r.n == 2 then return true end
        return pred(r)
      end
    end

    -- name, function (gets the conn), valid arguments, what a call may return
    local api = {
      { "wsopen", function() return luws.wsopen end, function() return { "ws://127.0.0.1:1/", function() end, {} } end,
        returns_failure_or(function(r) return type(r[1]) == "userdata" end) },
      { "wssend", function() return luws.wssend end, function() return { conn, 1, "x" } end,
        returns_failure_or(function(r) return r[1] == true end) },
      { "wsreceive", function() return luws.wsreceive end, function() return { conn } end,
        returns_failure_or(function(r) return type(r[1]) == "boolean" and type(r[2]) == "number" end) },
      { "wsclose", function() return luws.wsclose end, function() return { conn } end, returns_nothing },
      { "wslastping", function() return luws.wslastping end, function() return { conn } end,
        function(r) return type(r[1]) == "number" end },
      { "wsreset", function() return luws.wsreset end, function() return { conn } end, returns_nothing },
      { "wait", function() return luws.wait end, function() return { { conn }, 0 } end,
        function(r) return type(r[1]) == "table" end,
        -- a timeout of nil (none) or a number is valid, and would really wait that long
        skip = function(pos, kind) return pos == 2 and (kind == "nil" or kind == "number" or kind == "float") end },
      { "send", function() return conn.send end, function() return { conn, 1, "x" } end,
        returns_failure_or(function(r) return r[1] == true end) },
      { "receive", function() return conn.receive end, function() return { conn } end,
        returns_failure_or(function(r) return type(r[1]) == "boolean" and type(r[2]) == "number" end) },
      { "close", function() return conn.close end, function() return { conn } end, returns_nothing },
      { "lastping", function() return conn.lastping end, function() return { conn } end,
        function(r) return type(r[1]) == "number" end },
      { "getfd", function() return conn.getfd end, function() return { conn } end,
        function(r) return type(r[1]) == "number" end },
      { "dirty", function() return conn.dirty end, function() return { conn } end,
        function(r) return type(r[1]) == "boolean" end },
      { "isopen", function() return conn.isopen end, function() return { conn } end,
        function(r) return type(r[1]) == "boolean" end },
    }

    --- Calls f with args (n of them); checks the outcome; returns a problem description or nil.
    local function check(name, pos, f, args, n, accept)
      -- Counted with select("#"), not #: LuaJIT's border of { true, nil, "x" } is 1, so
      -- table.remove and # would lose the values after a nil.
      local function pack(...) return { n = select("#", ...), ... } end
      local all = pack(pcall(f, unpack(args, 1, n)))
      local ok, r = all[1], { n = all.n - 1 }
      for i = 2, all.n do r[i - 1] = all[i] end
      if not ok then
        local msg = tostring(r[1])
        if msg:find("panicked", 1, true) then return "a Rust panic: " .. msg end
        -- the first line, without a "chunk:line: " position (Lua adds one for Lua callers)
        local first = msg:match("^[^\n]*"):gsub("^[^\n]-:%d+: ", "")
        local want = "bad argument #" .. pos .. " to '" .. name .. "'"
        if first:sub(1, #want) ~= want then return "raised " .. first end
        return nil
      end
      if not accept(r) then
        local shown = {}
        for i = 1, r.n do shown[i] = tostring(r[i]) end
        return "returned " .. table.concat(shown, ", ")
      end
      return nil
    end

    for _, a in ipairs(api) do
      it(a[1] .. ": each argument of each wrong type", function()
        local problems = {}
        local f, valid = a[2](), a[3]()
        local nargs = #valid
        for pos = 1, nargs + 1 do
          for _, k in ipairs(kinds) do
            if not (a.skip and a.skip(pos, k[1])) then
              local args = a[3]()
              args[pos] = k[2]()
              local p = check(a[1], pos, f, args, math.max(nargs, pos), a[4])
              if p then problems[#problems + 1] = "#" .. pos .. " " .. k[1] .. ": " .. p end
            end
          end
        end
        assert.same({}, problems)
        if a[1] ~= "close" and a[1] ~= "wsclose" then
          -- never a corrupted connection: it still echoes
          assert.is_true(conn:isopen(), "the connection was closed")
          round_trip(conn, got, "intact after " .. a[1])
        end
      end)
    end

    describe("an option of a wrong type raises 'bad option' naming it, or is accepted", function()
      local options = {
        "handler_args", "receive_timeout", "receive_chunk_size", "max_payload_size", "ssl_protocol",
        "ssl_verify", "ssl_mode", "ssl_options", "use_masking", "control_handler", "connect",
        "upgrade_headers", "connect_timeout", "handshake_timeout", "ssl_cafile", "ssl_certificate",
        "ssl_key", "keepalive", "send_timeout", "close_timeout", "receive_budget",
      }
      for _, name in ipairs(options) do
        it(name, function()
          local problems = {}
          local extra = { { "NaN", function() return 0 / 0 end }, { "inf", function() return math.huge end },
                          { "negative", function() return -1 end } }
          local all = {}
          for _, k in ipairs(kinds) do all[#all + 1] = k end
          for _, k in ipairs(extra) do all[#all + 1] = k end
          for _, k in ipairs(all) do
            local o = { [name] = k[2]() }
            if name == "ssl_key" or name == "ssl_certificate" then
              -- the pair: give the other one a path so only this one is wrong
              o[name == "ssl_key" and "ssl_certificate" or "ssl_key"] = "/nonexistent"
            end
            local r = { pcall(luws.wsopen, "ws://127.0.0.1:1/", function() end, o) }
            if r[1] then
              if not (r[2] == false and type(r[3]) == "string") and type(r[2]) ~= "userdata" then
                problems[#problems + 1] = k[1] .. ": returned " .. tostring(r[2]) .. ", " .. tostring(r[3])
              end
              if type(r[2]) == "userdata" then luws.wsclose(r[2]) end
            else
              local first = tostring(r[2]):match("^[^\n]*")
              -- ssl_certificate and ssl_key go together: an error may name the pair's other half
              local names = { [name] = true }
              if name == "ssl_key" or name == "ssl_certificate" then
                names.ssl_key, names.ssl_certificate = true, true
              end
              local named = first:match("^bad option '([%w_]+)' to 'wsopen' %(")
              if not names[named] then
                problems[#problems + 1] = k[1] .. ": raised " .. first
              elseif first:find("number expected, got number", 1, true) then
                problems[#problems + 1] = k[1] .. ": self-contradicting message " .. first
              end
            end
          end
          assert.same({}, problems)
        end)
      end
    end)

    -- A caller's error path (`"failed: " .. err`, err:match()) must work on what luws raises.
    it("raised errors are plain strings, as Lua's own argument errors are", function()
      local ok, err = pcall(luws.wssend, "not a conn", 1, "x")
      assert.is_false(ok)
      assert.equal("string", type(err))
      assert.equal("bad argument #1 to 'wssend' (luws connection expected, got string)",
        (err:gsub("^[^\n]-:%d+: ", "")))
    end)

    -- Regression: the method forms raised mlua error userdata with a traceback, and counted
    -- `self` as argument #1 even when called with a colon.
    it("method forms raise plain strings, numbered as Lua numbers a method's arguments", function()
      -- Called as statements, not `return c:m()`: a tail call hides how it was called (Lua's
      -- own errors then count from self too).
      local wso = luws.create("ws://127.0.0.1:1/", {}, nil, false)
      local cases = {
        { function() local r = conn:send("x", "y") return r end,
          "bad argument #1 to 'send' (number expected, got string)" },
        { function() local r = conn:send(1, {}) return r end,
          "bad argument #2 to 'send' (string or function expected, got table)" },
        { function() local r = conn.send(42, 1, "x") return r end,
          "bad argument #1 to 'send' (luws connection expected, got number)" },
        { function() local r = conn.getfd(nil) return r end,
          "bad argument #1 to 'getfd' (luws connection expected, got nil)" },
        { function() local r = conn.receive(nil) return r end,
          "bad argument #1 to 'receive' (luws connection expected, got nil)" },
        { function() local other = { isopen = conn.isopen } local r = other:isopen() return r end,
          "calling 'isopen' on bad self (luws connection expected, got table)" },
        { function() local r = wso:send({}) return r end,
          "bad argument #1 to 'send' (string expected, got table)" },
        { function() local r = wso.connect(5) return r end,
          "bad argument #1 to 'connect' (websocket object expected, got number)" },
        { function() local other = { getfd = wso.getfd } local r = other:getfd() return r end,
          "calling 'getfd' on bad self (websocket object expected, got table)" },
        { function() local r = luws.wssend(conn, "x") return r end,
          "bad argument #2 to 'wssend' (number expected, got string)" },
      }
      for i, c in ipairs(cases) do
        local ok, err = pcall(c[1])
        assert.is_false(ok, "case " .. i)
        assert.equal("string", type(err), "case " .. i)
        assert.equal(c[2], err, "case " .. i)
      end
      assert.is_true(conn:isopen(), "the connection was closed")
      round_trip(conn, got, "intact after method misuse")
    end)

    it("ssl_options that leave no TLS version raise naming ssl_options", function()
      local ok, err = pcall(luws.wsopen, "wss://127.0.0.1:1/", function() end,
        { ssl_protocol = "tlsv1_2", ssl_options = { "no_tlsv1_2" } })
      assert.is_false(ok)
      assert.equal("bad option 'ssl_options' to 'wsopen' (the protocol options exclude every TLS version)", err)
    end)

    it("luws.wait names a wrong element of its list plainly", function()
      local ok, err = pcall(luws.wait, { conn, 42 }, 0)
      assert.is_false(ok)
      assert.equal("bad argument #1 to 'wait' (luws connection expected at index 2, got number)",
        tostring(err):match("^[^\n]*"))
    end)
  end)
end)
