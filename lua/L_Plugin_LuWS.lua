-- L_Plugin_LuWS.lua: the drop-in that Luup plugins ship, renamed to L_<Plugin>_LuWS.lua, beside
-- the native module renamed to L_<Plugin>_LuWS.so. It returns the luws API table (the LuWS API).
--
-- Design criteria:
--  * Each plugin loads its own native file through package.loadlib with the explicit
--    luaopen_luws symbol, so two plugins shipping different luws versions never share one.
--  * Works when loaded by require (the module name tells the native file's name), by path
--    (the chunk's own source path), or from a Luup <files> entry (no path: search the usual
--    plugin folders and package.cpath).
--  * When the native file is missing or cannot load, the error says every path tried and the
--    machine's architecture, so a user can tell which build to install.

local modname = ...
local loadlib, cpath = package.loadlib, package.cpath

local function basename_of_chunk()
  -- Level 1 is this function, defined in this file (through pcall it would be pcall itself).
  local info = type(debug) == "table" and debug.getinfo and debug.getinfo(1, "S")
  local src = info and info.source or ""
  if src:sub(1, 1) == "@" then
    local path = src:sub(2)
    local dir, base = path:match("^(.-)([^/]+)%.lua$")
    if base then return dir, base end
  end
  return nil, nil
end

local function machine()
  local ok, p = pcall(io.popen, "uname -sm 2>/dev/null")
  if ok and p then
    local m = p:read("*l")
    p:close()
    if m and m ~= "" then return m end
  end
  return "unknown machine"
end

local dir, base = basename_of_chunk()
if type(modname) == "string" and modname ~= "" then base = modname:match("([^%.]+)$") end
base = base or "L_Plugin_LuWS"

local candidates, seen = {}, {}
local function add(path)
  if path and not seen[path] then
    seen[path] = true
    candidates[#candidates + 1] = path
  end
end
if dir then add((dir == "" and "./" or dir) .. base .. ".so") end
add("./" .. base .. ".so")
add("/etc/cmh-ludl/" .. base .. ".so")
for pattern in cpath:gmatch("[^;]+") do
  if pattern:find("?", 1, true) then add((pattern:gsub("%?", base))) end
end

local tried = {}
for _, path in ipairs(candidates) do
  local f = io.open(path, "rb")
  if f then
    f:close()
    local open, err = loadlib(path, "luaopen_luws")
    if open then
      ---@type luws
      local api = open()
      if type(modname) == "string" then
        package.loaded[modname] = api
        -- LuWS's module() made this global; keep code that relies on it working.
        if _G[modname] == nil then _G[modname] = api end
      end
      return api
    end
    tried[#tried + 1] = path .. " (" .. tostring(err) .. ")"
  else
    tried[#tried + 1] = path .. " (not found)"
  end
end

error(string.format("luws: cannot load the native module %s.so for %s; tried: %s",
  base, machine(), table.concat(tried, ", ")), 2)
