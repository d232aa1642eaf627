-- Event-loop integration: LuaSocket's socket.select and luws.wait over many connections wake for
-- exactly those with work, including data buffered where poll(2) cannot see it (dirty()).
local H = spec_helper
local luws = H.luws
local socket = H.socket

local N = 50
local CHOSEN = { 1, 7, 8, 19, 33, 34, 50 }

-- The set of indexes (in `conns`) of the objects in `list`, as a sorted array.
local function indexes(conns, list)
  local pos = {}
  for i, c in ipairs(conns) do pos[c] = i end
  local out = {}
  for _, c in ipairs(list) do out[#out + 1] = assert(pos[c], "an object that was not passed in") end
  table.sort(out)
  return out
end

-- Calls `waitf(timeout)` (returning a list of ready objects) until the ready set equals `want`
-- or 5 s pass; readiness persists until received, so the set only grows. Returns the last set.
local function settle(conns, want, waitf)
  local deadline = socket.gettime() + 5
  local got
  repeat
    got = indexes(conns, waitf(0.2))
  until #got >= #want or socket.gettime() > deadline
  return got
end

describe("event-loop integration", function()
  local echo, tls_echo
  local conns, received
  setup(function()
    echo = H.server("echo")
    tls_echo = H.server("echo", { tls = true })
  end)

  before_each(function()
    conns, received = {}, {}
    for i = 1, N do
      received[i] = {}
      conns[i] = H.open(echo.url("/"), function(_, opcode, data)
        received[i][#received[i] + 1] = { opcode, data }
      end)
    end
  end)

  after_each(function()
    for _, c in ipairs(conns) do luws.wsclose(c) end
  end)

  local function send_chosen()
    for _, i in ipairs(CHOSEN) do assert.is_true(luws.wssend(conns[i], 1, "to " .. i)) end
  end

  local function receive_chosen()
    for _, i in ipairs(CHOSEN) do
      assert.is_true(H.pump(conns[i], function() return #received[i] >= 1 end))
      assert.same({ { 1, "to " .. i } }, received[i])
    end
  end

  -- A TLS connection with one message partly received: the rest is decrypted and buffered in
  -- luws, the socket itself is empty.
  local function dirty_tls()
    local got = {}
    local conn = H.open(tls_echo.url("/"), function(_, opcode, data) got[#got + 1] = { opcode, data } end,
                        { receive_budget = 16 })
    local message = ("0123456789abcdef"):rep(64) -- 1 KiB: one TLS record, 64 budgets
    assert.is_true(luws.wssend(conn, 1, message))
    assert.equal(1, #luws.wait({ conn }, 5), "the echo arrived")
    socket.sleep(0.05) -- all of it (one small segment on loopback)
    local more, n = luws.wsreceive(conn)
    assert.is_true(more)
    assert.equal(16, n)
    assert.same({}, got)
    assert.is_true(conn:dirty())
    return conn, got, message
  end

  describe("socket.select", function()
    it("takes luws connections (getfd, dirty) and times out when none has data", function()
      local t, r, _, err = H.elapsed(function() return socket.select(conns, nil, 0.2) end)
      assert.same({}, r)
      assert.equal("timeout", err)
      assert.is_true(t >= 0.15, "waited " .. t)
    end)

    it("over 50 connections wakes for exactly the ones with data", function()
      send_chosen()
      assert.same(CHOSEN, settle(conns, CHOSEN, function(t) return (socket.select(conns, nil, t)) end))
      assert.same(CHOSEN, indexes(conns, (socket.select(conns, nil, 0))), "no more, no fewer")
      receive_chosen()
      local r, _, err = socket.select(conns, nil, 0.1)
      assert.same({}, r)
      assert.equal("timeout", err)
    end)

    it("returns a TLS connection with buffered data at once, which poll(2) alone would not", function()
      local conn, got, message = dirty_tls()
      -- The same descriptor without dirty(): select sleeps, since the socket itself is empty.
      local bare = { getfd = function() return conn:getfd() end }
      local r0 = socket.select({ bare }, nil, 0.2)
      assert.same({}, r0)
      local all = { conn }
      for _, c in ipairs(conns) do all[#all + 1] = c end
      local t, r = H.elapsed(function() return socket.select(all, nil, 5) end)
      assert.is_true(t < 0.5, "select slept " .. t .. " s")
      assert.same({ conn }, { r[1] })
      assert.equal(1, #r)
      assert.is_true(H.pump(conn, function() return #got >= 1 end))
      assert.same({ { 1, message } }, got)
      assert.is_false(conn:dirty())
      assert.same({}, (socket.select({ conn }, nil, 0.1)))
      luws.wsclose(conn)
    end)
  end)

  describe("luws.wait", function()
    it("over 50 connections wakes for exactly the ones with data", function()
      local t, r = H.elapsed(function() return luws.wait(conns, 0.2) end)
      assert.same({}, r)
      assert.is_true(t >= 0.15, "waited " .. t)
      send_chosen()
      assert.same(CHOSEN, settle(conns, CHOSEN, function(t) return luws.wait(conns, t) end))
      assert.same(CHOSEN, indexes(conns, luws.wait(conns, 0)), "no more, no fewer")
      receive_chosen()
      assert.same({}, luws.wait(conns, 0.1))
    end)

    it("returns a TLS connection with buffered data at once", function()
      local conn, got, message = dirty_tls()
      local all = {}
      for _, c in ipairs(conns) do all[#all + 1] = c end
      all[#all + 1] = conn
      local t, r = H.elapsed(function() return luws.wait(all, 5) end)
      assert.is_true(t < 0.5, "wait slept " .. t .. " s")
      assert.same({ conn }, r)
      assert.is_true(H.pump(conn, function() return #got >= 1 end))
      assert.same({ { 1, message } }, got)
      assert.same({}, luws.wait({ conn }, 0.1))
      luws.wsclose(conn)
    end)

    it("takes verawebsockets objects too", function()
      local vws = require "verawebsockets"
      local events = {}
      local wso = vws.create(echo.url("/"), {
        [3] = function() events[#events + 1] = "open" end,
        [8] = function(data) events[#events + 1] = data end,
        [4] = function() events[#events + 1] = "closed" end,
      }, nil, false)
      vws.connect(wso)
      local deadline = socket.gettime() + 5
      while #events < 1 and socket.gettime() < deadline do
        luws.wait({ wso }, 0.1)
        vws.loop()
      end
      assert.same({ "open" }, events)
      assert.same({}, luws.wait({ wso, conns[1] }, 0.1))
      vws.send(wso, "hi")
      luws.wssend(conns[2], 1, "x")
      local all = { wso, conns[1], conns[2] }
      local got = settle(all, { 1, 3 }, function(t) return luws.wait(all, t) end)
      assert.same({ 1, 3 }, got)
      vws.loop()
      assert.same({ "open", "hi" }, events)
      vws.close(wso)
      deadline = socket.gettime() + 5
      while #events < 3 and socket.gettime() < deadline do
        luws.wait({ wso }, 0.1)
        vws.loop()
      end
      assert.same({ "open", "hi", "closed" }, events)
    end)
  end)
end)
