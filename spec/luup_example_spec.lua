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

  it("lets luws reconnect after the server hangs up, and subscribes again in on_open", function()
    -- Regression for the example's rewrite onto `reconnect`: it used to wsclose and reopen by
    -- hand from a timer. Each connection of /push gets one message, then the server hangs up.
    local logged = {}
    luup.log = function(msg) logged[#logged + 1] = tostring(msg) end
    setvar("URL", bad.url("/push?count=1&size=5&then=fin&id=" .. H.id()))
    setvar("Subscribe", "hello")
    luwsExample1Startup(dev)
    fire("luwsExample1Reconnect")
    local function saw(pattern)
      for _, l in ipairs(logged) do if l:find(pattern) then return true end end
      return false
    end
    assert.is_true(saw("connected to luws%-websock"), "on_open ran for the first open")
    -- Luup runs a job per notification: data, the hang-up, then (about 1 s later) the
    -- reconnected connection, whose watcher tells Luup at once.
    local deadline = socket.gettime() + 8
    local n = 0
    while not saw("reconnected to .* after 1 attempt") and socket.gettime() < deadline do
      n = luup_handles(n + 1)
    end
    assert.is_true(saw("connection ended: receiver error: closed"))
    assert.is_true(saw("reconnected to .* after 1 attempt"), table.concat(logged, "\n"))
    assert.same({}, pending("luwsExample1Reconnect"), "no reopening by hand")
    assert.equal("abcde", getvar("LastMessage"))
  end)

  it("retries a first open that fails after 1, 2, 4 ... 300 s, and stops once one works", function()
    setvar("URL", "ws://127.0.0.1:" .. unused_port() .. "/")
    luwsExample1Startup(dev)
    local seen = {}
    for _ = 1, 11 do
      fire("luwsExample1Reconnect")
      seen[#seen + 1] = pending("luwsExample1Reconnect")[1]
    end
    assert.same({ 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300 }, seen)
    setvar("URL", echo.url("/"))
    fire("luwsExample1Reconnect")
    assert.same({}, pending("luwsExample1Reconnect"))
    assert.equal(1, #pending("luwsExample1Poll"), "the open set a poll")
  end)

  it("ignores timers and notifications left over from an older connection", function()
    setvar("URL", "ws://127.0.0.1:" .. unused_port() .. "/")
    luwsExample1Startup(dev)
    fire("luwsExample1Reconnect") -- generation 1 fails: a retry timer for generation 1
    setvar("URL", echo.url("/"))
    fire("luwsExample1Reconnect") -- generation 2 opens
    local polls = pending("luwsExample1Poll")
    assert.equal(1, #polls)
    -- A timer and a notification for generation 1 do nothing.
    luwsExample1Poll("1")
    assert.equal(1, #pending("luwsExample1Poll"))
    assert.same({ 4, 0 }, { luwsExample1HandleReceive(dev, { Pid = "1" }) })
    assert.same({}, pending("luwsExample1Reconnect"))
  end)
end)
