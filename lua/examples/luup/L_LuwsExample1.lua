-- L_LuwsExample1.lua: a Luup plugin (Vera, openLuup) that keeps one WebSocket open with luws and
-- handles messages as they arrive. Loaded by I_LuwsExample1.xml through <files>, so the globals
-- below are the device's entry points (Luup's call_delay and <job> name functions, not values).
--
-- How arriving data gets handled:
--  * notify: a luws watcher thread asks Luup (HTTP GET on its port) to run our HandleReceive
--    action as soon as data arrives; its <job> calls wsreceive. This is SockProxy's mechanism
--    without SockProxy, and a message waits milliseconds, not a poll interval.
--  * a timer poll as a safety net: every 60 s once a notification has arrived, every 5 s until
--    then (if the watcher cannot reach Luup's port, the plugin still works, only slower).
--  * reconnect: when the connection ends, luws reopens it by itself off the Luup thread
--    (backoff 1, 2, 4 ... 300 s), tells Luup through notify when it is back, and calls on_open,
--    where the plugin subscribes (after the first open too). The plugin itself only retries a
--    first open that failed (after 1, 2, 4 ... 300 s).
--
-- Device variables (service urn:luws-example:serviceId:LuwsExample1): URL (ws:// or wss://),
-- Subscribe (a text message sent after each open, if set), LastMessage (what came last),
-- NotifyPort (the host's HTTP port, if neither 3480 nor what openLuup reports).

local SID = "urn:luws-example:serviceId:LuwsExample1"
local POLL_BACKUP, POLL_FALLBACK = 60, 5 -- seconds between polls: notify works / not (yet)
local BACKOFF_MAX = 300
local RECONNECT = { initial = 1, max = BACKOFF_MAX, factor = 2, jitter = 0.25 }

-- The drop-in pair shipped with the plugin (L_LuwsExample1_LuWS.lua + .so, renamed from the
-- release's L_Plugin_LuWS.*), else a luws installed on package.cpath.
local ok, luws = pcall(require, "L_LuwsExample1_LuWS")
if not ok then
  -- Keep the drop-in's own error (it names every path it tried): it is the one that matters
  -- when the plugin ships its copy.
  local shipped = luws
  ok, luws = pcall(require, "luws")
  if not ok then error("LuwsExample1: no luws: " .. tostring(shipped) .. "\n" .. tostring(luws), 0) end
end

local dev               -- our device number
local conn              -- the connection (open or reconnecting by itself), or nil
local gen = 0           -- connection generation: call_delay cannot be cancelled, so every timer
                        -- carries the generation it was set for and a stale one does nothing
local backoff = 0       -- the last retry delay of a first open (0: none since one succeeded)
local notify_seen = false

local function log(msg) luup.log("LuwsExample1: " .. tostring(msg)) end

local function getvar(name, default)
  local v = luup.variable_get(SID, name, dev)
  if v == nil or v == "" then return default end
  return v
end

-- The port the host serves Luup requests on: Vera's is always 3480; openLuup's can be another
-- (its command line or openLuup.HTTP.Port), and it reports the one in use as that attribute.
local function host_port()
  local port = tonumber(getvar("NotifyPort", nil))
  if port then return port end
  local ok, attr = pcall(luup.attr_get, "openLuup.HTTP.Port", 0)
  return ok and tonumber(attr) or 3480
end

local function on_message(_, opcode, data)
  if opcode then
    -- A real plugin decodes and dispatches here (e.g. JSON). Keep handlers quick: they run
    -- inside the job that called wsreceive.
    luup.variable_set(SID, "LastMessage", opcode == 1 and data or ("<" .. #data .. " bytes>"), dev)
  else
    log("connection ended: " .. tostring(data)) -- luws reconnects by itself (on_open follows)
  end
end

-- After every successful open, the first one (attempt 0) and each reconnection: subscribe.
local function on_open(c, attempt)
  log(attempt == 0 and ("connected to " .. tostring(c))
      or ("reconnected to " .. tostring(c) .. " after " .. attempt .. " attempt(s)"))
  local subscribe = getvar("Subscribe", nil)
  if subscribe then luws.wssend(c, 1, subscribe) end
end

local function schedule_reconnect()
  backoff = math.min(backoff == 0 and 1 or backoff * 2, BACKOFF_MAX)
  log("reconnecting in " .. backoff .. " s")
  luup.call_delay("luwsExample1Reconnect", backoff, tostring(gen))
end

local function schedule_poll()
  luup.call_delay("luwsExample1Poll", notify_seen and POLL_BACKUP or POLL_FALLBACK, tostring(gen))
end

-- Handles whatever is waiting; never blocks.
local function receive()
  if not conn then return end
  local more, err = luws.wsreceive(conn)
  if more == nil then
    -- Gone for good (reconnect gave up, which it does not without `attempts`): start over.
    log("receive: " .. tostring(err))
    luws.wsclose(conn) -- always, to release the socket
    conn = nil
    schedule_reconnect()
  elseif more then
    -- The per-call read budget is spent and data is still waiting: continue at once, but in a
    -- new job so that other plugins get their turn.
    luup.call_delay("luwsExample1More", 0, tostring(gen))
  end
end

local function open()
  gen = gen + 1
  local c, err = luws.wsopen(getvar("URL", "ws://127.0.0.1:8080/"), on_message, {
    connect_timeout = 5, -- the first wsopen blocks the Luup engine while it connects: keep that short
    reconnect = RECONNECT, -- later opens run off the Luup thread
    on_open = on_open,
    -- Pid = our generation, so a late notification for an older connection is recognised.
    notify = { device = dev, service = SID, action = "HandleReceive", pid = tostring(gen),
               port = host_port() },
  })
  if not c then
    log("open failed: " .. tostring(err))
    schedule_reconnect()
    return
  end
  conn, backoff = c, 0
  schedule_poll()
end

-- Timers (luup.call_delay targets). `g` is the generation the timer was set for.

function luwsExample1Poll(g)
  if g ~= tostring(gen) then return end
  receive()
  if conn and g == tostring(gen) then schedule_poll() end
end

function luwsExample1More(g)
  if g == tostring(gen) then receive() end
end

function luwsExample1Reconnect(g)
  if g == tostring(gen) and not conn then open() end
end

-- The HandleReceive action's job (I_LuwsExample1.xml): luws says data is waiting on connection
-- `settings.Pid`. Return 4 (job done), 0.
function luwsExample1HandleReceive(_, settings)
  notify_seen = true -- notifications reach us: the poll can relax to a 60 s backup
  if settings and settings.Pid == tostring(gen) then receive() end
  return 4, 0
end

function luwsExample1Startup(dev_num)
  dev = tonumber(dev_num)
  if not luup.variable_get(SID, "URL", dev) then
    luup.variable_set(SID, "URL", "ws://127.0.0.1:8080/", dev) -- shows the setting in the UI
  end
  -- Open from a timer, not here: startup should return quickly.
  luup.call_delay("luwsExample1Reconnect", 0, tostring(gen))
  return true, "Starting", "LuwsExample1"
end
