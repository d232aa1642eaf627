-- verawebsockets.lua: makes `require "verawebsockets"` return the verawebsockets API of the
-- luws native module (create, connect, loop, set_log_level, send, close), so plugins and
-- scripts written for Vera's libwebsockets-based library run unchanged.
--
-- Design criteria: no behaviour of its own; it only finds the native module (luws.so on
-- package.cpath, or L_Plugin_LuWS.so beside a renamed shim) and hands back its table.
local ok, luws = pcall(require, "luws")
if not ok then
  local shim_ok, shim = pcall(require, "L_Plugin_LuWS")
  if not shim_ok then
    error("verawebsockets: the luws native module was not found: " .. tostring(luws), 2)
  end
  luws = shim
end
return luws
