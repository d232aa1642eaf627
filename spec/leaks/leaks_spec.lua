-- Leaks and resources, short versions for the spec suite: wsopen/wsclose cycles and conns left
-- to the GC keep the descriptor count and RSS flat; valgrind finds nothing the module lost.
-- Each runs in a child process (a clean baseline, and valgrind needs its own process).
-- The long versions: tools/leaks.sh (10,000 cycles per phase, TLS, valgrind) and --long.
local lua = os.getenv("LUWS_LUA") or "lua5.1"

--- Runs a shell command; returns its output and whether it exited with status 0.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"EXIT $?\""))
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("EXIT (%d+)%s*$"))
  return out:gsub("EXIT %d+%s*$", ""), status
end

describe("leaks", function()
  it("1,000 wsopen/wsclose cycles and 1,000 dropped conns leave fds unchanged and RSS within 1 MiB", function()
    local out, status = run(lua .. " spec/leaks/cycles.lua 1000 --quiet")
    assert.equal(0, status, out)
    assert.matches("ok wsopen/wsclose: 1000 cycles", out)
    assert.matches("ok dropped without wsclose %(GC%): 1000 cycles", out)
    assert.matches("2 passed, 0 failed\n$", out)
  end)

  it("valgrind: 100 cycles per phase lose no byte definitely and make no memcheck error", function()
    if not run("command -v valgrind"):find("valgrind") then
      pending("valgrind is not installed")
      return
    end
    local out, status = run("spec/leaks/valgrind.sh 100")
    assert.equal(0, status, out)
    assert.matches("definitely lost: 0 bytes in 0 blocks", out)
    assert.matches("ERROR SUMMARY: 0 errors", out)
  end)
end)
