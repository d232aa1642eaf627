-- Autobahn|Testsuite client for LuWS (Lua 5.1; also runs on 5.2-5.4).
--
-- Talks to `wstest -m fuzzingserver`: asks for the case count, runs every case
-- echoing each text/binary message back unchanged, then asks the server to
-- write its reports. Normally started by spec/autobahn/run.sh.
--
--   lua5.1 spec/autobahn/client.lua [base-url]
--
-- Environment: AUTOBAHN_URL (default ws://127.0.0.1:9001), AUTOBAHN_AGENT
-- (default luws), AUTOBAHN_DEFLATE=1 opens every case with permessage_deflate = true,
-- AUTOBAHN_CASE_TIMEOUT seconds per case (default 60), AUTOBAHN_VERBOSE=1 prints one
-- line per case.
--
-- Exit status: 0 when the run completed (pass/fail is decided from the
-- server's report by run.sh), 1 when the server could not be driven at all.

local luws = require "luws"

local has_socket, socket = pcall(require, "socket")
if not has_socket then socket = nil end

local base = arg and arg[1] or os.getenv("AUTOBAHN_URL") or "ws://127.0.0.1:9001"
base = base:gsub("/+$", "")
local agent = os.getenv("AUTOBAHN_AGENT") or "luws"
local case_timeout = tonumber(os.getenv("AUTOBAHN_CASE_TIMEOUT") or "") or 60
local verbose = (os.getenv("AUTOBAHN_VERBOSE") or "") ~= ""
local deflate = (os.getenv("AUTOBAHN_DEFLATE") or "") ~= ""

local case_options = { max_payload_size = 64 * 1024 * 1024, receive_timeout = 0 }
if deflate then case_options.permessage_deflate = true end

local now = socket and socket.gettime or os.time

local function log(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
  io.stdout:flush()
end

-- Waits a little for the connection to have work. Prefers luws.wait (if the
-- module has it), then luasocket's sleep; without either it spins (bounded by
-- the caller's deadline).
local function idle(conn, deadline)
  local remaining = deadline - now()
  if remaining <= 0 then return end
  if type(luws.wait) == "function" then
    local ok = pcall(luws.wait, { conn }, math.min(0.05, remaining))
    if ok then return end
  end
  if socket then socket.sleep(0.001) end
end

-- Drives one connection until the handler reports the close/error (state.closed),
-- wsreceive fails, a send fails, or the deadline passes.
-- Returns "closed" | "error" | "timeout", detail.
local function pump(conn, state, deadline)
  while true do
    if state.closed then return "closed", state.detail end
    if state.send_error then return "error", "wssend: " .. tostring(state.send_error) end
    if now() > deadline then return "timeout", "no close within deadline" end
    local more, n = luws.wsreceive(conn)
    if more == nil then
      if state.closed then return "closed", state.detail end
      return "error", "wsreceive: " .. tostring(n)
    end
    if not more and (n == 0 or n == nil) and not state.closed then
      idle(conn, deadline)
    end
  end
end

local function new_state()
  return { closed = false, detail = nil, send_error = nil, messages = 0, last_text = nil }
end

-- Handler that echoes every data message back with the same opcode.
local function echo_handler(state)
  return function(conn, opcode, data)
    if opcode == false or opcode == nil then
      state.closed = true
      state.detail = data
      return
    end
    if opcode == 1 or opcode == 2 then
      state.messages = state.messages + 1
      if not state.send_error then
        local ok, err = luws.wssend(conn, opcode, data)
        if not ok then state.send_error = err or "failed" end
      end
    end
  end
end

-- Handler that only records text messages (getCaseCount / updateReports).
local function record_handler(state)
  return function(conn, opcode, data)
    if opcode == false or opcode == nil then
      state.closed = true
      state.detail = data
    elseif opcode == 1 then
      state.last_text = data
    end
  end
end

-- Opens url, runs handler until close; returns outcome, detail, state.
local function session(url, make_handler, options, timeout)
  local state = new_state()
  local deadline = now() + timeout
  local conn, err = luws.wsopen(url, make_handler(state), options)
  if not conn then return "open-failed", tostring(err), state end
  local outcome, detail = pump(conn, state, deadline)
  pcall(luws.wsclose, conn)
  return outcome, detail, state
end

local started = now()

-- 1. case count
local outcome, detail, st = session(base .. "/getCaseCount", record_handler, { receive_timeout = 0 }, 15)
local count = tonumber(st.last_text or "")
if not count then
  log("autobahn client: could not get the case count from %s (%s: %s, message %s)",
      base, outcome, tostring(detail), tostring(st.last_text))
  os.exit(1)
end
log("autobahn client: %d cases against %s as agent %q, %s", count, base, agent,
    deflate and "permessage_deflate = true" or "no permessage-deflate")

-- 2. every case
local tally = { closed = 0, error = 0, timeout = 0, ["open-failed"] = 0 }
local problems = {}
for i = 1, count do
  local t0 = now()
  local url = string.format("%s/runCase?case=%d&agent=%s", base, i, agent)
  local o, d, s = session(url, echo_handler, case_options, case_timeout)
  tally[o] = (tally[o] or 0) + 1
  if o ~= "closed" then
    problems[#problems + 1] = string.format("case #%d: %s (%s)", i, o, tostring(d))
  end
  if verbose then
    log("case #%d: %s, %d messages echoed, %.2fs (%s)", i, o, s.messages, now() - t0, tostring(d))
  end
  if i % 50 == 0 or i == count then
    log("autobahn client: %d/%d cases done, %.0fs", i, count, now() - started)
  end
end

-- 3. reports
local ro, rd = session(base .. "/updateReports?agent=" .. agent, record_handler, { receive_timeout = 0 }, 120)
if ro ~= "closed" then
  log("autobahn client: updateReports ended with %s (%s)", ro, tostring(rd))
end

log("autobahn client: finished in %.0fs; connections closed %d, errors %d, timeouts %d, open failures %d",
    now() - started, tally.closed, tally.error, tally.timeout, tally["open-failed"])
for i = 1, math.min(#problems, 40) do log("  %s", problems[i]) end
if #problems > 40 then log("  ... %d more", #problems - 40) end
os.exit(0)
