-- The notify option: a watcher thread tells Luup (here spec/servers/fake_luup.py, which answers
-- like openLuup and holds its connections open ~90 s) that data waits, with SockProxy's request.
local H = spec_helper
local luws = H.luws
local socket = H.socket

local SID = "urn:luws-test:serviceId:Notify1"

-- GET `target` on the fake Luup; returns the body (Content-Length framed, then closed).
local function luup_get(luup, target, timeout)
  local c = assert(socket.tcp())
  c:settimeout(timeout)
  assert(c:connect("127.0.0.1", luup.port))
  c:send("GET " .. target .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
  local status = assert(c:receive("*l"))
  local len = 0
  while true do
    local line = c:receive("*l")
    if not line or line == "" then break end
    len = tonumber(line:lower():match("^content%-length:%s*(%d+)")) or len
  end
  local body = len > 0 and c:receive(len) or ""
  c:close()
  assert(status:match("^HTTP/1%.1 200"), status)
  return body
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

-- The requests whose target contains `match`, after waiting (at most `timeout` s) for `n`.
-- Each is { t = arrival time (time.time() of the fake Luup), target = "...", headers = {...} }.
local function requests(luup, match, n, timeout)
  timeout = timeout or 5
  local body = luup_get(luup, "/requests?headers=1&match=" .. urlencode(match) .. "&wait=" ..
                        (n or 0) .. "&timeout=" .. timeout, timeout + 5)
  local list = {}
  for line in body:gmatch("([^\n]*)\n") do
    local t, target = line:match("^(%d+%.%d+) (.*)$")
    if t then
      list[#list + 1] = { t = tonumber(t), target = target, headers = {} }
    else
      local h = list[#list].headers
      h[#h + 1] = line:sub(3)
    end
  end
  return list
end

-- Lets the watcher act (or not) before counting again.
local function quiet(s) socket.sleep(s or 0.4) end

local function expected(pid, device, action)
  return "/data_request?id=action&output_format=json&DeviceNum=" .. (device or 42) ..
         "&serviceId=" .. SID .. "&action=" .. (action or "HandleReceive") .. "&Pid=" .. pid
end

-- Number of luws notification threads in this process (collect first: a connection an earlier
-- spec dropped still has its watcher until the collector runs).
local function notify_threads()
  collectgarbage()
  collectgarbage()
  local p = io.popen("cat /proc/" .. H.pid() .. "/task/*/comm 2>/dev/null")
  local n = 0
  for line in p:lines() do if line == "luws-notify" then n = n + 1 end end
  p:close()
  return n
end

describe("notify", function()
  local echo, bad, luup
  setup(function()
    echo = H.server("echo")
    bad = H.server("bad")
    luup = H.server("luup")
  end)

  local function opts(pid, extra)
    local n = { device = 42, service = SID, port = luup.port, pid = pid }
    for k, v in pairs(extra or {}) do n[k] = v end
    return { notify = n }
  end

  it("sends SockProxy's request: the exact query, Host with the port, Connection: close", function()
    local pid = H.id()
    local conn = H.open(echo.url("/"), function() end, opts(pid))
    assert.is_true(luws.wssend(conn, 1, "x"))
    local got = requests(luup, "Pid=" .. pid, 1)
    assert.equal(1, #got)
    assert.equal(expected(pid), got[1].target)
    assert.same({ "Host: 127.0.0.1:" .. luup.port, "Connection: close", "User-Agent: luws" },
                got[1].headers)
    luws.wsclose(conn)
  end)

  it("uses the action given, and a number as Pid", function()
    local conn = H.open(echo.url("/"), function() end,
                        { notify = { device = 7, service = SID, action = "OnData", port = luup.port, pid = 990001 } })
    assert.is_true(luws.wssend(conn, 1, "x"))
    local got = requests(luup, "Pid=990001", 1)
    assert.equal(1, #got)
    assert.equal(expected("990001", 7, "OnData"), got[1].target)
    luws.wsclose(conn)
  end)

  it("numbers connections without a pid with distinct Pids", function()
    local a = H.open(echo.url("/"), function() end, { notify = { device = 4242, service = SID, port = luup.port } })
    local b = H.open(echo.url("/"), function() end, { notify = { device = 4242, service = SID, port = luup.port } })
    luws.wssend(a, 1, "a")
    luws.wssend(b, 1, "b")
    local got = requests(luup, "DeviceNum=4242&", 2)
    assert.equal(2, #got)
    local p1, p2 = got[1].target:match("&Pid=(%d+)$"), got[2].target:match("&Pid=(%d+)$")
    assert.is_truthy(p1)
    assert.is_truthy(p2)
    assert.are_not.equal(p1, p2)
    luws.wsclose(a)
    luws.wsclose(b)
  end)

  it("sends one request per arrival when wsreceive runs after each notification", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, opts(pid))
    for i = 1, 10 do
      assert.is_true(luws.wssend(conn, 1, "m" .. i))
      assert.equal(i, #requests(luup, "Pid=" .. pid, i), "request for arrival " .. i)
      assert.is_true(H.pump(conn, function() return #got >= i end))
    end
    quiet()
    assert.equal(10, #requests(luup, "Pid=" .. pid))
    for i = 1, 10 do assert.same({ 1, "m" .. i }, got[i]) end
    luws.wsclose(conn)
  end)

  it("sends one request for several arrivals while nobody received, and re-arms on wsreceive", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, opts(pid))
    luws.wssend(conn, 1, "a")
    assert.equal(1, #requests(luup, "Pid=" .. pid, 1))
    luws.wssend(conn, 1, "b")
    quiet(0.1)
    luws.wssend(conn, 1, "c")
    quiet()
    assert.equal(1, #requests(luup, "Pid=" .. pid), "no request while not re-armed")
    assert.is_true(H.pump(conn, function() return #got >= 3 end))
    assert.same({ { 1, "a" }, { 1, "b" }, { 1, "c" } }, got)
    quiet()
    assert.equal(1, #requests(luup, "Pid=" .. pid), "nothing new arrived")
    luws.wssend(conn, 1, "d")
    assert.equal(2, #requests(luup, "Pid=" .. pid, 2), "re-armed by wsreceive")
    luws.wsclose(conn)
  end)

  it("notifies at once of a message that came in the same packet as the 101", function()
    local pid = H.id()
    local handler, got = H.recorder()
    -- /rawhs sends this text verbatim in one write: the 101, then the text frame "hello".
    local text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
                 "Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n\194\129\5hello" -- 0x81 0x05 (the server decodes UTF-8, sends latin-1)
    local conn = H.open(bad.url("/rawhs?text=" .. urlencode(text) .. "&id=" .. H.id()), handler, opts(pid))
    assert.is_true(conn:dirty(), "the frame was read with the 101")
    local reqs = requests(luup, "Pid=" .. pid, 1, 2)
    assert.equal(1, #reqs)
    assert.is_true(H.pump(conn, function() return #got >= 1 end))
    assert.same({ { 1, "hello" } }, got)
    luws.wsclose(conn)
  end)

  it("reports the peer's reset even when not re-armed: one request for the data, one for the reset", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/reset?id=" .. H.id()), handler, opts(pid))
    local reqs = requests(luup, "Pid=" .. pid, 2)
    assert.equal(2, #reqs)
    assert.is_true(reqs[2].t - reqs[1].t > 0.2, "the reset comes 0.3 s after the data")
    assert.equal(expected(pid), reqs[2].target)
    quiet()
    assert.equal(2, #requests(luup, "Pid=" .. pid), "one for the reset, not one per poll")
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.same({ { false, "receiver error: closed" } }, got)
    -- (A receive that stopped short of the reset may have been followed by one more request,
    -- written before the close was seen and maybe still on its way: let it land first.)
    quiet()
    local n = #requests(luup, "Pid=" .. pid)
    quiet()
    assert.equal(n, #requests(luup, "Pid=" .. pid), "none once the close was seen")
  end)

  it("sends a last request when the peer's FIN comes, though nobody received the Close before it", function()
    local pid = H.id()
    local handler, got = H.recorder()
    -- /close sends Close 1000 at once, then waits 5 s for ours (none: no wsreceive), then FIN.
    local conn = H.open(bad.url("/close?code=1000&id=" .. H.id()), handler, opts(pid))
    assert.equal(1, #requests(luup, "Pid=" .. pid, 1))
    local reqs = requests(luup, "Pid=" .. pid, 2, 10)
    assert.equal(2, #reqs)
    assert.is_true(reqs[2].t - reqs[1].t > 4, "the FIN comes 5 s after the Close")
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.same({ { false, "receiver error: closed" } }, got)
    quiet() -- a request written before the close was seen may still be on its way
    local n = #requests(luup, "Pid=" .. pid)
    quiet()
    assert.equal(n, #requests(luup, "Pid=" .. pid), "none once the close was seen")
  end)

  it("sends a last request for data that came with the FIN, then nothing more", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/push?count=3&size=10&then=fin&id=" .. H.id()), handler, opts(pid))
    local reqs = requests(luup, "Pid=" .. pid, 1)
    assert.is_true(#reqs >= 1)
    local ok, err = H.pump(conn, function() return false end, 5)
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.equal(4, #got)
    -- The data and the FIN may be seen together or apart, and a receive may stop short of the
    -- FIN: a few requests, then none once the close was seen. A request written just before
    -- the close was seen may still be on its way to the fake Luup (the watcher is not waited
    -- for): let it land before counting.
    quiet()
    local n = #requests(luup, "Pid=" .. pid)
    assert.is_true(n >= 1 and n <= 3, n .. " requests")
    quiet()
    assert.equal(n, #requests(luup, "Pid=" .. pid))
  end)

  it("keeps telling Luup until a receive has seen the close (data and FIN arriving together)", function()
    -- What Luup does: one job, so one wsreceive, per request. However wsreceive splits the
    -- reading, the application must end up seeing the close without any timer.
    for round = 1, 20 do
      local pid = H.id()
      local handler, got = H.recorder()
      local conn = H.open(bad.url("/push?count=1&size=5&then=fin&id=" .. H.id()), handler, opts(pid))
      local handled, result = 0, nil
      while result == nil do
        local reqs = requests(luup, "Pid=" .. pid, handled + 1, 1)
        if #reqs == handled then break end -- no further request within 1 s
        for _ = handled + 1, #reqs do
          local more, err = luws.wsreceive(conn)
          if more == nil then result = err; break end
        end
        handled = #reqs
      end
      assert.equal("closed", result, "round " .. round .. ": the close was seen after " ..
                   handled .. " request(s); got " .. #got .. " handler calls")
      assert.same({ { 1, "abcde" }, { false, "receiver error: closed" } }, got)
    end
  end)

  it("sends no request after wsclose (not even for the peer's Close reply and FIN)", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local base = notify_threads()
    local conn = H.open(echo.url("/"), handler, opts(pid))
    luws.wssend(conn, 1, "a")
    assert.equal(1, #requests(luup, "Pid=" .. pid, 1))
    assert.is_true(H.pump(conn, function() return #got >= 1 end)) -- re-armed
    luws.wsclose(conn)
    quiet()
    assert.equal(1, #requests(luup, "Pid=" .. pid))
    assert.equal(base, notify_threads())
  end)

  it("sends no request after the connection is garbage-collected", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local base = notify_threads()
    local conn = H.open(echo.url("/"), handler, opts(pid))
    luws.wssend(conn, 1, "a")
    assert.equal(1, #requests(luup, "Pid=" .. pid, 1))
    assert.is_true(H.pump(conn, function() return #got >= 1 end)) -- re-armed
    assert.equal(base + 1, notify_threads())
    conn = nil
    assert.equal(base, notify_threads()) -- collected: the watcher is stopped and joined
    quiet()
    assert.equal(1, #requests(luup, "Pid=" .. pid))
  end)

  it("closes its request connections although the fake Luup holds them open (as openLuup does)", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, opts(pid))
    for i = 1, 3 do
      luws.wssend(conn, 1, "m" .. i)
      assert.equal(i, #requests(luup, "Pid=" .. pid, i))
      assert.is_true(H.pump(conn, function() return #got >= i end))
    end
    assert.equal("0\n", luup_get(luup, "/open?wait=0&timeout=2", 7))
    luws.wsclose(conn)
  end)

  it("keeps the connection working when nothing listens on the notify port", function()
    local probe = assert(socket.bind("127.0.0.1", 0))
    local _, dead_port = probe:getsockname()
    probe:close()
    local handler, got = H.recorder()
    local base = notify_threads()
    local conn = H.open(echo.url("/"), handler,
                        { notify = { device = 1, service = SID, port = tonumber(dead_port) } })
    for i = 1, 3 do
      assert.is_true(luws.wssend(conn, 1, "m" .. i))
      assert.is_true(H.pump(conn, function() return #got >= i end))
    end
    luws.wsclose(conn)
    assert.equal(base, notify_threads())
  end)

  it("measures the latency from frame arrival to the request (printed, not asserted)", function()
    local pid = H.id()
    local handler, got = H.recorder()
    local conn = H.open(echo.url("/"), handler, opts(pid))
    local total, after = {}, {}
    for i = 1, 20 do
      local t0 = socket.gettime() -- the echo server sends back at once: t0 bounds the arrival
      assert.is_true(luws.wssend(conn, 1, "m" .. i))
      assert.equal(1, #luws.wait({ conn }, 5))
      local t_arrival = socket.gettime() -- this thread saw the frame (the watcher polls too)
      local reqs = requests(luup, "Pid=" .. pid, i)
      assert.equal(i, #reqs)
      total[i] = (reqs[i].t - t0) * 1000
      after[i] = (reqs[i].t - t_arrival) * 1000
      assert.is_true(H.pump(conn, function() return #got >= i end))
      quiet(0.02)
    end
    local function stats(l)
      table.sort(l)
      return ("median %.2f ms, max %.2f ms"):format((l[10] + l[11]) / 2, l[20])
    end
    print("\nnotify latency, 20 arrivals: wssend -> echo -> GET at the fake Luup: " .. stats(total) ..
          "; frame seen by luws.wait -> GET: " .. stats(after))
    luws.wsclose(conn)
  end)

  describe("with the verawebsockets API", function()
    local vws = require "verawebsockets"

    it("sends one request per arrival, re-armed by each loop() pass, none after close", function()
      local pid = H.id()
      local events = {}
      local handlers = {
        [1] = function(reason) events[#events + 1] = { 1, reason } end,
        [3] = function() events[#events + 1] = { 3 } end,
        [4] = function() events[#events + 1] = { 4 } end,
        [8] = function(data) events[#events + 1] = { 8, data } end,
      }
      local wso = vws.create(echo.url("/"), handlers, nil, false, opts(pid))
      vws.connect(wso)
      local function loop_until(n)
        local deadline = socket.gettime() + 5
        while #events < n and socket.gettime() < deadline do
          vws.loop()
          luws.wait({ wso }, 0.05)
        end
      end
      loop_until(1)
      assert.same({ { 3 } }, events)
      for i = 1, 3 do
        vws.send(wso, "m" .. i) -- written at once when the socket takes it; no loop() here,
                                -- or the echo could be consumed before the watcher sees it
        assert.equal(i, #requests(luup, "Pid=" .. pid, i))
        loop_until(1 + i)
        assert.same({ 8, "m" .. i }, events[1 + i])
      end
      vws.close(wso)
      loop_until(5)
      assert.same({ 4 }, events[5])
      quiet()
      assert.equal(3, #requests(luup, "Pid=" .. pid))
    end)
  end)
end)
