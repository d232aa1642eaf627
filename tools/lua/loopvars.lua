-- Rewrites Lua files so that Lua 5.5 compiles them: 5.5 makes for-loop control variables
-- read-only, and older code (Debian 12's penlight 1.13 and busted 2.1, which the test tools
-- copy for 5.5) assigns to them. Run with Lua 5.5 itself, whose compiler finds each case:
--   lua5.5 loopvars.lua FILE...     rewrites each FILE in place; exit status 1 if one is left
-- The fix is the one upstream applied: the loop gets a fresh name and the body a local copy,
--   for k, v in pairs(t) do        ->  for k_loop, v in pairs(t) do local k = k_loop
-- so code that runs on 5.1-5.4 behaves the same. Only a `for` header that ends with `do` on
-- its own line is rewritten; anything else is reported and left for a person.

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(s)
  local t = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = line end
  if t[#t] == "" then t[#t] = nil end
  return t
end

-- Rewrites the nearest `for` header at or above line n that binds `name`; true when done.
local function fix(t, n, name)
  for i = n, 1, -1 do
    local head, vars, rest = t[i]:match("^(%s*for%s+)([%w_,%s]-)(%s+in%s.*)$")
    if not head then head, vars, rest = t[i]:match("^(%s*for%s+)([%w_]+)(%s*=.*)$") end
    if head then
      local found = false
      local renamed = vars:gsub("[%w_]+", function(v)
        if v == name then found = true return v .. "_loop" end
      end)
      if found then
        local before, after = rest:match("^(.*%sdo)(%s*)$")
        if not before then return false end
        t[i] = head .. renamed .. before .. " local " .. name .. " = " .. name .. "_loop" .. after
        return true
      end
    end
  end
  return false
end

local left = 0
for _, path in ipairs(arg) do
  local src = read(path)
  local changed = false
  while true do
    local ok, err = load(src, "=" .. path)
    if ok then break end
    local n, name = tostring(err):match(":(%d+): attempt to assign to const variable '([%w_]+)'")
    local t = lines_of(src)
    if not (n and fix(t, tonumber(n), name)) then
      io.stderr:write("loopvars: ", tostring(err), "\n")
      left = left + 1
      break
    end
    src, changed = table.concat(t, "\n") .. "\n", true
  end
  if changed then
    local f = assert(io.open(path, "wb"))
    f:write(src)
    f:close()
    print("loopvars: rewrote " .. path)
  end
end
os.exit(left == 0 and 0 or 1)
