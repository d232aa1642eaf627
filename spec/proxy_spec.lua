-- The proxy option: ws:// and wss:// through real proxies (Debian's tinyproxy for HTTP CONNECT,
-- microsocks for SOCKS5), with and without credentials, for both APIs; proxy = "env"; and
-- proxies that refuse, stall, hang up or answer garbage, each failing in bounded time with its
-- documented error.
local H = spec_helper
local luws = H.luws
local socket = H.socket

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local d = f:read("*a")
  f:close()
  return d
end

local function temp_path()
  local p = io.popen("mktemp \"${TMPDIR:-/tmp}/luws-proxy-log.XXXXXX\"")
  local path = p:read("*l")
  p:close()
  return path
end

-- One round trip: open with `opts`, send, wait for the echo. Returns the echo, or nil, err.
local function echo_once(url, opts)
  local handler, got = H.recorder()
  local conn, err = luws.wsopen(url, handler, opts)
  if not conn then return nil, err end
  luws.wssend(conn, 1, "through the proxy")
  local ok = H.pump(conn, function() return #got >= 1 end)
  luws.wsclose(conn)
  return ok and got[1][2] or nil, "no echo"
end

-- The error of an open that must fail, and how long it took.
local function open_error(url, opts)
  local t0 = socket.gettime()
  local conn, err = luws.wsopen(url, function() end, opts)
  if conn then luws.wsclose(conn) end
  return err, socket.gettime() - t0
end

describe("proxy", function()
  local echo, echo_tls, ca, tiny, tiny_auth, socks, socks_auth, tiny_log
  setup(function()
    echo = H.server("echo")
    echo_tls = H.server("echo", { tls = "ca" })
    ca = H.servers.tls_ca()
    tiny_log = temp_path()
    tiny = H.server("tinyproxy", { log = tiny_log })
    tiny_auth = H.server("tinyproxy", { auth = "plugin:s3cret" })
    socks = H.server("microsocks")
    socks_auth = H.server("microsocks", { auth = "plugin:s3cret" })
  end)
  teardown(function()
    if tiny_log then os.remove(tiny_log) end
  end)

  local function proxy_url(scheme, server, creds)
    return scheme .. "://" .. (creds and creds .. "@" or "") .. "127.0.0.1:" .. server.port
  end

  describe("HTTP CONNECT (tinyproxy)", function()
    it("carries ws://, and the proxy is asked for the URL's host and port", function()
      assert.equal("through the proxy", echo_once(echo.url("/"), { proxy = proxy_url("http", tiny) }))
      assert.truthy(read_file(tiny_log):find("opening connection to 127.0.0.1:" .. echo.port, 1, true))
    end)

    it("carries wss:// end to end: the certificate verifies for the URL's name through the tunnel", function()
      local url = echo_tls.url("/")
      assert.truthy(url:find("wss://localhost:", 1, true))
      assert.equal("through the proxy", echo_once(url, {
        proxy = proxy_url("http", tiny), ssl_verify = "peer", ssl_cafile = ca,
      }))
      assert.truthy(read_file(tiny_log):find("opening connection to localhost:" .. echo_tls.port, 1, true))
    end)

    it("sends Basic credentials from the proxy URL, percent-decoded", function()
      local p = proxy_url("http", tiny_auth, "plugin:s3cret")
      assert.equal("through the proxy", echo_once(echo.url("/"), { proxy = p }))
      assert.equal("through the proxy", echo_once(echo_tls.url("/"), { proxy = p }))
      p = proxy_url("http", tiny_auth, "plug%69n:s3cre%74")
      assert.equal("through the proxy", echo_once(echo.url("/"), { proxy = p }))
    end)

    it("reports the proxy's refusal: its status and reason", function()
      local err = open_error(echo.url("/"), { proxy = proxy_url("http", tiny_auth) })
      assert.equal("proxy refused: 407 Proxy Authentication Required", err)
      -- tinyproxy answers a wrong password with 401.
      err = open_error(echo.url("/"), { proxy = proxy_url("http", tiny_auth, "plugin:wrong") })
      assert.equal("proxy refused: 401 Unauthorized", err)
      -- Nothing listens on port 1: the proxy says it could not connect.
      err = open_error("ws://127.0.0.1:1/", { proxy = proxy_url("http", tiny) })
      assert.matches("^proxy refused: 5%d%d ", err)
    end)
  end)

  describe("SOCKS5 (microsocks)", function()
    it("carries ws:// and wss:// with socks5h (the proxy resolves) and socks5 (luws resolves)", function()
      for _, scheme in ipairs({ "socks5h", "socks5" }) do
        local p = proxy_url(scheme, socks)
        assert.equal("through the proxy", echo_once(echo.url("/"), { proxy = p }), scheme)
        assert.equal("through the proxy", echo_once(echo_tls.url("/"), {
          proxy = p, ssl_verify = "peer", ssl_cafile = ca,
        }), scheme)
      end
    end)

    it("authenticates with user and password (RFC 1929)", function()
      local p = proxy_url("socks5h", socks_auth, "plugin:s3cret")
      assert.equal("through the proxy", echo_once(echo.url("/"), { proxy = p }))
      assert.equal("through the proxy", echo_once(echo_tls.url("/"), { proxy = p }))
      assert.equal("proxy: SOCKS5 authentication failed",
        open_error(echo.url("/"), { proxy = proxy_url("socks5h", socks_auth, "plugin:wrong") }))
      assert.equal("proxy: SOCKS5 no acceptable authentication method",
        open_error(echo.url("/"), { proxy = proxy_url("socks5h", socks_auth) }))
    end)

    it("reports the proxy's reply codes in RFC 1928's words", function()
      assert.equal("proxy: SOCKS5 connection refused",
        open_error("ws://127.0.0.1:1/", { proxy = proxy_url("socks5", socks) }))
      -- The proxy cannot resolve the name (microsocks says: general failure) ...
      assert.equal("proxy: SOCKS5 general failure",
        open_error("ws://no-such-host.invalid/", { proxy = proxy_url("socks5h", socks) }))
      -- ... and with socks5 luws resolves it, so the failure is luws's own.
      assert.equal("Connection to no-such-host.invalid:80 failed: host not found",
        open_error("ws://no-such-host.invalid/", { proxy = proxy_url("socks5", socks) }))
    end)
  end)

  describe("a proxy that misbehaves fails the open in bounded time", function()
    local cases = {
      { "stall", "http", "proxy: timeout" },
      { "stall", "socks5h", "proxy: timeout" },
      { "close", "http", "proxy: closed" },
      { "close", "socks5h", "proxy: closed" },
      { "garbage", "http", "proxy: bad answer" },
      { "garbage", "socks5h", "proxy: bad answer" },
      { "flood", "http", "proxy: answer too large" },
      { "refuse", "http", "proxy refused: 403 Forbidden" },
      { "socks-noauth", "socks5h", "proxy: SOCKS5 no acceptable authentication method" },
      { "socks-reply", "socks5h", "proxy: SOCKS5 host unreachable", 4 },
      { "socks-reply", "socks5h", "proxy: SOCKS5 connection not allowed by ruleset", 2 },
    }
    for _, c in ipairs(cases) do
      local mode, scheme, expected, code = c[1], c[2], c[3], c[4]
      it(mode .. " (" .. scheme .. "): " .. expected, function()
        local bad = H.server("badproxy", { mode = mode, code = code })
        local err, took = open_error(echo.url("/"), {
          proxy = proxy_url(scheme, bad), connect_timeout = 1,
        })
        assert.equal(expected, err)
        assert.is_true(took < 2, "took " .. took .. " s")
      end)
    end

    it("a proxy that is down: the connection to it failed", function()
      local l = assert(socket.bind("127.0.0.1", 0))
      local _, port = l:getsockname()
      l:close()
      local err = open_error(echo.url("/"), { proxy = "http://127.0.0.1:" .. port })
      assert.equal("proxy: connection to 127.0.0.1:" .. port .. " failed: connection refused", err)
    end)
  end)

  describe("option checks (raised, like every bad option)", function()
    local function raised(opts)
      local ok, err = pcall(luws.wsopen, echo.url("/"), function() end, opts)
      assert.is_false(ok)
      return err
    end

    it("refuses what is no proxy URL, naming the problem", function()
      assert.equal("bad option 'proxy' to 'wsopen' (scheme must be http://, socks5:// or socks5h://)",
        raised({ proxy = "https://127.0.0.1:3128" }))
      assert.equal("bad option 'proxy' to 'wsopen' (scheme must be http://, socks5:// or socks5h://)",
        raised({ proxy = "127.0.0.1:3128" }))
      assert.equal("bad option 'proxy' to 'wsopen' (a proxy URL has no path, query or fragment)",
        raised({ proxy = "http://127.0.0.1:3128/path" }))
      assert.equal("bad option 'proxy' to 'wsopen' (string expected, got number)",
        raised({ proxy = 3128 }))
    end)

    it("cannot tunnel a socket a connect function made", function()
      assert.equal("bad option 'proxy' to 'wsopen' (cannot be combined with a connect function)",
        raised({ proxy = "http://127.0.0.1:1", connect = function() end }))
    end)

    it("proxy = false is no proxy", function()
      assert.equal("through the proxy", echo_once(echo.url("/"), { proxy = false }))
    end)
  end)

  describe('proxy = "env"', function()
    -- The environment of a child interpreter (the one running this spec) is the only one a
    -- spec can set.
    local function lua_path()
      local stat = read_file("/proc/self/stat")
      local pid = stat:match("^(%d+)")
      local p = io.popen("readlink /proc/" .. pid .. "/exe")
      local exe = p:read("*l")
      p:close()
      return exe
    end

    local function child_open(env, url)
      local script = temp_path()
      local f = assert(io.open(script, "w"))
      f:write(table.concat({
        "package.cpath = " .. string.format("%q", package.cpath),
        "local luws = require 'luws'",
        "local c, e = luws.wsopen(" .. string.format("%q", url) ..
          ", function() end, { proxy = 'env', connect_timeout = 3 })",
        "if c then luws.wsclose(c); print('open') else print(e) end",
      }, "\n"))
      f:close()
      local unset = ""
      for _, v in ipairs({ "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                           "ws_proxy", "WS_PROXY", "wss_proxy", "WSS_PROXY", "no_proxy", "NO_PROXY" }) do
        unset = unset .. " -u " .. v
      end
      local p = io.popen("env" .. unset .. " " .. env .. " " .. lua_path() .. " " .. script .. " 2>&1")
      local out = p:read("*a")
      p:close()
      os.remove(script)
      return (out:gsub("%s+$", ""))
    end

    it("takes http_proxy for ws:// and https_proxy for wss://, as curl does", function()
      local down = "http://127.0.0.1:1"
      assert.equal("open", child_open("http_proxy=" .. proxy_url("http", tiny), echo.url("/")))
      assert.equal("proxy: connection to 127.0.0.1:1 failed: connection refused",
        child_open("http_proxy=" .. down, echo.url("/")))
      assert.equal("open", child_open("http_proxy=" .. down .. " https_proxy=" ..
        proxy_url("socks5h", socks), echo_tls.url("/")))
      assert.equal("open", child_open("all_proxy=" .. proxy_url("socks5h", socks), echo.url("/")))
    end)

    it("honours no_proxy, and with nothing set connects directly", function()
      assert.equal("open", child_open("http_proxy=http://127.0.0.1:1 no_proxy=127.0.0.1", echo.url("/")))
      assert.equal("open", child_open("", echo.url("/")))
    end)

    it("reports a variable that holds no proxy URL", function()
      assert.equal("proxy: bad http_proxy (scheme must be http://, socks5:// or socks5h://)",
        child_open("http_proxy=ftp://127.0.0.1:1", echo.url("/")))
    end)
  end)

  describe("verawebsockets", function()
    local vws = require "verawebsockets"
    -- A Luup-style (non-standalone) object: each loop() is one pass that must return at once.
    local function run(url, opts, want_event, timeout)
      local events = {}
      local wso = vws.create(url, {
        [1] = function(reason, _, detail) events[#events + 1] = { 1, reason, detail } end,
        [3] = function(w) events[#events + 1] = { 3, w:url() }; vws.send(w, "via vera") end,
        [8] = function(data) events[#events + 1] = { 8, data } end,
      }, {}, false, opts)
      assert.equal(url, wso:url())
      vws.connect(wso)
      local deadline = socket.gettime() + (timeout or 5)
      local longest = 0
      while socket.gettime() < deadline do
        longest = math.max(longest, (H.elapsed(vws.loop)))
        local last = events[#events]
        if last and last[1] == want_event then break end
        socket.sleep(0.01)
      end
      vws.close(wso)
      for _ = 1, 20 do vws.loop() end
      return events, longest
    end

    it("connects through HTTP CONNECT and SOCKS5 without blocking loop()", function()
      for _, p in ipairs({ proxy_url("http", tiny_auth, "plugin:s3cret"), proxy_url("socks5h", socks) }) do
        local events, longest = run(echo_tls.url("/"), { proxy = p }, 8)
        assert.same({ 3, echo_tls.url("/") }, events[1], p)
        assert.same({ 8, "via vera" }, events[2], p)
        assert.is_true(longest < 0.05, "a loop() took " .. longest .. " s")
      end
    end)

    it("reports a stalled proxy as event 1 after connect_timeout, each loop() returning at once", function()
      local bad = H.server("badproxy", { mode = "stall" })
      local t0 = socket.gettime()
      local events, longest = run(echo.url("/"), { proxy = proxy_url("http", bad), connect_timeout = 0.5 }, 1)
      assert.same({ 1, "timeout", "proxy: timeout" }, events[1])
      assert.is_true(socket.gettime() - t0 < 2)
      assert.is_true(longest < 0.05, "a loop() took " .. longest .. " s")
    end)
  end)
end)
