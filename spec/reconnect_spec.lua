-- The reconnect option: a connection that ends for any reason but the application's own wsclose
-- opens again by itself, with exponential backoff, off the Lua thread.
--
-- The peer is spec/servers/restart_peer.py: every WebSocket client gets "hello <conn#>", then
-- "m <conn#> <seq>" every 0.1 s, and "echo <text>" for what it sends; a control port ends,
-- stalls, takes down (connects refused, same port later) or rejects (503) connections, and
-- logs every accepted connection with its accept time (time.time(), socket.gettime()'s clock).
-- Each test tags its connections (?tag=) and closes them at its end, so that a command meant
-- for one test acts on no other.
--
-- What this pins, for both APIs:
--   * after a peer Close, reset, FIN, protocol error, message timeout or keepalive timeout: the
--     handler sees the end as today, that wsreceive returns false, n, "reconnecting", later
--     ones false, 0, "reconnecting", wssend false, "reconnecting", state() "reconnecting"; on_open
--     (conn, attempt, handler_args...) runs inside a wsreceive, the state is "open" and
--     messages flow again (a "hello <k>" from a new connection);
--   * the backoff curve (jitter 0): first attempt `initial` after the end, then initial*factor^
--     (n-1) capped at max; measured from the client (on_open, verawebsockets' event 1 per
--     failed attempt) and from the peer's accept log (503 rejections are logged, refused
--     connects are not); growth across outages and the restart after a long-lived connection;
--   * `attempts`: wsreceive gives up with the last open failure's text, state "closed";
--   * wsclose (close(wso)) during the wait stops it at once, for good;
--   * while reconnecting, getfd() is another descriptor that wakes socket.select and luws.wait
--     when the connection is back, and changes again then;
--   * a one-threaded Luup host whose plugin calls wsreceive only from notification jobs gets
--     every reconnection that way, with no timer;
--   * no luws call on the Lua thread (wsopen excepted) takes longer than 50 ms.
-- The measured backoff times and the longest call per kind are printed (io.write).

local H = spec_helper
local luws = H.luws
local socket = H.socket
local vws = require "verawebsockets"

local unpack = unpack or table.unpack
local now = socket.gettime

local LIMIT = 0.05 -- seconds any luws call (wsopen excepted) may hold the Lua thread
local SID = "urn:luws-test:serviceId:Reconnect1"

local function backoff(t)
  local b = { initial = 0.2, factor = 2, max = 1, jitter = 0 }
  for k, v in pairs(t or {}) do b[k] = v end
  return b
end

-------------------------------------------------------------------- the peer

local servers_dir = (function()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "spec"
  return dir .. "/servers"
end)()

