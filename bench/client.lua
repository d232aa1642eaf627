-- luws benchmark client (Lua 5.1): the same work as the Rust ceiling (src/client.rs), and the
-- large-JSON modes (json, json-deflate), which only luws runs.
--   lua5.1 client.lua MODE COUNT SIZE URL
-- prints one "RESULT key=value ..." line; secs is the timed part only (after the connection is
-- open, except for openclose). luws.so must be on package.cpath (the driver sets LUA_CPATH).

local mode, count, size, url = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
if not (mode and count and size and url) then
  io.stderr:write("usage: lua5.1 client.lua MODE COUNT SIZE URL\n")
  os.exit(2)
end

local luws = require "luws"
local socket = require "socket"
local now = socket.gettime

-- Must match ECHO_TEXT in src/client.rs.
local ECHO_TEXT = "luws-bench echo 32 bytes payload"
assert(#ECHO_TEXT == 32)

local function die(...)
  io.stderr:write("lua client: ", table.concat({ ... }, " "), "\n")
  os.exit(1)
end

-- Block until the connection is readable (or buffered data waits): luws.wait when the module
-- has it, else LuaSocket's select (the conn has getfd and dirty).
local wait, waiter
if luws.wait then
  waiter = "luws.wait"
  wait = function(conn, t) return luws.wait({ conn }, t) end
else
  waiter = "socket.select"
  wait = function(conn, t) return socket.select({ conn }, nil, t) end
end

-- What the handler saw. A handler error is swallowed by luws, so failures are recorded here.
local got, last, failed = 0, nil, nil
local function handler(conn, op, data)
  if op == false then
    failed = data
  else
    got = got + 1
    last = data
  end
end

local function open(opts, h)
  local conn, err = luws.wsopen(url, h or handler, opts)
  if not conn then die("wsopen:", tostring(err)) end
  return conn
end

-- Waits, then receives, until `goal` messages have arrived in total. Waiting first is the
-- cheapest pattern when data is known not to be there yet; `more` (budget spent) skips the wait.
-- The clock is read only when nothing arrives for a while, to keep the harness's own cost low.
local function pump(conn, goal)
  local more, err = false, nil
  local idle, since = 0, nil
  while got < goal do
    if not more then
      wait(conn, 1)
    end
    local before = got
    more, err = luws.wsreceive(conn)
    if more == nil then die("wsreceive:", tostring(err)) end
    if failed then die("handler got error:", tostring(failed)) end
    if got == before then
      idle = idle + 1
      if idle % 64 == 0 then
        since = since or now()
        if now() - since > 30 then die("no message for 30 s; got", got, "of", goal) end
      end
    elseif idle > 0 then
      idle, since = 0, nil
    end
  end
end

local function result(extra)
  io.write("RESULT mode=", mode, " n=", count, " waiter=", waiter, " ", extra, "\n")
end

if mode == "echo" then
  local conn = open()
  local t0 = now()
  for i = 1, count do
    local ok, err = luws.wssend(conn, 1, ECHO_TEXT)
    if not ok then die("wssend:", tostring(err)) end
    pump(conn, i)
    if last ~= ECHO_TEXT then die("wrong echo") end
  end
  local secs = now() - t0
  luws.wsclose(conn)
  result(string.format("secs=%.6f", secs))
elseif mode == "recv" or mode == "big" then
  local opts = nil
  if mode == "big" then opts = { max_payload_size = 32 * 1024 * 1024 } end
  local conn = open(opts)
  local t0 = now()
  local ok, err = luws.wssend(conn, 1, "push " .. size .. " " .. count)
  if not ok then die("wssend:", tostring(err)) end
  pump(conn, count)
  if #last ~= size then die("wrong size", #last) end
  local secs = now() - t0
  last = nil
  luws.wsclose(conn)
  -- Peak RSS of this process image (VmHWM; getrusage's maxrss would include the parent's
  -- memory from before exec).
  local f = assert(io.open("/proc/self/status"))
  local hwm = tonumber(f:read("*a"):match("VmHWM:%s*(%d+)"))
  f:close()
  result(string.format("secs=%.6f hwm=%d", secs, hwm))
elseif mode == "json" or mode == "json-deflate" then
  -- count JSON state dumps of about `size` bytes (server: `json SIZE COUNT`), with
  -- permessage-deflate offered (json-deflate) or not, then the server's `wire BYTES`. Each
  -- document must be whole and in order: at least `size` bytes, starting {"id":<its index>,
  -- "type":"result" and ending with the last entity's }}]} (only those ends are looked at, so
  -- the check costs next to nothing).
  -- Timed from the first message's arrival to the last's: count - 1 messages, none of the
  -- server's preparing.
  local deflate = mode == "json-deflate"
  local t_first, t_last, bytes, wire = nil, nil, 0, nil
  local function json_handler(_, op, data)
    if op == false then
      failed = data
      return
    end
    if got == count then
      wire = tonumber(data:match("^wire (%d+)$"))
      if not wire then failed = "no wire count: " .. data:sub(1, 40) end
    else
      local id = tonumber(data:sub(1, 40):match('^{"id":(%d+),"type":"result",'))
      if op ~= 1 or id ~= got or #data < size or data:sub(-4) ~= "}}]}" then
        failed = "json message " .. got .. " incomplete or out of order (" .. #data .. " bytes)"
      end
      bytes = bytes + #data
      t_last = now()
      t_first = t_first or t_last
    end
    got = got + 1
    last = data
  end
  local conn = open({
    permessage_deflate = deflate,
    max_payload_size = math.max(4 * 1024 * 1024, 2 * size),
  }, json_handler)
  local agreed = conn:extensions().permessage_deflate ~= nil
  if agreed ~= deflate then die("permessage-deflate agreed:", tostring(agreed), "offered:", tostring(deflate)) end
  local ok, err = luws.wssend(conn, 1, "json " .. size .. " " .. count)
  if not ok then die("wssend:", tostring(err)) end
  pump(conn, count + 1)
  if failed then die(failed) end
  last = nil
  luws.wsclose(conn)
  result(string.format("secs=%.6f timed=%d bytes=%d wire=%d", t_last - t_first, count - 1, bytes, wire))
elseif mode == "send" then
  local conn = open()
  local payload = string.rep("Z", size)
  local t0 = now()
  for _ = 1, count do
    local ok, err = luws.wssend(conn, 2, payload)
    if not ok then die("wssend:", tostring(err)) end
  end
  local ok, err = luws.wssend(conn, 1, "done")
  if not ok then die("wssend:", tostring(err)) end
  pump(conn, 1)
  if last ~= "ack" then die("no ack") end
  local secs = now() - t0
  luws.wsclose(conn)
  result(string.format("secs=%.6f", secs))
elseif mode == "openclose" then
  local t0 = now()
  for _ = 1, count do
    luws.wsclose(open())
  end
  local secs = now() - t0
  result(string.format("secs=%.6f", secs))
elseif mode == "idle" then
  -- count wsreceive calls on a connection with nothing to read.
  local conn = open()
  local more, n = luws.wsreceive(conn)
  if more ~= false then die("idle connection not idle:", tostring(more), tostring(n)) end
  local receive = luws.wsreceive
  for _ = 1, count do
    receive(conn)
  end
  more, n = luws.wsreceive(conn)
  if more ~= false or got ~= 0 or failed then die("idle connection not idle") end
  luws.wsclose(conn)
  result("secs=0")
elseif mode == "wait" then
  -- count zero-timeout waits on a connection with nothing to read: the cost of the wait that
  -- every receive loop above makes between wsreceive calls.
  local conn = open()
  if luws.wsreceive(conn) ~= false then die("idle connection not idle") end
  for _ = 1, count do
    wait(conn, 0)
  end
  luws.wsclose(conn)
  result("secs=0")
elseif mode == "mem" then
  -- VmRSS before any connection, after a first one (which also faults in luws's code), after a
  -- second one, and after `count` more. Each connection has had one idle wsreceive.
  local function rss()
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)"))
  end
  local function settle()
    collectgarbage("collect")
    collectgarbage("collect")
    return rss()
  end
  local conns = {}
  local function add()
    local c = open()
    local more = luws.wsreceive(c)
    if more == nil then die("wsreceive failed on an idle connection") end
    conns[#conns + 1] = c
  end
  local r0 = settle()
  add()
  local r1 = settle()
  add()
  local r2 = settle()
  for _ = 1, count do add() end
  local r3 = settle()
  result(string.format("rss0=%d rss1=%d rss2=%d rss3=%d", r0, r1, r2, r3))
  for _, c in ipairs(conns) do luws.wsclose(c) end
else
  die("unknown mode", mode)
end
