-- Run by cross/verify.sh TARGET --probe under the target's Lua 5.1 (qemu).
local dir = assert(arg[1], "usage: verify-probe.lua DIR")
package.cpath = dir .. "/?.so;" .. package.cpath
local ok_all = true
local function check(name, cond, detail)
  print(string.format("%-6s %s %s", cond and "ok" or "FAIL", name, detail or ""))
  if not cond then ok_all = false end
end
local p = require("probe")
local s = p.add(1.25, 2.5)
check("float add 1.25+2.5", s == 3.75, tostring(s))
local ok, err = pcall(p.fail)
check("Rust error -> Lua error", not ok and tostring(err):find("probe failure", 1, true) ~= nil, tostring(err))
ok, err = pcall(p.panic)
check("Rust panic -> Lua error", not ok and tostring(err):find("probe panic", 1, true) ~= nil, (tostring(err):gsub("\n.*", "")))
local r1, r2 = p.random(), p.random()
check("getrandom", #r1 == 32 and r1 ~= r2, r1)
ok, err = pcall(p.tls)
check("rustls+ring client", ok, tostring(err))
print(ok_all and "PROBE PASSED" or "PROBE FAILED")
os.exit(ok_all and 0 or 1)
