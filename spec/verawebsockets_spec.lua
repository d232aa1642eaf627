-- The verawebsockets API: create / connect / loop / set_log_level / send / close, events
-- 1 (connection error), 3 (established), 4 (closed), 8 (receive), handlers by name or function.
local H = spec_helper
local vws = require "verawebsockets"

describe("verawebsockets", function()
  local bad, echo
  setup(function()
    bad = H.server("bad")
    echo = H.server("echo")
  end)

  -- Runs a standalone loop and records every event.
  local function record()
    local events = {}
    local handlers = {
      [1] = function(reason, wso, detail) events[#events + 1] = { 1, reason, detail } end,
      [3] = function(wso) events[#events + 1] = { 3 } end,
      [4] = function(wso) events[#events + 1] = { 4 } end,
      [8] = function(data, wso, opcode) events[#events + 1] = { 8, data, opcode } end,
    }
    return handlers, events
  end

  it("is what require 'verawebsockets' returns, the luws module table", function()
    assert.equal(H.luws, vws)
    for _, f in ipairs({ "create", "connect", "loop", "set_log_level", "send", "close" }) do
      assert.is_function(vws[f], f)
    end
  end)

  it("established -> receive -> closed, with handlers given as functions", function()
    local handlers, events = record()
    handlers[3] = function(wso)
      events[#events + 1] = { 3 }
      assert(vws.send(wso, "hello"))
      assert(vws.send(wso, "\1\2", true))
    end
    handlers[8] = function(data, wso, opcode)
      events[#events + 1] = { 8, data, opcode }
      if #events == 3 then vws.close(wso) end
    end
    local wso = vws.create(echo.url("/"), handlers, {}, true)
    vws.connect(wso)
    vws.loop()
    assert.same({ { 3 }, { 8, "hello", 1 }, { 8, "\1\2", 2 }, { 4 } }, events)
  end)

  it("looks up handlers given by global function name when the event fires", function()
    local seen = {}
    _G.vws_spec_on_open = function(wso) seen[#seen + 1] = "open"; vws.send(wso, "by name") end
    _G.vws_spec_on_data = function(data, wso) seen[#seen + 1] = data; vws.close(wso) end
    _G.vws_spec_on_close = function() seen[#seen + 1] = "closed" end
    local wso = vws.create(echo.url("/"), { [3] = "vws_spec_on_open", [8] = "vws_spec_on_data", [4] = "vws_spec_on_close" }, nil, true)
    vws.connect(wso)
    vws.loop()
    assert.same({ "open", "by name", "closed" }, seen)
  end)

  it("reports the server closing as event 4", function()
    local handlers, events = record()
    local wso = vws.create(bad.url("/close?code=1000&id=" .. H.id()), handlers, {}, true)
    vws.connect(wso)
    vws.loop()
    assert.same({ { 3 }, { 4 } }, events)
  end)

  describe("reports failures as event 1 with the libwebsockets reason", function()
    local function refused_port()
      local s = H.socket.bind("127.0.0.1", 0)
      local _, port = s:getsockname()
      s:close()
      return port
    end
    local cases = {
      { function() return "ws://127.0.0.1:" .. refused_port() .. "/" end, "connect failed", "^Connection to 127%.0%.0%.1:%d+ failed: connection refused$" },
      { function() return "ws://no-such-host.invalid/" end, "getaddrinfo (ipv4) failed", "host not found$" },
      { function() return bad.url("/badaccept") end, "HS: Accept hash wrong", "^upgrade failed; Sec%-WebSocket%-Accept mismatch$" },
      { function() return bad.url("/noaccept") end, "HS: ACCEPT missing", "missing$" },
      { function() return bad.url("/status?code=403&reason=Forbidden") end, "HS: ws upgrade response not 101", "HTTP/1%.1 403 Forbidden$" },
      { function() return bad.url("/noupgrade") end, "HS: UPGRADE missing", "" },
      { function() return bad.url("/eof") end, "Peer hung up", "" },
      { function() return "http://nope/" end, "HS: URI did not parse", "^Invalid protocol/address" },
      { function() return nil end, "HS: URI missing", "" },
    }
    for _, c in ipairs(cases) do
      it(c[2], function()
        local handlers, events = record()
        local wso = vws.create(c[1](), handlers, {}, true)
        vws.connect(wso)
        vws.loop()
        assert.equal(1, #events)
        assert.equal(1, events[1][1])
        assert.equal(c[2], events[1][2])
        assert.matches(c[3], events[1][3])
      end)
    end
  end)

  it("gives up on a server that never answers within handshake_timeout (bounded, event 1)", function()
    local handlers, events = record()
    local wso = vws.create(bad.url("/hang"), handlers, {}, true, { handshake_timeout = 0.4 })
    vws.connect(wso)
    local t = H.elapsed(vws.loop)
    assert.same({ { 1, "timeout", "upgrade failed; timeout" } }, events)
    assert.is_true(t < 3, "took " .. t)
  end)

  it("connect returns at once, even for a server that never answers", function()
    local handlers, events = record()
    local wso = vws.create(bad.url("/hang"), handlers, {}, false, { handshake_timeout = 0.3 })
    local t = H.elapsed(function() vws.connect(wso) end)
    assert.is_true(t < 0.05, "connect took " .. t)
    local deadline = H.socket.gettime() + 5
    while #events == 0 and H.socket.gettime() < deadline do
      vws.loop()
      H.socket.sleep(0.01)
    end
    assert.same({ { 1, "timeout", "upgrade failed; timeout" } }, events)
  end)

  it("a non-standalone loop() returns at once while a peer is silent", function()
    local handlers, events = record()
    local wso = vws.create(bad.url("/silence?id=" .. H.id()), handlers, {}, false)
    vws.connect(wso)
    local deadline = H.socket.gettime() + 5
    while #events == 0 and H.socket.gettime() < deadline do
      vws.loop()
      H.socket.sleep(0.01)
    end
    assert.same({ { 3 } }, events)
    local worst = 0
    for _ = 1, 50 do
      local t = H.elapsed(vws.loop)
      if t > worst then worst = t end
    end
    assert.is_true(worst < 0.05, "loop held the caller " .. worst .. " s")
    vws.close(wso)
    deadline = H.socket.gettime() + 5
    while #events < 2 and H.socket.gettime() < deadline do vws.loop(); H.socket.sleep(0.01) end
    assert.same({ { 3 }, { 4 } }, events)
  end)

  it("services 50 objects in one loop(), and a handler may send on another object", function()
    local opened, got, closed = 0, {}, 0
    local objs = {}
    local handlers = {
      -- Once all 50 are open, each sends one message on its own connection.
      [3] = function()
        opened = opened + 1
        if opened == 50 then
          for i, o in ipairs(objs) do assert(vws.send(o, "first " .. i)) end
        end
      end,
      [8] = function(data, wso)
        got[#got + 1] = data
        -- Each echo of "first i" is answered through the next object.
        local i = tonumber(data:match("^first (%d+)"))
        if i then assert(vws.send(objs[(i % 50) + 1], "second " .. i)) end
        if #got == 100 then for _, o in ipairs(objs) do vws.close(o) end end
      end,
      [4] = function() closed = closed + 1 end,
    }
    for i = 1, 50 do
      objs[i] = vws.create(echo.url("/"), handlers, {}, true)
      vws.connect(objs[i])
    end
    vws.loop()
    assert.equal(50, opened)
    assert.equal(100, #got)
    assert.equal(50, closed)
  end)

  it("set_log_level takes a bitmask or 'all' and logs through luup.log when present", function()
    local lines = {}
    _G.luup = { log = function(msg) lines[#lines + 1] = msg end }
    vws.set_log_level("all")
    local handlers = record()
    local wso = vws.create("ws://no-such-host.invalid/", handlers, {}, true)
    vws.connect(wso)
    vws.loop()
    vws.set_log_level(0)
    _G.luup = nil
    local text = table.concat(lines, "\n")
    assert.matches("verawebsockets ERR: ws://no%-such%-host%.invalid/: Connection to no%-such%-host%.invalid:80 failed: host not found", text)
    assert.matches("verawebsockets NOTICE: connecting to", text)
    local ok, err = pcall(vws.set_log_level, {})
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'set_log_level'", tostring(err))
  end)

  it("takes client certificate and CA settings in ssl_settings", function()
    local tls = H.server("bad", { tls = "ca", client_ca = true })
    local cert, key = H.servers.client_cert()
    local id = H.id()
    local handlers, events = record()
    handlers[3] = function(wso) events[#events + 1] = { 3 }; vws.close(wso) end
    local wso = vws.create(tls.url("/echo?id=" .. id), handlers, {
      client_ssl_cert_filepath = cert,
      client_ssl_private_key_filepath = key,
      client_ssl_ca_filepath = H.servers.tls_ca(),
      client_ssl_verify_peer = true,
    }, true)
    vws.connect(wso)
    vws.loop()
    assert.same({ { 3 }, { 4 } }, events)
    local found
    for _, l in ipairs(tls:log(id, "client-cert")) do if l:match("^client%-cert") then found = l end end
    assert.equal("client-cert luws-client", found)
  end)

  it("a TLS handshake progresses inside loop() without blocking connect()", function()
    local tls = H.server("echo", { tls = true })
    local handlers, events = record()
    handlers[3] = function(wso) events[#events + 1] = { 3 }; vws.send(wso, "secure") end
    handlers[8] = function(data, wso) events[#events + 1] = { 8, data }; vws.close(wso) end
    local wso = vws.create(tls.url("/"), handlers, {}, false)
    vws.connect(wso)
    local deadline = H.socket.gettime() + 5
    while #events < 3 and H.socket.gettime() < deadline do vws.loop(); H.socket.sleep(0.005) end
    assert.same({ { 3 }, { 8, "secure" }, { 4 } }, events)
  end)
end)
