-- A one-threaded Luup host (like openLuup) and the notify option: luws must never stall it.
--
-- openLuup runs every plugin, its scheduler and its HTTP port 3480 on one Lua thread. Here that
-- thread is this busted process: the "host" below is a LuaSocket listener served only between
-- the host's own calls into luws, answering like openLuup (HTTP/1.1, chunked, keep-alive, the
-- reply written in pieces over several loop passes, the connection then held open); each
-- notification's Pid names a connection and queues a job that calls wsreceive on it.
--
-- What this pins (the regression): when a server ended a notify connection (Close frame, bare
-- FIN or reset), wsreceive, wsclose and the garbage collector joined the watcher thread while it
-- waited up to 2 s for the host's HTTP reply -- a reply the host cannot send while its only
-- thread waits -- so the whole host froze ~2 s; and a notification must never reach the host
-- for a connection the plugin has already seen end (or closed, or dropped). So:
--   * every luws call (wsopen excepted) and every collectgarbage() that frees a dropped notify
--     connection returns within 50 ms, with the host port answering, accepting and never
--     answering, or black-holed (SYNs dropped);
--   * when the plugin sees a connection end, the host drains its port at once without blocking;
--     any notification for that Pid read later is a failure;
--   * the host writes every reply to its end (the notifier reads it all): no "error lines";
--   * (seen while writing this) a wsclose with messages still unread returns as soon as the
--     peer has answered its Close, instead of spinning until close_timeout.
-- Moments are drawn from math.random seeded with $LUWS_SEED (default 20358).
-- The WebSocket peer is spec/servers/stream_peer.py (streams messages, then ends as told).
-- Longest call per kind and error lines per notification are printed for each host kind.

local H = spec_helper
local luws = H.luws
local socket = H.socket

local SID = "urn:luws-test:serviceId:HostStall1"
local LIMIT = 0.05      -- seconds a luws call may hold the host
local ROUND_WAIT = 5    -- seconds a round may take, time spent inside luws calls not counted
local MAX_HELD = 32     -- connections the host keeps open after answering (openLuup: ~90 s)
local SEED = tonumber(os.getenv("LUWS_SEED") or "") or 20358

-------------------------------------------------------------------- the WebSocket peer

local servers_dir = (function()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "spec"
  return dir .. "/servers"
end)()

