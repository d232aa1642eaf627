-- Shared spec setup: finds the built module, starts test peers on demand, and offers bounded
-- waits so that no spec can hang. Every wait here has a deadline.
--
-- The module is taken from $LUWS_CPATH (a package.cpath pattern) or target/lua51/?.so.

local socket = require "socket"

package.cpath = (os.getenv("LUWS_CPATH") or "./target/lua51/?.so") .. ";" .. package.cpath
package.path = "./?.lua;./lua/?.lua;" .. package.path

local H = {}
_G.spec_helper = H

H.luws = require "luws"
H.servers = require "spec.support.servers"
H.socket = socket

local started = {}

-- Stop the servers when the run ends: the interpreter's exit would otherwise wait in pclose()
-- for servers that wait for it.
local ok_busted, busted = pcall(require, "busted")
if ok_busted and busted.subscribe then
  busted.subscribe({ "suite", "end" }, function()
    H.servers.cleanup()
    return nil, true
  end)
end

--- A server of `kind` ("bad" or "echo") with `opts`, started once per spec run and reused.
function H.server(kind, opts)
  local key = kind
  for k, v in pairs(opts or {}) do key = key .. "," .. tostring(k) .. "=" .. tostring(v) end
  if not started[key] then started[key] = H.servers.start(kind, opts) end
  return started[key]
end

--- A fresh id for the bad server's per-connection log.
function H.id() return H.servers.unique_id() end

--- Calls wsreceive until `done()` is true or `timeout` seconds pass; sleeps in select, never
--- spins. Returns true when done, false on timeout, or nil, err when wsreceive failed.
function H.pump(conn, done, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  while true do
    if done() then return true end
    local more, n = H.luws.wsreceive(conn)
    if more == nil then
      if done() then return true end
      return nil, n
    end
    if done() then return true end
    if socket.gettime() > deadline then return false end
    if not more then H.luws.wait({ conn }, 0.05) end
  end
end

--- Collects handler calls: returns handler, list. Each entry is { opcode, data, extra... }.
function H.recorder()
  local got = {}
  local function handler(conn, opcode, data, ...)
    got[#got + 1] = { opcode, data, ... }
  end
  return handler, got
end

--- Opens a connection, failing the spec with the error when it cannot.
function H.open(url, handler, opts)
  local conn, err = H.luws.wsopen(url, handler, opts)
  assert(conn, "wsopen " .. url .. ": " .. tostring(err))
  return conn
end

--- VmRSS of this process in KiB.
function H.rss()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

--- This process's descriptors: { [fd] = what it points to }.
function H.fd_table()
  local t = {}
  local p = io.popen("ls -l /proc/" .. H.pid() .. "/fd 2>/dev/null")
  for line in p:lines() do
    local fd, target = line:match(" (%d+) %-> (.*)$")
    if fd then t[tonumber(fd)] = target end
  end
  p:close()
  return t
end

--- What descriptor `fd` of this process refers to ("socket:[1234]"), or nil when it is closed.
function H.fd_target(fd)
  local p = io.popen("readlink /proc/" .. H.pid() .. "/fd/" .. tostring(fd) .. " 2>/dev/null")
  local t = p:read("*l")
  p:close()
  return t
end

function H.pid()
  if not H._pid then
    local f = io.open("/proc/self/stat")
    -- /proc/self for io.open is this process; read its pid from the stat line.
    H._pid = f:read("*l"):match("^(%d+)")
    f:close()
  end
  return H._pid
end

function H.elapsed(f)
  local t0 = socket.gettime()
  local a, b, c = f()
  return socket.gettime() - t0, a, b, c
end

return H
