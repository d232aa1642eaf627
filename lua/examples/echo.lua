-- echo.lua: connect, send a text and a binary message, print the echoes, close.
-- Usage: lua5.1 lua/examples/echo.lua ws://127.0.0.1:8080/   (luws.so on package.cpath)
local luws = require "luws"

local url = arg and arg[1] or "ws://127.0.0.1:8080/"
local waiting = 2
local conn, err = luws.wsopen(url, function(conn, opcode, data)
  if opcode then
    if opcode == 2 then data = data:gsub(".", function(c) return ("%02x "):format(c:byte()) end) end
    print(("echo (%s): %s"):format(opcode == 1 and "text" or "binary", data))
    waiting = waiting - 1
  else
    print("connection ended: " .. data)
    waiting = 0
  end
end)
if not conn then
  print("cannot connect: " .. err)
  os.exit(1)
end

luws.wssend(conn, 1, "Hello from luws " .. luws.VERSION)
luws.wssend(conn, 2, "\0\1\2\3")
local deadline = os.time() + 10
while waiting > 0 and os.time() < deadline do
  luws.wait({ conn }, 1)                     -- sleep in poll(2) until data arrives
  if luws.wsreceive(conn) == nil then break end -- dispatches to the handler above
end
luws.wsclose(conn)
os.exit(waiting == 0 and 0 or 1)
