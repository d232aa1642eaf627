-- Every error string of the README's Errors table, produced for real and compared verbatim.
-- (Some are also asserted where their behaviour is specified; this file is the index.)
local H = spec_helper
local luws = H.luws

local function urlencode(s)
  return (s:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

describe("error strings", function()
  local bad
  setup(function() bad = H.server("bad") end)

  describe("from wsopen", function()
    local function open_err(url, opts)
      local ok, err = luws.wsopen(url, function() end, opts)
      assert.is_false(ok)
      return err
    end
    local function rawhs(text, pad)
      return bad.url("/rawhs?text=" .. urlencode(text) .. (pad and ("&pad=" .. pad) or ""))
    end
    local cases = {
      { "URL with a space in the host", function() return open_err("ws://exa mple.com/") end,
        "Invalid protocol/address for WebSocket open in ws://exa mple.com/: invalid host name" },
      { "Connection header missing", function()
          return open_err(rawhs("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"))
        end, "upgrade failed; Connection header missing" },
      { "unexpected extension", function()
          return open_err(rawhs("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
        end, "upgrade failed; unexpected Sec-WebSocket-Extensions permessage-deflate" },
      { "unexpected subprotocol", function() return open_err(bad.url("/echo?protocol=chat")) end,
        "upgrade failed; unexpected Sec-WebSocket-Protocol chat" },
      { "malformed response", function()
          return open_err(rawhs("HTTP/1.1 101 OK\r\nUpgrade websocket\r\n\r\n"))
        end, "upgrade failed; malformed response" },
      { "response headers too large", function()
          return open_err(rawhs("HTTP/1.1 101 OK\r\nX-Pad: {PAD}\r\n\r\n", 70000))
        end, "upgrade failed; response headers too large" },
      { "connect option error", function()
          return open_err(bad.url("/echo"), { connect = function() return nil, "proxy down" end })
        end, "proxy down" },
      { "connect option without a socket", function()
          return open_err(bad.url("/echo"), { connect = function() return {} end })
        end, "Can't get socket for connection" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function() assert.equal(c[3], c[2]()) end)
    end

    it("Connection to host:port failed: timeout (a listener whose backlog is full)", function()
      local srv = assert(H.socket.bind("127.0.0.1", 0, 0))
      local _, port = srv:getsockname()
      local fillers = {}
      for i = 1, 4 do
        local c = H.socket.tcp()
        c:settimeout(0)
        c:connect("127.0.0.1", port)
        fillers[i] = c
      end
      local err = open_err("ws://127.0.0.1:" .. port .. "/", { connect_timeout = 0.5, handshake_timeout = 0.5 })
      for _, c in ipairs(fillers) do c:close() end
      srv:close()
      -- Depending on the kernel the SYN is dropped (connect times out) or accepted into the
      -- queue (then the upgrade times out); both are bounded.
      assert.is_true(err == "Connection to 127.0.0.1:" .. port .. " failed: timeout" or err == "upgrade failed; timeout", err)
    end)
  end)

  describe("from frames the server sends (handler text; wsreceive returns it without the prefix)", function()
    local cases = {
      { "fragmented control frame", "\9\0", "receiver error: protocol error: fragmented control frame" },
      { "continuation without a message", "\128\0", "receiver error: protocol error: continuation frame without a message" },
      { "new message inside a fragmented one", "\1\1a\129\1b", "receiver error: protocol error: new message inside a fragmented one" },
      { "close frame with a 1-byte body", "\136\1\3", "receiver error: protocol error: invalid close frame" },
      -- Regression: a code that may not be sent (999, 1005) was reported as a clean "closed".
      { "close code 999", "\136\2\3\231", "receiver error: protocol error: invalid close code" },
      { "close code 1005", "\136\2\3\237", "receiver error: protocol error: invalid close code" },
      { "64-bit length with its top bit set", "\130\127\128\0\0\0\0\0\0\1",
        "receiver error: protocol error: invalid frame length" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local handler, got = H.recorder()
        local conn = H.open(bad.url("/raw?hex=" .. hex(c[2]) .. "&id=" .. H.id()), handler)
        local ok, err = H.pump(conn, function() return false end, 5)
        assert.is_nil(ok)
        assert.equal((c[3]:gsub("^receiver error: ", "")), err)
        assert.same({ { false, c[3] } }, got)
      end)
    end

    it("keepalive timeout", function()
      local handler, got = H.recorder()
      local conn = H.open(bad.url("/silence?id=" .. H.id()), handler, { keepalive = 0.2 })
      local ok, err = H.pump(conn, function() return false end, 5)
      assert.is_nil(ok)
      assert.equal("keepalive timeout", err)
      assert.same({ { false, "receiver error: keepalive timeout" } }, got)
    end)
  end)

  describe("from wssend", function()
    it("send error: closed, after the peer reset the connection", function()
      local conn = H.open(bad.url("/reset?id=" .. H.id()), function() end)
      H.socket.sleep(0.6)
      local ok, err
      for _ = 1, 20 do
        ok, err = luws.wssend(conn, 2, string.rep("z", 65536))
        if not ok then break end
        H.socket.sleep(0.02)
      end
      assert.is_false(ok)
      assert.equal("send error: closed", err)
    end)
  end)
end)
