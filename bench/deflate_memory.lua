-- RSS per connection with permessage-deflate: N conns to the echo peer, each sends and gets
-- back one 2.4 KB JSON message (so both codecs allocate), then the VmRSS growth / N.
-- lua5.1 bench/deflate_memory.lua URL N MODE   (MODE: plain, recvonly, small, default)
-- with luws.so on LUA_CPATH and a compressing echo peer at URL (spec/servers/echo_server.py).
local luws = require "luws"
local url, n, mode = arg[1], tonumber(arg[2]), arg[3]
local function rss()
  collectgarbage(); collectgarbage()
  local f = io.open("/proc/self/status"); local s = f:read("*a"); f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end
local opts = { max_payload_size = 1e6 }
if mode == "default" then opts.permessage_deflate = { client_max_window_bits = false }
elseif mode == "small" then opts.permessage_deflate = { client_max_window_bits = 9, server_max_window_bits = 9 }
elseif mode == "recvonly" then opts.permessage_deflate = true end
local parts = {}
for i = 1, 60 do parts[i] = string.format('{"entity_id":"sensor.s%d","state":"%d"}', i, i) end
local doc = table.concat(parts, ",")
local conns, got = {}, 0
local base = rss()
for i = 1, n do
  local c = assert(luws.wsopen(url, function(_, op) if op == 1 then got = got + 1 end end, opts))
  conns[i] = c
  assert(luws.wssend(c, 1, doc))
end
local t0 = os.time()
while got < n and os.time() - t0 < 20 do
  for i = 1, n do luws.wsreceive(conns[i]) end
  luws.wait(conns, 0.01)
end
assert(got == n, "echoes " .. got)
local after = rss()
print(string.format("%s: %d conns, %.1f KiB per connection (RSS %d -> %d KiB)", mode, n, (after - base) / n, base, after))
for i = 1, n do luws.wsclose(conns[i]) end
