-- How long a non-standalone verawebsockets loop() holds its caller (a Luup host must not be
-- held for long). 50 objects against an echo server; each echo triggers the next message, so
-- every pass has work. Prints the distribution of one loop() call's duration.
-- Usage: lua5.1 bench/loop_hold.lua ws://127.0.0.1:PORT/ [seconds] [size]
local vws = require "luws"
local socket = require "socket"

local url, seconds, size = arg[1], tonumber(arg[2] or 3), tonumber(arg[3] or 32)
local payload = string.rep("x", size)
local objs, opened, received = {}, 0, 0
local handlers = {
  [1] = function(reason, wso, detail) error("connect failed: " .. tostring(detail)) end,
  [3] = function(wso) opened = opened + 1; vws.send(wso, payload) end,
  [8] = function(data, wso) received = received + 1; vws.send(wso, payload) end,
}
for i = 1, 50 do
  objs[i] = vws.create(url, handlers, {}, false)
  vws.connect(objs[i])
end
local deadline = socket.gettime() + 10
while opened < 50 and socket.gettime() < deadline do vws.loop(); socket.sleep(0.001) end
assert(opened == 50, "only " .. opened .. " opened")

local times = {}
local stop = socket.gettime() + seconds
while socket.gettime() < stop do
  local t0 = socket.gettime()
  vws.loop()
  times[#times + 1] = socket.gettime() - t0
end
table.sort(times)
local function q(p) return times[math.max(1, math.floor(#times * p))] * 1000 end
print(string.format("loop() hold, 50 objects, %d-byte echoes: %d calls, %d messages; median %.3f ms, p99 %.3f ms, max %.3f ms",
  size, #times, received, q(0.5), q(0.99), times[#times] * 1000))
for _, o in ipairs(objs) do vws.close(o) end
local t_end = socket.gettime() + 5
while socket.gettime() < t_end do vws.loop(); socket.sleep(0.001) end