-- Starts spec/servers/restart_peer.py; returns { port, ctl, pid, handle, url }.
local function start_peer()
  local python = os.getenv("LUWS_PYTHON") or "python3"
  local cmd = "exec '" .. python .. "' '" .. servers_dir .. "/restart_peer.py' 2>&1"
  local handle = assert(io.popen(cmd, "r"))
  local seen, ctl = {}, nil
  for _ = 1, 50 do
    local line = handle:read("*l")
    if not line then break end
    local c = line:match("^CONTROL (%d+)$")
    if c then ctl = tonumber(c) end
    local port, pid = line:match("^PORT (%d+) PID (%d+)$")
    if port and ctl then
      return { port = tonumber(port), ctl = ctl, pid = tonumber(pid), handle = handle,
               url = "ws://127.0.0.1:" .. port }
    end
    seen[#seen + 1] = line
  end
  handle:close()
  error("restart_peer.py did not start: " .. table.concat(seen, "\n"), 0)
end

-- Stops the peer we started, by its PID (it exits on SIGTERM; pclose then reaps it).
local function stop_peer(p)
  if not p or p.stopped then return end
  p.stopped = true
  os.execute("kill -TERM " .. p.pid .. " 2>/dev/null")
  p.handle:close()
end

local peer

-- GET `target` on the peer's control port; returns the body's lines.
local function ctl(target, timeout)
  local c = assert(socket.tcp())
  c:settimeout(timeout or 10)
  local ok, err = c:connect("127.0.0.1", peer.ctl)
  if not ok then
    c:close()
    error("restart peer control port: " .. tostring(err), 2)
  end
  c:send("GET " .. target .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
  local status, e = c:receive("*l")
  if not status then
    c:close()
    error("restart peer " .. target .. ": " .. tostring(e), 2)
  end
  local len = 0
  while true do
    local line = c:receive("*l")
    if not line or line == "" then break end
    len = tonumber(line:lower():match("^content%-length:%s*(%d+)")) or len
  end
  local body = len > 0 and c:receive(len) or ""
  c:close()
  local lines = {}
  for line in (body or ""):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  assert(status:match("^HTTP/1%.1 200") and lines[1] and lines[1]:match("^%a+ "),
         "restart peer " .. target .. ": " .. status .. " " .. tostring(lines[1]))
  return lines
end

-- The peer's log for `tag` (after waiting at most `timeout` s for `conns` connections):
-- { conns = { { n, t, tag, kind, state, how, t_open, t_end, sent = {...} }, ... }, events }.
local function peer_log(tag, conns, timeout)
  local lines = ctl(("/log?tag=%s&conns=%d&timeout=%s"):format(tag, conns or 0, timeout or 0),
                    (timeout or 0) + 10)
  local out, by_n = { conns = {}, events = {} }, {}
  for _, l in ipairs(lines) do
    local n, t, tg, kind, st, how, to, te =
      l:match("^conn (%d+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$")
    if n then
      local c = { n = tonumber(n), t = tonumber(t), tag = tg, kind = kind, state = st,
                  how = how, t_open = tonumber(to), t_end = tonumber(te), sent = {} }
      out.conns[#out.conns + 1] = c
      by_n[c.n] = c
    end
    local sn, text = l:match("^sent (%d+) (.*)$")
    if sn and by_n[tonumber(sn)] then
      local s = by_n[tonumber(sn)].sent
      s[#s + 1] = text
    end
    local et, what = l:match("^event (%S+) (%S+)")
    if et then out.events[#out.events + 1] = { t = tonumber(et), what = what } end
  end
  return out
end

local tag_count = 0
local function new_tag()
  tag_count = tag_count + 1
  return ("rc%d%04d"):format(tag_count, math.random(9999))
end

-------------------------------------------------------------------- timing luws calls

local STATS = { max = {}, calls = {}, slow = {} }

-- Calls f(...) as the Lua thread would, charging its duration to `kind`.
local function timed(kind, f, ...)
  local t0 = now()
  local r = { f(...) }
  local dt = now() - t0
  STATS.calls[kind] = (STATS.calls[kind] or 0) + 1
  if dt > (STATS.max[kind] or 0) then STATS.max[kind] = dt end
  if dt > LIMIT then STATS.slow[#STATS.slow + 1] = ("%s %.3f s"):format(kind, dt) end
  return unpack(r, 1, 3)
end

local function slow_since(mark)
  local t = {}
  for i = mark + 1, #STATS.slow do t[#t + 1] = STATS.slow[i] end
  return t
end

-- conn:state(), or an error saying the method is missing.
local function state(conn)
  local ok, f = pcall(function() return conn.state end)
  assert(ok and type(f) == "function", "conn:state() is missing from this build")
  return timed("state", f, conn)
end

local function try_state(conn)
  local ok, s = pcall(state, conn)
  return ok and s or "?"
end

local function list(t) return table.concat(t, "; ") end

-------------------------------------------------------------------- a LuWS client

-- Opens a reconnecting connection tagged `tag`; returns the record `c`:
--   c.conn, c.msgs, c.hellos (conn# of every "hello"), c.ends ({ msg, t }), c.opens
--   ({ attempt, t, args, in_wsopen, in_receive }), c.rets (wsreceive returns, repeats
--   collapsed), c.end_rets (what each wsreceive that delivered an end returned),
--   c.states (state() after each wsreceive, repeats collapsed), c.dead (wsreceive's nil, err).
local function client(tag, opts, path)
  local c = { tag = tag, msgs = {}, hellos = {}, ends = {}, opens = {}, rets = {},
              end_rets = {}, states = {}, echoes = {} }
  local o = { reconnect = backoff(), handler_args = { "arg1", 7 } }
  for k, v in pairs(opts or {}) do o[k] = v end
  o.on_open = function(conn, attempt, a1, a2)
    c.opens[#c.opens + 1] = { attempt = attempt, t = now(), args = { a1, a2 },
                              in_wsopen = c.in_wsopen, in_receive = c.in_receive }
  end
  local function handler(conn, opcode, data)
    if opcode then
      c.msgs[#c.msgs + 1] = data
      local k = tostring(data):match("^hello (%d+)$")
      if k then c.hellos[#c.hellos + 1] = { n = tonumber(k), t = now() } end
      local e = tostring(data):match("^echo (.*)$")
      if e then c.echoes[#c.echoes + 1] = e end
    else
      c.ends[#c.ends + 1] = { msg = data, t = now() }
    end
  end
  c.in_wsopen = true
  local conn, err = luws.wsopen(peer.url .. (path or "/push?every=0.1") .. "&tag=" .. tag,
                                handler, o)
  c.in_wsopen = false
  assert(conn, "wsopen: " .. tostring(err))
  c.conn = conn
  c.states[1] = try_state(conn)
  return c
end

local function close_client(c)
  if c and c.conn then luws.wsclose(c.conn) end
end

-- One wsreceive on c, timed; records what it returned and the state after it.
local function receive(c)
  local ends = #c.ends
  c.in_receive = true
  local a, b, d = timed("wsreceive", luws.wsreceive, c.conn)
  c.in_receive = false
  local key = a == nil and ("nil, " .. tostring(b))
              or (tostring(a) .. (d ~= nil and (", " .. tostring(d)) or ""))
  if key ~= c.rets[#c.rets] then c.rets[#c.rets + 1] = key end
  if #c.ends > ends then c.end_rets[#c.end_rets + 1] = { a, b, d } end
  if a == nil and not c.dead then c.dead = tostring(b) end
  local s = try_state(c.conn)
  if s ~= c.states[#c.states] then c.states[#c.states + 1] = s end
  return a, b, d
end

-- Calls wsreceive (every 10 ms when idle) until cond() or `timeout` s; fails fast once
-- wsreceive has returned nil. Returns true, or false and why.
local function pump(c, cond, timeout)
  local deadline = now() + timeout
  while true do
    if cond() then return true end
    if c.dead then return false, "wsreceive returned nil, " .. c.dead end
    if now() > deadline then return false, "no success within " .. timeout .. " s" end
    local more = receive(c)
    if cond() then return true end
    if more ~= true then socket.sleep(0.01) end
  end
end

-- Calls wsreceive for `secs` s (the connection is expected to stay as it is).
local function pump_for(c, secs)
  pump(c, function() return false end, secs)
end

local function why(c, msg)
  return ("%s; wsreceive returned: %s; states: %s; ends: %d; on_open: %d"):format(
    tostring(msg), list(c.rets), list(c.states), #c.ends, #c.opens)
end

-- Pumps until the hello of the n-th connection (n hellos in all) has arrived; returns it.
local function await_hello(c, n, timeout)
  local ok, err = pump(c, function() return #c.hellos >= n end, timeout)
  assert(ok, why(c, ("no hello from connection %d: %s"):format(n, tostring(err))))
  return c.hellos[n]
end

-- Pumps until the end has been delivered; returns what that wsreceive returned.
local function await_end(c, timeout)
  local n = #c.end_rets
  local ok, err = pump(c, function() return #c.end_rets > n end, timeout)
  assert(ok, why(c, "the end was not delivered: " .. tostring(err)))
  return c.end_rets[#c.end_rets], c.ends[#c.ends]
end

local function await_open(c, count, timeout)
  local ok, err = pump(c, function() return #c.opens >= count end, timeout)
  assert(ok, why(c, ("on_open did not run (call %d): %s"):format(count, tostring(err))))
  return c.opens[count]
end

local function assert_reconnecting_return(r)
  assert.is_false(r[1], "wsreceive's first value at the end")
  assert.is_number(r[2], "wsreceive's second value at the end")
  assert.equal("reconnecting", r[3], "wsreceive's third value at the end")
end

local function within(x, lo, hi, what)
  assert(x >= lo and x <= hi, ("%s: %.3f s, expected %.2f..%.2f s"):format(what, x, lo, hi))
end

-------------------------------------------------------------------- the specs

describe("the reconnect option", function()
  setup(function()
    math.randomseed(os.time())
    peer = start_peer()
  end)
  before_each(function() ctl("/up") end) -- a failed test may have left it down or rejecting
  teardown(function()
    stop_peer(peer)
    local kinds = {}
    for k, v in pairs(STATS.max) do
      kinds[#kinds + 1] = ("%s %.4f s (%d calls)"):format(k, v, STATS.calls[k])
    end
    table.sort(kinds)
    io.write(("\n[reconnect] longest luws calls: %s; calls over %d ms: %d\n"):format(
      list(kinds), LIMIT * 1000, #STATS.slow))
    for i = 1, math.min(#STATS.slow, 5) do io.write("  slow: " .. STATS.slow[i] .. "\n") end
    io.flush()
  end)

  describe("with the LuWS API, when the peer ends or breaks the connection", function()
    local CASES = {
      { "close", "a Close frame (1001)", "receiver error: closed" },
      { "reset", "a TCP reset", "receiver error: closed" },
      { "fin", "a FIN without a Close frame", "receiver error: closed" },
      { "protocol", "a protocol error (a frame with RSV1 set)",
        "receiver error: protocol error: reserved bits set" },
    }
    for _, case in ipairs(CASES) do
      local cmd, title, msg = case[1], case[2], case[3]
      it("by " .. title .. ", reports the end to the handler, returns false, n, " ..
         "'reconnecting' from that wsreceive, refuses wssend while reconnecting, and runs " ..
         "on_open again when messages flow from a new connection", function()
        local mark = #STATS.slow
        local tag = new_tag()
        local c = client(tag)
        finally(function() close_client(c) end)

        -- The first open: on_open inside wsopen, attempt 0, with the handler_args.
        assert.equal(1, #c.opens, "on_open calls during wsopen")
        assert.equal(0, c.opens[1].attempt)
        assert.is_true(c.opens[1].in_wsopen, "the first on_open runs inside wsopen")
        assert.same({ "arg1", 7 }, c.opens[1].args)
        local h1 = await_hello(c, 1, 3)
        assert.equal("open", state(c.conn))

        ctl("/" .. cmd .. "?tag=" .. tag)
        local r, e = await_end(c, 3)
        assert.equal(msg, e.msg)
        assert_reconnecting_return(r)
        assert.equal("reconnecting", state(c.conn))
        local ok, err = timed("wssend", luws.wssend, c.conn, 1, "during the wait")
        assert.same({ false, "reconnecting" }, { ok, err }, "wssend while reconnecting")
        assert.same({ false, 0, "reconnecting" }, { receive(c) }, "a later wsreceive")

        local o = await_open(c, 2, 3)
        assert.equal(1, o.attempt, "attempts this outage took (the peer was up)")
        assert.is_true(o.in_receive, "on_open runs inside wsreceive")
        assert.is_falsy(o.in_wsopen)
        assert.same({ "arg1", 7 }, o.args, "on_open gets the handler_args")
        within(o.t - e.t, 0.15, 0.6, "end to on_open (initial = 0.2)")
        local h2 = await_hello(c, 2, 3)
        assert.is_true(h2.n > h1.n, "hello from a new connection")
        assert.equal("open", state(c.conn))
        assert.same({ "open", "reconnecting", "open" }, c.states)

        -- Messages flow both ways on the new connection; nothing was queued during the wait.
        assert.is_true((timed("wssend", luws.wssend, c.conn, 1, "after")))
        assert(pump(c, function() return c.echoes[#c.echoes] == "after" end, 3),
               why(c, "no echo of 'after'"))
        local log = peer_log(tag)
        assert.equal(2, #log.conns, "connections the peer accepted")
        assert.same({}, log.conns[1].sent, "what the first connection got")
        assert.same({ "after" }, log.conns[2].sent, "what the second connection got")
        assert.same({}, slow_since(mark), "luws calls over 50 ms")
      end)
    end

    it("with reconnect = true waits the default initial (1 s, jitter 0.25) before the " ..
       "first attempt", function()
      local tag = new_tag()
      local c = client(tag, { reconnect = true })
      finally(function() close_client(c) end)
      await_hello(c, 1, 3)
      ctl("/fin?tag=" .. tag)
      local r, e = await_end(c, 3)
      assert_reconnecting_return(r)
      local o = await_open(c, 2, 4)
      assert.equal(1, o.attempt)
      within(o.t - e.t, 0.7, 1.4, "end to on_open (default initial 1 s, jitter 0.25)")
      io.write(("\n[reconnect] reconnect = true: back %.3f s after the end\n"):format(o.t - e.t))
      await_hello(c, 2, 3)
    end)
  end)

  describe("with the LuWS API, when the peer stalls (stops sending and reading)", function()
    local CASES = {
      { "receive_timeout = 0.5", { receive_timeout = 0.5 }, "message timeout" },
      { "keepalive = 0.3", { keepalive = 0.3 }, "receiver error: keepalive timeout" },
    }
    for _, case in ipairs(CASES) do
      local title, opts, msg = case[1], case[2], case[3]
      it("with " .. title .. ", ends it with '" .. msg .. "' and then reconnects", function()
        local mark = #STATS.slow
        local tag = new_tag()
        local c = client(tag, opts)
        finally(function() close_client(c) end)
        local h1 = await_hello(c, 1, 3)
        ctl("/stall?tag=" .. tag)
        local t_stall = now()
        local r, e = await_end(c, 3)
        assert.equal(msg, e.msg)
        assert_reconnecting_return(r)
        within(e.t - t_stall, 0.3, 1.5, "stall to timeout")
        assert.equal("reconnecting", state(c.conn))
        local o = await_open(c, 2, 3)
        assert.equal(1, o.attempt)
        local h2 = await_hello(c, 2, 3)
        assert.is_true(h2.n > h1.n)
        -- The new connection is not stalled: it stays up past the timeout.
        local n = #c.msgs
        pump_for(c, 1.2)
        assert.equal(2, #c.opens, "no further outage on the fresh connection")
        assert.is_true(#c.msgs >= n + 8, "messages keep flowing: " .. (#c.msgs - n))
        assert.same({}, slow_since(mark), "luws calls over 50 ms")
      end)
    end
  end)

  describe("with the LuWS API, when a send stalls", function()
    -- Regression: an end found by wssend (the peer stopped reading) left the conn ended but not
    -- reconnecting until a wsreceive, which a plugin waiting only on live conns never makes.
    it("a send that times out ends it with 'send error: timeout' and reconnecting starts at once", function()
      local tag = new_tag()
      local c = client(tag, { send_timeout = 0.3 })
      finally(function() close_client(c) end)
      await_hello(c, 1, 3)
      ctl("/stall?tag=" .. tag)
      local big = string.rep("x", 1000000)
      local ok, err
      for _ = 1, 64 do
        ok, err = luws.wssend(c.conn, 2, big)
        if not ok then break end
      end
      assert.is_false(ok)
      assert.equal("send error: timeout", err)
      assert.equal("reconnecting", state(c.conn))
      assert.same({ false, "reconnecting" }, { luws.wssend(c.conn, 1, "x") })
      local o = await_open(c, 2, 3)
      assert.equal(1, o.attempt)
      await_hello(c, 2, 3)
    end)
  end)

  describe("backoff (initial 0.2, factor 2, max 1, jitter 0)", function()
    it("while the port refuses connections for 3 s, tries at 0.2, 0.6, 1.4, 2.4 and " ..
       "3.4 s after the end and is back with the 5th attempt", function()
      local mark = #STATS.slow
      local tag = new_tag()
      local c = client(tag)
      finally(function() close_client(c) end)
      local h1 = await_hello(c, 1, 3)
      local lines = ctl("/down?seconds=3&how=fin")
      local up_at = tonumber(lines[3]:match("^up_at (%S+)"))
      local r, e = await_end(c, 3)
      assert_reconnecting_return(r)
      local o = await_open(c, 2, 6)
      local h2 = await_hello(c, 2, 3)
      local log = peer_log(tag, 2, 3)
      local back = log.conns[2]
      io.write(("\n[reconnect] refused for 3 s: on_open %.3f s after the end, attempt %s; " ..
                "the peer accepted it %.3f s after the end, %.3f s after it listened " ..
                "again (expected 3.4 s, attempt 5)\n"):format(o.t - e.t, tostring(o.attempt),
                back and back.t - e.t or -1, back and back.t - up_at or -1))
      assert.equal(5, o.attempt, "attempts this outage took")
      within(o.t - e.t, 3.25, 3.7, "end to on_open")
      assert.equal(2, #log.conns, "connections the peer accepted (refused ones are not)")
      within(back.t - e.t, 3.25, 3.65, "end to the peer's accept of the 5th attempt")
      assert.is_true(h2.n == back.n and h2.n > h1.n, "the hello comes from the new connection")
      assert.equal("open", state(c.conn))
      assert.same({}, slow_since(mark), "luws calls over 50 ms")
    end)

    it("while the peer answers 503 for 2 s, its accept log shows attempts 0.2, 0.4, 0.8 " ..
       "and 1.0 s apart", function()
      local mark = #STATS.slow
      local tag = new_tag()
      local c = client(tag)
      finally(function() close_client(c) end)
      await_hello(c, 1, 3)
      ctl("/reject?seconds=2&status=503")
      ctl("/fin?tag=" .. tag)
      local r, e = await_end(c, 3)
      assert_reconnecting_return(r)
      local o = await_open(c, 2, 5)
      await_hello(c, 2, 3)
      local log = peer_log(tag, 5, 3)
      local gaps, last, kinds = {}, e.t, {}
      for i = 2, #log.conns do
        gaps[#gaps + 1] = ("%.3f"):format(log.conns[i].t - last)
        last = log.conns[i].t
        kinds[#kinds + 1] = log.conns[i].kind
      end
      io.write(("\n[reconnect] 503 for 2 s: attempts (accept log) %s s apart, the first " ..
                "after the end (expected 0.2 0.4 0.8 1.0); on_open attempt %s\n"):format(
                table.concat(gaps, " "), tostring(o.attempt)))
      assert.same({ "rejected", "rejected", "rejected", "ws" }, kinds, "accepted connections")
      local expected = { 0.2, 0.4, 0.8, 1.0 }
      for i = 1, 4 do
        within(tonumber(gaps[i]), expected[i] - 0.05, expected[i] + 0.15, "gap " .. i)
      end
      assert.equal(4, o.attempt)
      assert.same({}, slow_since(mark), "luws calls over 50 ms")
    end)

    it("grows across outages of short-lived connections and starts again at initial " ..
       "after a connection lived longer than max", function()
      local tag = new_tag()
      local c = client(tag)
      finally(function() close_client(c) end)
      await_hello(c, 1, 3)
      local delays = {}
      local function outage()
        ctl("/close?tag=" .. tag)
        local _, e = await_end(c, 3)
        local o = await_open(c, #c.opens + 1, 4)
        await_hello(c, #c.opens, 3)
        delays[#delays + 1] = o.t - e.t
        return o
      end
      outage()                         -- A: the first outage: initial
      outage()                         -- B: its connection lived ~0.1 s < max: grown
      local t_live = now()
      pump_for(c, 1.5)
      assert.is_true(now() - t_live >= 1.4)
      assert.equal(3, #c.opens, "no outage while living")
      outage()                         -- C: its connection lived 1.5 s > max: initial again
      io.write(("\n[reconnect] delays of three outages: %.3f (first), %.3f (after a 0.1 s " ..
                "connection), %.3f s (after a 1.5 s connection)\n"):format(unpack(delays)))
      within(delays[1], 0.15, 0.45, "first outage")
      assert(delays[2] > delays[1] + 0.1,
             ("the second outage (%.3f s) waits longer than the first (%.3f s)"):format(
               delays[2], delays[1]))
      within(delays[2], 0.3, 1.3, "second outage")
      within(delays[3], 0.15, 0.45, "outage after a connection that outlived max")
    end)
  end)

  describe("with attempts = 2, against a port that stays down", function()
    it("gives up after initial + initial*factor seconds: wsreceive returns nil and the " ..
       "last open failure, state 'closed'", function()
      local mark = #STATS.slow
      local tag = new_tag()
      local c = client(tag, { reconnect = backoff({ initial = 0.3, max = 5, attempts = 2 }) })
      finally(function()
        close_client(c)
        ctl("/up")
      end)
      await_hello(c, 1, 3)
      ctl("/down?seconds=30&how=fin")
      local r, e = await_end(c, 3)
      assert_reconnecting_return(r)
      pump_for(c, 3)
      assert(c.dead, why(c, "wsreceive never gave up"))
      local t_dead = now()
      io.write(("\n[reconnect] attempts = 2: gave up %.3f s after the end (expected 0.9 s): " ..
                "%s\n"):format(t_dead - e.t, c.dead))
      assert.equal(("nil, Connection to 127.0.0.1:%d failed: connection refused"):format(
        peer.port), c.rets[#c.rets])
      assert.equal("false, reconnecting", c.rets[#c.rets - 1], "before giving up")
      within(t_dead - e.t, 0.8, 1.3, "end to giving up")
      assert.equal("closed", state(c.conn))
      assert.equal(1, #c.opens)
      assert.is_nil((timed("wsreceive", luws.wsreceive, c.conn)))
      assert.is_false((timed("wssend", luws.wssend, c.conn, 1, "x")))
      assert.same({}, slow_since(mark), "luws calls over 50 ms")
    end)
  end)

  describe("wsclose during the wait", function()
    it("returns within 50 ms, leaves the conn 'closed' and no on_open follows even when " ..
       "the port is back", function()
      local tag = new_tag()
      local c = client(tag, { reconnect = backoff({ initial = 1, max = 5 }) })
      finally(function() close_client(c) end)
      await_hello(c, 1, 3)
      ctl("/down?seconds=0.4&how=reset")
      local r = await_end(c, 3)
      assert_reconnecting_return(r)
      socket.sleep(0.2)
      assert.same({ false, 0, "reconnecting" }, { receive(c) })
      local dt = H.elapsed(function() luws.wsclose(c.conn) end)
      io.write(("\n[reconnect] wsclose while reconnecting: %.4f s\n"):format(dt))
      assert(dt < LIMIT, ("wsclose took %.3f s"):format(dt))
      assert.equal("closed", state(c.conn))
      assert.same({ nil, "not connected" }, { timed("wsreceive", luws.wsreceive, c.conn) })
      -- Twice the delay: the port is back after 0.4 s, the attempt would have been at 1 s.
      local deadline = now() + 2
      while now() < deadline do
        socket.sleep(0.02)
        timed("wsreceive", luws.wsreceive, c.conn)
      end
      assert.equal(1, #c.opens, "on_open after wsclose")
      assert.equal(1, #peer_log(tag).conns, "connections the peer accepted after wsclose")
      assert.equal("closed", state(c.conn))
    end)
  end)

  describe("descriptors while reconnecting", function()
    it("getfd() is another descriptor that wakes socket.select, then luws.wait, when the " ..
       "connection is back, and changes again then", function()
      local mark = #STATS.slow
      local tag = new_tag()
      local c = client(tag)
      finally(function() close_client(c) end)
      await_hello(c, 1, 3)
      local fd0 = c.conn:getfd()
      ctl("/down?seconds=1&how=fin")
      assert_reconnecting_return((await_end(c, 3)))
      local fd1 = c.conn:getfd()
      assert.is_number(fd1)
      assert.is_true(fd1 >= 0, "a descriptor while reconnecting")
      assert.are_not.equal(fd0, fd1, "the descriptor while reconnecting is not the old socket")

      -- Sleep in socket.select only, wsreceive only when it says so.
      local function wait_back(sleep, what)
        local wakes, deadline = 0, now() + 5
        local opens = #c.opens
        while #c.opens == opens and now() < deadline and not c.dead do
          local ready = sleep()
          if ready then
            wakes = wakes + 1
            receive(c)
          end
        end
        assert(#c.opens > opens, why(c, what .. " never brought the connection back"))
        local back = c.opens[#c.opens]
        local log = peer_log(tag)
        local accepted = log.conns[#log.conns].t
        io.write(("\n[reconnect] %s: %d wake-ups, picked up %.3f s after the peer " ..
                  "accepted\n"):format(what, wakes, back.t - accepted))
        assert(wakes <= 12, what .. " woke " .. wakes .. " times (spinning?)")
        within(back.t - accepted, -0.05, 0.25, what .. ": accept to on_open")
        return back
      end
      wait_back(function()
        local r = socket.select({ c.conn }, nil, 3)
        return r and #r > 0
      end, "socket.select")
      local fd2 = c.conn:getfd()
      assert.are_not.equal(fd1, fd2, "the descriptor changes when the connection is back")
      await_hello(c, 2, 3)

      ctl("/close?tag=" .. tag)
      assert_reconnecting_return((await_end(c, 3)))
      local fd3 = c.conn:getfd()
      wait_back(function()
        local r = luws.wait({ c.conn }, 3)
        return r and r[1] == c.conn
      end, "luws.wait")
      assert.are_not.equal(fd3, c.conn:getfd())
      await_hello(c, 3, 3)
      assert.same({}, slow_since(mark), "luws calls over 50 ms")
    end)
  end)

  ------------------------------------------------------------------ a one-threaded host

  -- A Luup host on this one thread (like openLuup): a LuaSocket port 3480 served between the
  -- plugin's calls, answering each /data_request (Content-Length), queueing a job per Pid.
  local function new_host()
    local l = assert(socket.bind("127.0.0.1", 0, 64))
    l:settimeout(0)
    local _, port = l:getsockname()
    return { listener = l, port = tonumber(port), clients = {}, jobs = {}, requests = 0,
             pids = {}, errors = 0 }
  end

  local function host_serve(host)
    while true do
      local s = host.listener:accept()
      if not s then break end
      s:settimeout(0)
      host.clients[#host.clients + 1] = { sock = s, buf = "", out = "" }
    end
    local keep = {}
    for _, cl in ipairs(host.clients) do
      local data, err, partial = cl.sock:receive(8192)
      local chunk = data or partial
      if chunk and #chunk > 0 then cl.buf = cl.buf .. chunk end
      while true do
        local i = cl.buf:find("\r\n\r\n", 1, true)
        if not i then break end
        local head = cl.buf:sub(1, i - 1)
        cl.buf = cl.buf:sub(i + 4)
        host.requests = host.requests + 1
        local pid = head:match("[?&]Pid=([^&%s]*)")
        host.pids[tostring(pid)] = (host.pids[tostring(pid)] or 0) + 1
        if pid then host.jobs[#host.jobs + 1] = pid end
        local body = '{"u:HandleReceiveResponse": {"OK": "OK"}}'
        cl.out = cl.out .. "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" ..
                 "Content-Length: " .. #body .. "\r\n\r\n" .. body
      end
      if #cl.out > 0 then
        local i, serr, last = cl.sock:send(cl.out)
        local sent = i or last or 0
        cl.out = cl.out:sub(sent + 1)
        if not i and serr ~= "timeout" then host.errors = host.errors + 1; cl.out = "" end
      end
      if err and err ~= "timeout" then
        cl.sock:close()
      else
        keep[#keep + 1] = cl
      end
    end
    host.clients = keep
  end

  local function host_sleep(host, t)
    local r = { host.listener }
    for _, cl in ipairs(host.clients) do r[#r + 1] = cl.sock end
    socket.select(r, nil, t)
  end

  local function host_shutdown(host)
    for _, cl in ipairs(host.clients) do cl.sock:close() end
    host.clients = {}
    host.listener:close()
  end

  describe("a one-threaded Luup host with notify", function()
    it("brings every reconnection (after a Close, a reset and a 1 s refusal) to a plugin " ..
       "that calls wsreceive only from notification jobs, with no timer and no luws call " ..
       "over 50 ms", function()
      local mark = #STATS.slow
      local host = new_host()
      local tag = new_tag()
      local pid = "rc" .. math.random(1e6)
      local c
      finally(function()
        close_client(c)
        host_shutdown(host)
      end)
      c = client(tag, { notify = { device = 42, service = SID, port = host.port, pid = pid } })

      -- The host loop: reply pieces, requests, jobs, sleep; until cond() or timeout.
      local function run_until(cond, timeout, what)
        local deadline = now() + timeout
        while not cond() and now() < deadline and not c.dead do
          host_serve(host)
          local jobs = host.jobs
          host.jobs = {}
          for _, p in ipairs(jobs) do
            if p == pid and not c.dead then
              local more = receive(c)
              if more then host.jobs[#host.jobs + 1] = p end -- more waits: run again
            end
          end
          host_sleep(host, #host.jobs > 0 and 0 or 0.005)
        end
        assert(cond(), why(c, what .. (c.dead and "" or (" within " .. timeout .. " s")) ..
                            " (" .. host.requests .. " notifications)"))
      end

      run_until(function() return #c.hellos >= 1 end, 3, "the first hello")
      local attempts = {}
      for _, cmd in ipairs({ "close?tag=" .. tag, "reset?tag=" .. tag,
                             "down?seconds=1&how=fin" }) do
        local ends, opens, hellos = #c.ends, #c.opens, #c.hellos
        ctl("/" .. cmd)
        run_until(function() return #c.ends > ends end, 3, "the end after " .. cmd)
        assert_reconnecting_return(c.end_rets[#c.end_rets])
        run_until(function() return #c.opens > opens and #c.hellos > hellos end, 5,
                  "the reconnection after " .. cmd)
        local o = c.opens[#c.opens]
        assert.is_true(o.in_receive, "on_open inside a job's wsreceive")
        assert.is_true(o.attempt >= 1)
        attempts[#attempts + 1] = cmd:match("^%a+") .. " " .. o.attempt
        assert.is_true(c.hellos[#c.hellos].n > c.hellos[hellos].n)
      end
      io.write(("\n[reconnect] notify host: %d notifications, attempts per outage: %s, " ..
                "longest wsreceive %.4f s\n"):format(host.requests, list(attempts),
                STATS.max.wsreceive or 0))
      assert.equal(4, #c.opens)
      assert.same({ [pid] = host.requests }, host.pids, "every notification names the Pid")
      assert.equal(0, host.errors)
      assert.same({}, slow_since(mark), "luws calls over 50 ms")
    end)
  end)

  ------------------------------------------------------------------ verawebsockets

  describe("with verawebsockets, non-standalone", function()
    local function record()
      local events = {}
      local t0 = now()
      local handlers = {
        [1] = function(reason, wso, detail)
          events[#events + 1] = { 1, reason, detail, t = now() }
        end,
        [3] = function(wso) events[#events + 1] = { 3, t = now() } end,
        [4] = function(wso) events[#events + 1] = { 4, t = now() } end,
        [8] = function(data, wso, opcode) events[#events + 1] = { 8, data, t = now() } end,
      }
      return handlers, events, t0
    end

    -- loop() every 20 ms, timed, until cond() or timeout.
    local function loop_until(cond, timeout)
      local deadline = now() + timeout
      while not cond() and now() < deadline do
        timed("loop", vws.loop)
        socket.sleep(0.02)
      end
      return cond()
    end

    local function summary(events, from)
      local t = {}
      for i = from or 1, #events do
        local e = events[i]
        t[#t + 1] = e[1] == 8 and ("8 " .. tostring(e[2])) or
                    e[1] == 1 and ("1 " .. tostring(e[2])) or tostring(e[1])
      end
      return table.concat(t, ", ")
    end

    local function find(events, from, pred)
      for i = from, #events do if pred(events[i]) then return i end end
    end

    it("after the server closes: event 4, event 1 for each refused attempt, then event 3 " ..
       "and event 8 again; loop() never holds the caller 50 ms", function()
      local mark = #STATS.slow
      local tag = new_tag()
      local handlers, events = record()
      local wso = vws.create(peer.url .. "/push?every=0.1&tag=" .. tag, handlers, nil, false,
                             { reconnect = backoff() })
      finally(function()
        pcall(vws.close, wso)
        loop_until(function() return false end, 0.1)
      end)
      timed("connect", vws.connect, wso)
      assert(loop_until(function()
        return find(events, 1, function(e) return e[1] == 8 end) ~= nil
      end, 3), "no message: " .. summary(events))
      assert.equal(3, events[1][1])
      local lines = ctl("/down?seconds=1&how=close")
      local up_at = tonumber(lines[3]:match("^up_at (%S+)"))
      local i4
      assert(loop_until(function()
        i4 = find(events, 1, function(e) return e[1] == 4 end)
        return i4 and find(events, i4, function(e)
          return e[1] == 8 and tostring(e[2]):match("^hello ")
        end) ~= nil
      end, 5), "no reconnection: " .. summary(events))
      local i3 = find(events, i4, function(e) return e[1] == 3 end)
      assert(i3, "no event 3 after event 4: " .. summary(events, i4))
      local ones, times = {}, {}
      for i = i4 + 1, i3 - 1 do
        local e = events[i]
        assert.equal(1, e[1], "events between 4 and 3: " .. summary(events, i4))
        assert.equal("connect failed", e[2])
        assert.matches("^Connection to 127%.0%.0%.1:" .. peer.port ..
                       " failed: connection refused$", e[3])
        ones[#ones + 1] = e
        times[#times + 1] = ("%.3f"):format(e.t - events[i4].t)
      end
      times[#times + 1] = ("%.3f (event 3)"):format(events[i3].t - events[i4].t)
      io.write(("\n[reconnect] verawebsockets, refused for 1 s: event 1 at %s s after " ..
                "event 4 (expected 0.2, 0.6, then event 3 at 1.4; the port listened again " ..
                "%.3f s after event 4); longest loop() %.4f s\n"):format(
                table.concat(times, ", "), up_at - events[i4].t, STATS.max.loop or 0))
      assert.equal(2, #ones, "refused attempts: " .. summary(events, i4))
      within(ones[1].t - events[i4].t, 0.15, 0.35, "event 4 to the first event 1")
      within(ones[2].t - events[i4].t, 0.55, 0.8, "event 4 to the second event 1")
      within(events[i3].t - events[i4].t, 1.35, 1.65, "event 4 to event 3")
      local before = find(events, 1, function(e) return e[1] == 8 end)
      local after = find(events, i3, function(e) return e[1] == 8 end)
      assert.is_true(tonumber(events[after][2]:match("%d+")) >
                     tonumber(events[before][2]:match("%d+")), "hello from a new connection")
      assert.is_true(vws.send(wso, "again"))
      assert(loop_until(function()
        return find(events, i3, function(e) return e[2] == "echo again" end) ~= nil
      end, 3), "no echo on the new connection: " .. summary(events, i3))
      vws.close(wso)
      assert(loop_until(function()
        return find(events, i3, function(e) return e[1] == 4 end) ~= nil
      end, 3), "no event 4 after close: " .. summary(events, i3))
      assert.same({}, slow_since(mark), "luws calls over 50 ms")
    end)

    it("close(wso) during the wait stops it: no event 3 or 8 afterwards, no connection " ..
       "reaches the server", function()
      local mark = #STATS.slow
      local tag = new_tag()
      local handlers, events = record()
      local wso = vws.create(peer.url .. "/push?every=0.1&tag=" .. tag, handlers, nil, false,
                             { reconnect = backoff({ initial = 0.8, max = 5 }) })
      finally(function() pcall(vws.close, wso) end)
      vws.connect(wso)
      assert(loop_until(function()
        return find(events, 1, function(e) return e[1] == 8 end) ~= nil
      end, 3), "no message: " .. summary(events))
      ctl("/down?seconds=0.3&how=fin")
      assert(loop_until(function()
        return find(events, 1, function(e) return e[1] == 4 end) ~= nil
      end, 3), "no event 4: " .. summary(events))
      loop_until(function() return false end, 0.2)
      local n = #events
      local dt = H.elapsed(function() vws.close(wso) end)
      assert(dt < LIMIT, ("close(wso) took %.3f s"):format(dt))
      loop_until(function() return false end, 1.6) -- twice the delay
      io.write(("\n[reconnect] verawebsockets close(wso) while waiting: %.4f s; events " ..
                "after it: %s\n"):format(dt, summary(events, n + 1)))
      assert.is_nil(find(events, n + 1, function(e) return e[1] == 3 or e[1] == 8 end),
                    "events after close: " .. summary(events, n + 1))
      assert.equal(1, #peer_log(tag).conns, "connections the server accepted")
      assert.same({}, slow_since(mark), "luws calls over 50 ms")
    end)
  end)
end)