-- Starts spec/servers/stream_peer.py; returns { port, pid, handle }.
local function start_stream_peer()
  local python = os.getenv("LUWS_PYTHON") or "python3"
  local cmd = "exec '" .. python .. "' '" .. servers_dir .. "/stream_peer.py' 2>&1"
  local handle = assert(io.popen(cmd, "r"))
  local seen = {}
  for _ = 1, 50 do
    local line = handle:read("*l")
    if not line then break end
    local port, pid = line:match("^PORT (%d+) PID (%d+)$")
    if port then return { port = tonumber(port), pid = tonumber(pid), handle = handle } end
    seen[#seen + 1] = line
  end
  handle:close()
  error("stream_peer.py did not start: " .. table.concat(seen, "\n"), 0)
end

-- Stops the peer we started, by its PID (it exits on SIGTERM; pclose then reaps it).
local function stop_stream_peer(p)
  if not p or p.stopped then return end
  p.stopped = true
  os.execute("kill -TERM " .. p.pid .. " 2>/dev/null")
  p.handle:close()
end

-------------------------------------------------------------------- timing luws calls

-- Time spent by the host inside handlers (its drain), not charged to the luws call around it.
local excluded = 0

local function new_stats()
  return {
    max = { wsreceive = 0, wsclose = 0, gc = 0 }, calls = { wsreceive = 0, wsclose = 0, gc = 0 },
    slow = {}, in_luws = 0,
    notifications = 0, replies = 0, replies_done = 0, error_lines = 0, drained = 0,
    late = {}, stuck = {}, short = {}, wrong_end = {}, not_collected = 0, conns = 0,
    rounds = 0, ends = { close = 0, fin = 0, rst = 0, wsclose = 0, drop = 0 },
  }
end

-- Calls f(a) as the host would, charging its duration to `kind`.
local function timed(st, kind, what, f, a)
  local ex0 = excluded
  local t0 = socket.gettime()
  local r1, r2 = f(a)
  local dt = socket.gettime() - t0 - (excluded - ex0)
  st.calls[kind] = st.calls[kind] + 1
  st.in_luws = st.in_luws + dt
  if dt > st.max[kind] then st.max[kind] = dt end
  if dt > LIMIT then st.slow[#st.slow + 1] = ("%s %.3f s (%s)"):format(kind, dt, what) end
  return r1, r2
end

-------------------------------------------------------------------- the host's port 3480

-- openLuup's answer to /data_request?id=action, in the pieces it is written in.
local function reply_pieces()
  local body = '{"u:HandleReceiveResponse": {"OK": "OK"}}'
  return {
    "HTTP/1.1 200 OK\r\n",
    "Server: openLuup (luws host_stall_spec)\r\nContent-Type: application/json\r\n",
    "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n\r\n",
    ("%x\r\n"):format(#body) .. body .. "\r\n",
    "0\r\n\r\n",
  }
end

local Host = {}
Host.__index = Host

-- mode: "answer" (like openLuup), "silent" (accepts, never answers), "blackhole" (SYNs dropped).
local function new_host(mode, st)
  local self = setmetatable({ mode = mode, st = st, clients = {}, jobs = {}, gone = {},
                              fillers = {} }, Host)
  if mode == "blackhole" then
    -- Backlog 1, never accepted, its queue filled first: further SYNs are dropped.
    local l = assert(socket.tcp4())
    assert(l:bind("127.0.0.1", 0))
    assert(l:listen(1))
    self.listener = l
    local _, port = l:getsockname()
    self.port = tonumber(port)
    local hung = false
    for _ = 1, 6 do
      local c = assert(socket.tcp4())
      c:settimeout(0.2)
      if c:connect("127.0.0.1", self.port) then
        self.fillers[#self.fillers + 1] = c
      else
        c:close()
        hung = true
        break
      end
    end
    assert(hung, "could not fill the black-holed listener's queue: connects keep succeeding")
  else
    self.listener = assert(socket.bind("127.0.0.1", 0, 128))
    local _, port = self.listener:getsockname()
    self.port = tonumber(port)
  end
  self.listener:settimeout(0)
  return self
end

function Host:close_client(cl)
  if not cl.closed then
    cl.closed = true
    cl.sock:close()
  end
end

-- One request head read from a client: record it, check it is not late, answer, queue a job.
function Host:request(cl, head, draining)
  local st = self.st
  local target = head:match("^%u+ (%S+)") or ""
  local pid = target:match("[?&]Pid=([^&]*)")
  st.notifications = st.notifications + 1
  if draining then st.drained = st.drained + 1 end
  if pid and self.gone[pid] then
    st.late[#st.late + 1] = ("Pid %s, read %.3f s after the plugin %s"):format(
      pid, socket.gettime() - self.gone[pid].t, self.gone[pid].why)
  end
  if self.mode == "answer" then
    local pieces = reply_pieces()
    if cl.out then
      for _, p in ipairs(pieces) do cl.out[#cl.out + 1] = p end
    else
      cl.out = pieces
    end
    st.replies = st.replies + 1
    if pid then self.jobs[#self.jobs + 1] = pid end
  end
end

-- Accepts what is pending and reads what is readable; never blocks.
function Host:read_all(draining)
  if self.mode ~= "blackhole" then
    while true do
      local c = self.listener:accept()
      if not c then break end
      c:settimeout(0)
      self.clients[#self.clients + 1] = { sock = c, buf = "", t = socket.gettime() }
    end
  end
  for _, cl in ipairs(self.clients) do
    if not cl.closed then
      local data, err, partial = cl.sock:receive(8192)
      local chunk = data or partial
      if chunk and #chunk > 0 then
        cl.buf = cl.buf .. chunk
        while true do
          local i = cl.buf:find("\r\n\r\n", 1, true)
          if not i then break end
          local head = cl.buf:sub(1, i - 1)
          cl.buf = cl.buf:sub(i + 4)
          self:request(cl, head, draining)
        end
      end
      if err and err ~= "timeout" then
        -- The client closed (or reset): a reply not yet written completely is an error line.
        if cl.out then self.st.error_lines = self.st.error_lines + 1 end
        cl.out = nil
        self:close_client(cl)
      end
    end
  end
end

-- Writes the next piece of each reply queued in an earlier pass.
function Host:write_all()
  for _, cl in ipairs(self.clients) do
    if cl.out and not cl.closed then
      local piece = table.remove(cl.out, 1)
      local i, err, last = cl.sock:send(piece)
      if not i and err == "timeout" then
        table.insert(cl.out, 1, piece:sub((last or 0) + 1))
      elseif not i then
        self.st.error_lines = self.st.error_lines + 1
        cl.out = nil
        self:close_client(cl)
      elseif #cl.out == 0 then
        cl.out = nil
        cl.answered = true
        cl.t = socket.gettime()
        self.st.replies_done = self.st.replies_done + 1
      end
    end
  end
end

-- Forgets closed clients; keeps at most MAX_HELD idle ones open (the oldest go first).
function Host:prune()
  local keep, idle = {}, {}
  for _, cl in ipairs(self.clients) do
    if not cl.closed then
      keep[#keep + 1] = cl
      if not cl.out then idle[#idle + 1] = cl end
    end
  end
  if #idle > MAX_HELD then
    table.sort(idle, function(a, b) return a.t < b.t end)
    for i = 1, #idle - MAX_HELD do self:close_client(idle[i]) end
    local k2 = {}
    for _, cl in ipairs(keep) do if not cl.closed then k2[#k2 + 1] = cl end end
    keep = k2
  end
  self.clients = keep
end

-- The host's sleep between passes: select on its own sockets (never on luws's).
function Host:sleep(t)
  local r = {}
  if self.mode ~= "blackhole" then r[1] = self.listener end
  for _, cl in ipairs(self.clients) do
    if not cl.closed then r[#r + 1] = cl.sock end
  end
  socket.select(r, nil, t)
end

-- What the host does the moment the plugin learns a connection is gone.
function Host:mark_gone(pid, why)
  self:read_all(true)
  self.gone[pid] = { t = socket.gettime(), why = why }
end

function Host:shutdown()
  for _, cl in ipairs(self.clients) do self:close_client(cl) end
  self.clients = {}
  for _, c in ipairs(self.fillers) do c:close() end
  self.fillers = {}
  self.listener:close()
end

-------------------------------------------------------------------- the plugin

local ENDS = { "close", "fin", "rst" }

local function pick(list) return list[math.random(#list)] end

-- What connection `i` of round `round` does. In every other pair of rounds the plugin's own
-- wsclose (odd rounds) or drop (rounds 2, 5, 8...) comes early, while the other streams still
-- run and the notifications for them are in flight; in the rest all moments are random.
local function plan(round, i, n)
  local early = round % 4 == 1 or round % 4 == 2
  local p = { kind = ENDS[(round + i) % 3 + 1] }
  if i == n and round % 2 == 1 then
    p.kind = "wsclose"
  elseif i == n - 1 and round % 3 == 2 then
    p.kind = "drop"
  end
  if p.kind == "wsclose" or p.kind == "drop" then
    -- A long stream that the plugin ends itself, at a varied moment.
    p.count, p.interval, p.size, p.delay, p.peer_end = 40, 8, math.random(8, 600), 0, "none"
    p.at = (early and math.random(20, 60) or math.random(20, 250)) / 1000
  else
    p.count = math.random(1, 12)
    p.interval = pick({ 0, 3, 10, 25 })
    p.size = math.random(8, 3000)
    p.delay = early and pick({ 150, 200, 250 }) or pick({ 0, 0, 5, 20, 60 })
    p.peer_end = p.kind
  end
  return p
end

-- Runs one round: opens n notify connections to the peer, lets the host loop serve them (jobs
-- from notifications, or a poll timer), until every connection has ended or been closed.
local function run_round(host, peer, round, polling)
  local st = host.st
  local n = 4 + round % 3
  local recs, by_pid = {}, {}
  local probe = setmetatable({}, { __mode = "v" })
  local t_start = socket.gettime()

  local function finished(rec, why)
    rec.done = true
    host:mark_gone(rec.pid, why)
  end

  local function saw_end(rec, msg)
    if rec.ended then return end
    rec.ended, rec.end_msg = true, msg
    local t0 = socket.gettime()
    finished(rec, "saw the end (" .. msg .. ")")
    excluded = excluded + (socket.gettime() - t0)
  end

  local function receive(rec, via)
    if rec.done then return false end
    local more, err = timed(st, "wsreceive", rec.p.kind .. " " .. via, luws.wsreceive, rec.conn)
    if more == nil and not rec.ended then saw_end(rec, "wsreceive: " .. tostring(err)) end
    return more
  end

  for i = 1, n do
    local p = plan(round, i, n)
    local pid = ("hs%d_%d_%d"):format(round, i, math.random(1e6))
    local rec = { pid = pid, p = p, got = 0 }
    local url = ("ws://127.0.0.1:%d/s?count=%d&interval=%d&size=%d&delay=%d&end=%s"):format(
      peer.port, p.count, p.interval, p.size, p.delay, p.peer_end)
    local function handler(_, opcode, data)
      if opcode then
        rec.got = rec.got + 1
      else
        saw_end(rec, "handler: " .. tostring(data))
      end
    end
    rec.conn = H.open(url, handler,
                      { notify = { device = 42, service = SID, port = host.port, pid = pid } })
    probe[pid] = rec.conn
    if p.at then rec.at = socket.gettime() + p.at end
    recs[i], by_pid[pid] = rec, rec
    st.conns = st.conns + 1
    st.ends[p.kind] = st.ends[p.kind] + 1
  end

  local next_poll = socket.gettime()
  local function all_done()
    for _, rec in ipairs(recs) do if not rec.done then return false end end
    return true
  end
  local luws_at_start = st.in_luws
  while not all_done() and
        socket.gettime() < t_start + ROUND_WAIT + (st.in_luws - luws_at_start) do
    -- 1. reply pieces queued in earlier passes; 2. new requests; 3. jobs and timers; 4. sleep.
    host:write_all()
    host:read_all(false)
    local jobs = host.jobs
    host.jobs = {}
    for _, pid in ipairs(jobs) do
      local rec = by_pid[pid]
      if rec and receive(rec, "job") then host.jobs[#host.jobs + 1] = pid end -- more: again
    end
    local now = socket.gettime()
    if polling and now >= next_poll then
      next_poll = now + 0.02
      for _, rec in ipairs(recs) do
        for _ = 1, 10 do if not receive(rec, "poll") then break end end
      end
    end
    for _, rec in ipairs(recs) do
      if rec.at and not rec.done and socket.gettime() >= rec.at then
        if rec.p.kind == "wsclose" then
          timed(st, "wsclose", "plugin closes mid-stream", luws.wsclose, rec.conn)
          finished(rec, "closed it")
        else
          rec.conn = nil -- dropped without wsclose: the collector frees it, and its watcher
          timed(st, "gc", "a dropped notify conn", collectgarbage, "collect")
          if probe[rec.pid] ~= nil then st.not_collected = st.not_collected + 1 end
          finished(rec, "dropped it (collected)")
        end
      end
    end
    host:prune()
    host:sleep(#host.jobs > 0 and 0 or 0.003)
  end

  for _, rec in ipairs(recs) do
    if not rec.done then
      st.stuck[#st.stuck + 1] = ("%s (%s, %d of %d messages)"):format(rec.pid, rec.p.kind,
                                                                      rec.got, rec.p.count)
      timed(st, "wsclose", "stuck conn", luws.wsclose, rec.conn)
      finished(rec, "closed it (stuck)")
    elseif rec.ended then
      if rec.end_msg ~= "handler: receiver error: closed" then
        st.wrong_end[#st.wrong_end + 1] = rec.pid .. ": " .. rec.end_msg
      end
      -- Data sent before a reset may be lost with it; before a Close or FIN it may not.
      if rec.p.kind ~= "rst" and rec.got ~= rec.p.count then
        st.short[#st.short + 1] = ("%s (%s): %d of %d messages"):format(rec.pid, rec.p.kind,
                                                                          rec.got, rec.p.count)
      end
    end
    rec.conn = nil
  end
  st.rounds = st.rounds + 1
end

-------------------------------------------------------------------- the runs

local RUNS = {
  answer = { rounds = 20, budget = 15, polling = false, title = "port answers like openLuup" },
  silent = { rounds = 10, budget = 8, polling = true, title = "port accepts, never answers" },
  blackhole = { rounds = 10, budget = 8, polling = true, title = "port black-holed" },
}
local results = {}
local peer

local function report(mode, st, secs)
  local per = st.replies > 0 and st.error_lines / st.replies or 0
  io.write(("\n[host_stall] %s: %d rounds, %d conns (close %d, fin %d, rst %d, wsclose %d, " ..
            "drop %d), %.1f s; longest wsreceive %.4f s (%d calls), wsclose %.4f s (%d), " ..
            "gc %.4f s (%d); notifications %d (%d drained at an end), replies written to the end %d, error lines %d " ..
            "(%.2f per notification), late notifications %d, calls over %d ms %d, stuck %d\n")
           :format(RUNS[mode].title, st.rounds, st.conns, st.ends.close, st.ends.fin, st.ends.rst,
                   st.ends.wsclose, st.ends.drop, secs, st.max.wsreceive, st.calls.wsreceive,
                   st.max.wsclose, st.calls.wsclose, st.max.gc, st.calls.gc, st.notifications,
                   st.drained, st.replies_done, st.error_lines, per, #st.late, LIMIT * 1000, #st.slow, #st.stuck))
  for i = 1, math.min(#st.slow, 5) do io.write("  slow: " .. st.slow[i] .. "\n") end
  for i = 1, math.min(#st.late, 5) do io.write("  late: " .. st.late[i] .. "\n") end
  io.flush()
end

-- Runs (once) the rounds of one host kind and returns their stats. Rounds stop early when the
-- time budget is spent (a stalling build spends it in a few rounds; its failures are certain).
local function run(mode)
  if results[mode] then return results[mode] end
  local cfg = RUNS[mode]
  math.randomseed(SEED)
  local st = new_stats()
  local host = new_host(mode, st)
  local t0 = socket.gettime()
  local ok, err = pcall(function()
    for round = 1, cfg.rounds do
      if socket.gettime() - t0 > cfg.budget then break end
      run_round(host, peer, round, cfg.polling)
    end
    -- Late notifications may still be on their way: keep serving, without jobs, a moment.
    local quiet = socket.gettime() + 0.3
    while socket.gettime() < quiet do
      host:write_all()
      host:read_all(false)
      host.jobs = {}
      host:prune()
      host:sleep(0.003)
    end
  end)
  host:shutdown()
  collectgarbage("collect")
  if not ok then error(err, 0) end
  results[mode] = st
  report(mode, st, socket.gettime() - t0)
  return st
end

local function list(t) return table.concat(t, "; ") end

describe("a one-threaded Luup host running notify connections", function()
  setup(function() peer = start_stream_peer() end)
  teardown(function() stop_stream_peer(peer) end)

  describe("whose port 3480 answers like openLuup (chunked, keep-alive, in pieces)", function()
    it("is held at most 50 ms by any wsreceive, wsclose or collection while servers end " ..
       "their connections by Close, FIN and reset", function()
      local st = run("answer")
      assert.is_true(st.rounds >= 2, "rounds run: " .. st.rounds)
      assert.is_true(st.calls.gc >= 1 and st.calls.wsclose >= 1, "dropped and closed conns")
      assert.same({}, st.slow, "luws calls over 50 ms: " .. list(st.slow))
    end)

    it("gets no notification for a connection after the plugin has seen it end, closed it " ..
       "or dropped it", function()
      local st = run("answer")
      assert.is_true(st.notifications >= st.conns, st.notifications .. " notifications")
      assert.same({}, st.late, "late notifications: " .. list(st.late))
    end)

    it("writes every reply to its end: the notifier reads it all before closing " ..
       "(no error lines)", function()
      local st = run("answer")
      assert.is_true(st.replies > 0)
      assert.equal(0, st.error_lines, ("%d error lines for %d notifications"):format(
        st.error_lines, st.replies))
    end)

    it("brings every connection's messages and end to the plugin through notifications " ..
       "alone", function()
      local st = run("answer")
      assert.same({}, st.stuck, "never saw the end: " .. list(st.stuck))
      assert.same({}, st.short, "messages missing: " .. list(st.short))
      assert.same({}, st.wrong_end, "ends: " .. list(st.wrong_end))
      assert.equal(0, st.not_collected, "dropped conns the collector did not free")
    end)
  end)

  describe("whose port 3480 accepts and never answers (the plugin polls on a timer)", function()
    it("is held at most 50 ms by any wsreceive, wsclose or collection", function()
      local st = run("silent")
      assert.is_true(st.rounds >= 1 and st.calls.wsclose >= 1 and st.calls.gc >= 1)
      assert.same({}, st.slow, "luws calls over 50 ms: " .. list(st.slow))
    end)

    it("gets no notification after the plugin has seen a connection end, closed it or " ..
       "dropped it, and the plugin still sees every end", function()
      local st = run("silent")
      assert.same({}, st.late, "late notifications: " .. list(st.late))
      assert.same({}, st.stuck, "never saw the end: " .. list(st.stuck))
      assert.same({}, st.short, "messages missing: " .. list(st.short))
      assert.equal(0, st.not_collected, "dropped conns the collector did not free")
    end)
  end)

  describe("whose plugin closes a connection while messages are still unread", function()
    -- Not the notify path: isolates why a mid-stream wsclose can hold the host (close_timeout).
    it("gets wsclose back as soon as the peer has answered its Close", function()
      local st = new_stats()
      for _, q in ipairs({ "count=10&size=100", "count=1&size=4000", "count=40&size=300" }) do
        local conn = H.open(("ws://127.0.0.1:%d/s?end=none&%s"):format(peer.port, q),
                            function() end)
        socket.sleep(0.1) -- the messages are in; nobody has received them
        timed(st, "wsclose", q .. " unread", luws.wsclose, conn)
      end
      io.write(("\n[host_stall] wsclose with messages unread: longest %.4f s\n"):format(
        st.max.wsclose))
      assert.same({}, st.slow, "luws calls over 50 ms: " .. list(st.slow))
    end)
  end)

  describe("whose port 3480 is black-holed (SYNs dropped; the plugin polls on a timer)", function()
    it("is held at most 50 ms by any wsreceive, wsclose or collection", function()
      local st = run("blackhole")
      assert.is_true(st.rounds >= 1 and st.calls.wsclose >= 1 and st.calls.gc >= 1)
      assert.same({}, st.slow, "luws calls over 50 ms: " .. list(st.slow))
    end)

    it("still brings every message and end to the plugin", function()
      local st = run("blackhole")
      assert.same({}, st.stuck, "never saw the end: " .. list(st.stuck))
      assert.same({}, st.short, "messages missing: " .. list(st.short))
      assert.equal(0, st.not_collected, "dropped conns the collector did not free")
    end)
  end)
end)
