-- Leak check: N wsopen/wsclose cycles and N conns dropped without wsclose (left to the GC),
-- against a local echo server; prints fds and VmRSS before/after each phase and fails when
-- a phase leaves more descriptors open than it found or RSS more than 1 MiB above its start.
--
-- Design criteria
--   * Runnable on its own from the repository root: lua5.1 spec/leaks/cycles.lua [N] [options]
--     (tools/leaks.sh wraps it; spec/leaks/leaks_spec.lua runs a short version under busted).
--   * Descriptors are counted without pipes: the test servers' pipes are fixed, the listing's
--     own pipe may be seen twice while popen sets it up, and luws never creates a pipe.
--   * Every wait is bounded; a cycle that cannot open or echo fails the run at once.
--   * The baseline is taken after a warm-up (allocator arenas, Lua's string table, the
--     OpenSSL/libc lazily-initialised state), so a phase's growth is what the cycles left.
--   * Exit status 0 when every phase passed, 1 otherwise; the last line is "N passed, N failed".
--   * When every phase passed the script returns normally, so the Lua state is closed and its
--     finalizers run (valgrind then sees the module's teardown as well).
--
-- Options: --phases open,drop   which phases (default both)
--          --echo               send one message per cycle and wait for its echo (default on;
--                               --no-echo only opens and closes)
--          --tls                use a wss:// echo server (self-signed) instead of ws://
--          --warmup N           warm-up cycles per phase (default min(N, 200))
--          --rss-limit KiB      allowed RSS growth per phase (default 1024)
--          --quiet              only the summary lines
--          --server echo|bad    the echo server: Python websockets (default) or bad_server /echo

io.stdout:setvbuf("line")

local root = (arg and arg[0] or ""):match("^(.*)/spec/leaks/[^/]*$")
if root and root ~= "" and root ~= "." then
  package.path = root .. "/?.lua;" .. root .. "/lua/?.lua;" .. package.path
  if not os.getenv("LUWS_CPATH") then package.cpath = root .. "/target/lua51/?.so;" .. package.cpath end
end

local H = require "spec.helper"
local luws, socket = H.luws, H.socket

local opts = { n = 10000, phases = { open = true, drop = true }, echo = true, tls = false,
               rss_limit = 1024, server = "echo" }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a:match("^%d+$") then opts.n = tonumber(a)
    elseif a == "--phases" then
      i = i + 1
      opts.phases = {}
      for p in tostring(arg[i]):gmatch("[^,]+") do opts.phases[p] = true end
    elseif a == "--echo" then opts.echo = true
    elseif a == "--no-echo" then opts.echo = false
    elseif a == "--tls" then opts.tls = true
    elseif a == "--warmup" then i = i + 1; opts.warmup = tonumber(arg[i])
    elseif a == "--rss-limit" then i = i + 1; opts.rss_limit = tonumber(arg[i])
    elseif a == "--server" then i = i + 1; opts.server = arg[i]
    elseif a == "--quiet" then opts.quiet = true
    else
      io.stderr:write("usage: lua5.1 spec/leaks/cycles.lua [N] [--phases open,drop] [--no-echo]",
                      " [--tls] [--warmup N] [--rss-limit KiB] [--server echo|bad] [--quiet]\n")
      os.exit(2)
    end
    i = i + 1
  end
end
opts.warmup = opts.warmup or math.min(opts.n, 200)

local function say(...) if not opts.quiet then print(...) end end

--- VmRSS of this process in KiB.
local function rss()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

--- What this process's descriptors point to: { [fd] = target }.
local function fd_table()
  local t = {}
  local p = io.popen("ls -l /proc/" .. H.pid() .. "/fd 2>/dev/null")
  for line in p:lines() do
    local fd, target = line:match(" (%d+) %-> (.*)$")
    if fd then t[tonumber(fd)] = target end
  end
  p:close()
  return t
end

--- Open descriptors other than pipes. The pipes are the test servers' (fixed) and the listing's
--- own, which `ls` may see twice while popen is still setting it up; luws never makes pipes.
local function count_fds()
  local n = 0
  for _, target in pairs(fd_table()) do
    if not target:match("^pipe:") then n = n + 1 end
  end
  return n
end

--- The descriptors in `after` that were not in `before`, as "fd -> target" strings.
local function new_fds(before, after)
  local out = {}
  for fd, target in pairs(after) do
    if before[fd] ~= target and not target:match("^pipe:") then
      out[#out + 1] = fd .. " -> " .. target
    end
  end
  table.sort(out)
  return out
end

local function full_gc()
  for _ = 1, 3 do collectgarbage("collect") end
end

local server
if opts.server == "bad" then
  server = H.servers.start("bad", { tls = opts.tls or nil })
else
  server = H.servers.start("echo", { tls = opts.tls or nil })
end
local url = opts.server == "bad" and server.url("/echo") or server.url("/")
local open_opts = function() return { connect_timeout = 5, handshake_timeout = 5 } end

local received
local function handler(conn, op, data) received = data end

--- Opens, optionally echoes one message, and returns the conn (still open).
local function open_one(i)
  local conn, err = luws.wsopen(url, handler, open_opts())
  if not conn then error("cycle " .. i .. ": wsopen: " .. tostring(err), 0) end
  if opts.echo then
    received = nil
    local msg = "cycle " .. i
    local ok, e = luws.wssend(conn, 1, msg)
    if not ok then error("cycle " .. i .. ": wssend: " .. tostring(e), 0) end
    local deadline = socket.gettime() + 5
    while received ~= msg do
      local more, e2 = luws.wsreceive(conn)
      if more == nil then error("cycle " .. i .. ": wsreceive: " .. tostring(e2), 0) end
      if received == msg then break end
      if socket.gettime() > deadline then error("cycle " .. i .. ": no echo within 5 s", 0) end
      if not more then luws.wait({ conn }, 0.5) end
    end
  end
  return conn
end

local phases = {
  open = {
    title = "wsopen/wsclose",
    cycle = function(i)
      local conn = open_one(i)
      luws.wsclose(conn)
      if conn:getfd() ~= -1 then error("cycle " .. i .. ": socket still open after wsclose", 0) end
    end,
  },
  drop = {
    title = "dropped without wsclose (GC)",
    cycle = function(i)
      local conn = open_one(i)
      conn = nil -- luacheck: ignore
    end,
  },
}

local passed, failed = 0, 0
local results = {}

local function run_phase(name)
  local p = phases[name]
  -- Warm-up: the same work, unmeasured.
  for i = 1, opts.warmup do p.cycle(-i) end
  full_gc()
  local table0 = fd_table()
  local fds0, rss0 = count_fds(), rss()
  local t0 = socket.gettime()
  local peak_fds, peak_rss = fds0, rss0
  local step = math.max(1, math.floor(opts.n / 10))
  for i = 1, opts.n do
    p.cycle(i)
    if i % step == 0 then
      local f, r = count_fds(), rss()
      if f > peak_fds then peak_fds = f end
      if r > peak_rss then peak_rss = r end
      say(string.format("  %-30s %6d/%d  fds %4d  rss %6d KiB  %.1f s", p.title, i, opts.n, f, r,
        socket.gettime() - t0))
    end
  end
  local t = socket.gettime() - t0
  full_gc()
  -- Sockets the peer has not finished closing are gone from our fd table at once; give the
  -- GC'd conns' descriptors no grace: they must already be closed.
  local fds1, rss1 = count_fds(), rss()
  local ok = fds1 <= fds0 and (rss1 - rss0) <= opts.rss_limit
  if ok then passed = passed + 1 else failed = failed + 1 end
  local line = string.format(
    "%s %s: %d cycles in %.1f s (%.2f ms/cycle): fds %d -> %d (peak %d), " ..
    "VmRSS %d -> %d KiB (%+d KiB, peak %d, limit +%d)",
    ok and "ok" or "FAIL", p.title, opts.n, t, t * 1000 / opts.n, fds0, fds1, peak_fds,
    rss0, rss1, rss1 - rss0, peak_rss, opts.rss_limit)
  results[#results + 1] = line
  print(line)
  if fds1 > fds0 then
    for _, d in ipairs(new_fds(table0, fd_table())) do print("  new descriptor: " .. d) end
  end
end

print(string.format("luws leak check: N=%d per phase, warm-up %d, %s%s", opts.n, opts.warmup,
  url, opts.echo and ", one echo per cycle" or ""))
local ok, err = pcall(function()
  for _, name in ipairs({ "open", "drop" }) do
    if opts.phases[name] then run_phase(name) end
  end
end)
if not ok then
  failed = failed + 1
  print("FAIL: " .. tostring(err))
end
-- Stop the server before the state closes (a finalizer-time pclose could wait on it).
H.servers.cleanup()
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
-- A normal return closes the Lua state (lua.c calls lua_close), so under valgrind whatever the
-- module frees when its last objects are collected is checked too.
