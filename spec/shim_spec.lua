-- lua/L_Plugin_LuWS.lua: the renamed drop-in finds its own native file, two plugins' copies do
-- not collide, and a missing native file gives an error naming the paths and the machine.
local H = spec_helper

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

local function native_path()
  for pattern in package.cpath:gmatch("[^;]+") do
    local path = pattern:gsub("%?", "luws")
    local f = io.open(path, "rb")
    if f then f:close() return path end
  end
end

describe("L_Plugin_LuWS.lua", function()
  local dir
  local lua = os.getenv("LUWS_LUA") or "lua5.1"

  setup(function()
    dir = sh("mktemp -d"):gsub("%s+$", "")
    local so = assert(native_path(), "built module not found")
    for _, p in ipairs({ "A", "B" }) do
      assert(os.execute(string.format("cp lua/L_Plugin_LuWS.lua %s/L_%s_LuWS.lua", dir, p)))
    end
    assert(os.execute(string.format("cp %s %s/L_A_LuWS.so", so, dir)))
    -- Plugin B ships "another version": the same library with its version string changed.
    local f = assert(io.open(so, "rb"))
    local bin = f:read("*a")
    f:close()
    local version = H.luws.VERSION
    local other = ("9"):rep(#version)
    local patched, n = bin:gsub(version:gsub("%.", "%%."), other)
    assert(n > 0)
    f = assert(io.open(dir .. "/L_B_LuWS.so", "wb"))
    f:write(patched)
    f:close()
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("loads each plugin's own native file, side by side in one process", function()
    local out = sh(string.format([[cd %s && %s -e '
      package.cpath = "" -- only the files beside the shims may be found
      local a = require "L_A_LuWS"
      local b = require "L_B_LuWS"
      print(a.VERSION, b.VERSION, a ~= b, type(a.wsopen), type(b.wsopen), L_A_LuWS == a)']], dir, lua))
    local other = ("9"):rep(#H.luws.VERSION)
    assert.equal(H.luws.VERSION .. "\t" .. other .. "\ttrue\tfunction\tfunction\ttrue\n", out)
  end)

  it("works when run by path (dofile), as a Luup <files> entry may do", function()
    local out = sh(string.format([[cd %s && %s -e 'print(dofile("./L_A_LuWS.lua")._VERSION)']], dir, lua))
    assert.equal(tostring(H.luws._VERSION) .. "\n", out)
  end)

  it("names the paths it tried and the machine when the native file is missing", function()
    local out = sh(string.format([[cd %s && cp L_A_LuWS.lua L_C_LuWS.lua && %s -e '
      package.cpath = "/nowhere/?.so"
      local ok, err = pcall(require, "L_C_LuWS")
      print(ok, err)']], dir, lua))
    assert.matches("^false\t.*luws: cannot load the native module L_C_LuWS%.so for Linux %S+; tried: ", out)
    assert.matches("%./L_C_LuWS%.so %(not found%)", out)
    assert.matches("/nowhere/L_C_LuWS%.so %(not found%)", out)
  end)

  it("reports why a file that exists could not be loaded", function()
    local out = sh(string.format([[cd %s && echo garbage > L_D_LuWS.so && cp L_A_LuWS.lua L_D_LuWS.lua && %s -e '
      package.cpath = ""
      print(pcall(require, "L_D_LuWS"))']], dir, lua))
    assert.matches("%./L_D_LuWS%.so %(.*%)", out)
    assert.not_matches("%./L_D_LuWS%.so %(not found%)", out)
  end)
end)
