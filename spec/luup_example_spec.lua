-- The Luup plugin example (lua/examples/luup) run against a fake `luup` table: call_delay is
-- recorded and fired by the spec (no real waiting), the HandleReceive job is run when the fake
-- Luup port (spec/servers/fake_luup.py) receives luws's notification, as openLuup would.
local H = spec_helper
local luws = H.luws
local socket = H.socket

local SID = "urn:luws-example:serviceId:LuwsExample1"
local PLUGIN = "lua/examples/luup/L_LuwsExample1.lua"

local function unused_port()
  local probe = assert(socket.bind("127.0.0.1", 0))
  local _, port = probe:getsockname()
  probe:close()
  return tonumber(port)
end

describe("the Luup plugin example", function()
  local echo, bad, luup_port
  local delays, vars, dev
  local next_dev = 500

  setup(function()
    echo = H.server("echo")
    bad = H.server("bad")
  end)

  before_each(function()
    delays, vars = {}, {}
    next_dev = next_dev + 1
    dev = next_dev
    luup_port = H.server("luup").port
    _G.luup = {
      log = function() end,
      call_delay = function(name, seconds, data)
        assert(type(name) == "string" and type(_G[name]) == "function", "call_delay of " .. tostring(name))
        assert(type(data) == "string", "call_delay data must be a string")
        delays[#delays + 1] = { name, seconds, data }
      end,
      variable_get = function(sid, name, d)
        assert(d == dev)
        return vars[sid .. "/" .. name]
      end,
      variable_set = function(sid, name, value, d)
        assert(d == dev)
        vars[sid .. "/" .. name] = tostring(value)
      end,
      -- openLuup tells its HTTP port this way (it need not be 3480); the plugin must follow it.
      attr_get = function(name, d)
        if name == "openLuup.HTTP.Port" and (d or 0) == 0 then return tostring(luup_port) end
      end,
    }
    -- The plugin requires its drop-in copy; here that is luws itself.
    package.loaded["L_LuwsExample1_LuWS"] = luws
    dofile(PLUGIN) -- fresh plugin state
  end)

  after_each(function()
    package.loaded["L_LuwsExample1_LuWS"] = nil
    _G.luup = nil
    collectgarbage() -- the plugin's connection, if any
  end)

  local function setvar(name, value) vars[SID .. "/" .. name] = value end
  local function getvar(name) return vars[SID .. "/" .. name] end

  -- Runs the first pending call_delay to `name` (as Luup would when it is due); returns its delay.
  local function fire(name)
    for i, d in ipairs(delays) do
      if d[1] == name then
        table.remove(delays, i)
        _G[name](d[3])
        return d[2]
      end
    end
    error("no pending call_delay to " .. name)
  end

  local function pending(name)
    local out = {}
    for _, d in ipairs(delays) do if d[1] == name then out[#out + 1] = d[2] end end
    return out
  end

  -- Plays Luup's part: waits (at most 5 s) for notification number `n` for our device, then
  -- runs the HandleReceive job with its Pid, and checks the job's return values.
  local handled = 0
  local function luup_handles(n)
    local c = assert(socket.tcp())
    c:settimeout(10)
    assert(c:connect("127.0.0.1", luup_port))
    c:send("GET /requests?wait=" .. n .. "&match=DeviceNum%3D" .. dev .. "%26 HTTP/1.1\r\nHost: x\r\n\r\n")
    local body = c:receive("*a")
    c:close()
    local pids = {}
    for pid in body:gmatch("action=HandleReceive&Pid=(%w+)\n") do pids[#pids + 1] = pid end
    assert.is_true(#pids >= n, "notification " .. n .. " came")
    for i = handled + 1, #pids do
      local status, timeout = luwsExample1HandleReceive(dev, { Pid = pids[i] })
      assert.same({ 4, 0 }, { status, timeout })
    end
    handled = #pids
    return #pids
  end

  before_each(function() handled = 0 end)

  it("opens from startup, handles a message through notify and the job, then polls every 60 s", function()
    setvar("URL", echo.url("/"))
    setvar("Subscribe", "hello")
    local ok = luwsExample1Startup(tostring(dev))
    assert.is_true(ok)
    assert.same({ 0 }, pending("luwsExample1Reconnect"))
    fire("luwsExample1Reconnect") -- opens, sends the subscription
    assert.same({ 5 }, pending("luwsExample1Poll"), "5 s until a notification proves itself")
    luup_handles(1) -- the echo of "hello" arrives: luws notifies, the job receives
    assert.equal("hello", getvar("LastMessage"))
    fire("luwsExample1Poll")
    assert.same({ 60 }, pending("luwsExample1Poll"), "a 60 s backup poll once notify works")
    assert.same({}, pending("luwsExample1Reconnect"))
  end)

  it("still receives by polling every 5 s when notifications cannot reach Luup", function()
    luup_port = unused_port()
    setvar("URL", echo.url("/"))
    setvar("Subscribe", "polled")
    luwsExample1Startup(dev)
    fire("luwsExample1Reconnect")
    local deadline = socket.gettime() + 5
    while getvar("LastMessage") == nil and socket.gettime() < deadline do
      assert.equal(5, fire("luwsExample1Poll"))
      socket.sleep(0.05)
    end
    assert.equal("polled", getvar("LastMessage"))
    assert.same({ 5 }, pending("luwsExample1Poll"))
  end)

  it("reconnects after the server closes, backing off 1, 2, 4 ... 300 s, reset by an open", function()
    -- The server sends one message and hangs up: luws notifies (data, then the hang-up).
    setvar("URL", bad.url("/push?count=1&size=5&then=fin&id=" .. H.id()))
    luwsExample1Startup(dev)
    fire("luwsExample1Reconnect")
    local deadline = socket.gettime() + 5
    local n = 0
    while #pending("luwsExample1Reconnect") == 0 and socket.gettime() < deadline do
      n = luup_handles(n + 1)
    end
    assert.equal("abcde", getvar("LastMessage"))
    assert.same({ 1 }, pending("luwsExample1Reconnect"))

    -- Nothing listens any more: each failed open doubles the delay, up to 300 s.
    setvar("URL", "ws://127.0.0.1:" .. unused_port() .. "/")
    local seen = {}
    for _ = 1, 10 do
      fire("luwsExample1Reconnect")
      seen[#seen + 1] = pending("luwsExample1Reconnect")[1]
    end
    assert.same({ 2, 4, 8, 16, 32, 64, 128, 256, 300, 300 }, seen)

    -- A successful open resets the backoff: the next hang-up is retried after 1 s again.
    setvar("URL", bad.url("/push?count=1&size=3&then=fin&id=" .. H.id()))
    local polls = #pending("luwsExample1Poll")
    fire("luwsExample1Reconnect")
    local now = pending("luwsExample1Poll")
    assert.equal(polls + 1, #now, "the open set a poll")
    assert.equal(60, now[#now], "notify was seen working: a 60 s backup poll")
    deadline = socket.gettime() + 5
    while #pending("luwsExample1Reconnect") == 0 and socket.gettime() < deadline do
      n = luup_handles(n + 1)
    end
    assert.equal("abc", getvar("LastMessage"))
    assert.same({ 1 }, pending("luwsExample1Reconnect"))
  end)

  it("ignores timers and notifications left over from an older connection", function()
    setvar("URL", bad.url("/push?count=1&size=2&then=fin&id=" .. H.id()))
    luwsExample1Startup(dev)
    fire("luwsExample1Reconnect")
    local deadline = socket.gettime() + 5
    local n = 0
    while #pending("luwsExample1Reconnect") == 0 and socket.gettime() < deadline do
      n = luup_handles(n + 1)
    end
    setvar("URL", echo.url("/"))
    fire("luwsExample1Reconnect") -- generation 2
    local polls = pending("luwsExample1Poll")
    fire("luwsExample1Poll") -- generation 1's timer: does nothing, sets no new one
    assert.equal(#polls - 1, #pending("luwsExample1Poll"))
    assert.same({ 4, 0 }, { luwsExample1HandleReceive(dev, { Pid = "1" }) })
    assert.same({}, pending("luwsExample1Reconnect"))
  end)
end)
