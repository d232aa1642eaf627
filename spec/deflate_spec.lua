-- permessage-deflate (RFC 7692): the `permessage_deflate` option, what `extensions()` reports, echo
-- through compression against two independent servers (Node's `ws`, spec/servers/node_echo.js, and
-- Python `websockets`, echo_server.py), context takeover, small windows, the threshold, the wire
-- size (the peers' report=1 mode counts the bytes as they came), the verawebsockets API, and every
-- way a server can get it wrong (bad_server.py's deflate_* and ext_* modes), each with its string.
local H = spec_helper
local luws = H.luws
local vws = require "verawebsockets"

local BIG = 16 * 1024 * 1024 -- max_payload_size for the echo of large documents

-- A JSON document of at least `size` bytes, the same every run: readings as a hub sends them
-- (repeated keys, varying values), which deflate shrinks several times over.
local ROOMS = { "kitchen", "living room", "garage", "bedroom", "hall", "garden" }
local function json_document(size)
  local parts, n, i = { "[" }, 1, 0
  while n < size do
    i = i + 1
    local item = string.format(
      '%s{"id":%d,"device":"sensor-%d","room":"%s","value":%.2f,"battery":%d,' ..
      '"tags":["zwave","%s"],"on":%s}',
      i > 1 and "," or "", i, i % 97, ROOMS[i % #ROOMS + 1], (i * 7919 % 100003) / 100,
      i * 31 % 101, i % 2 == 0 and "secure" or "plain", i % 3 == 0 and "true" or "false")
    parts[#parts + 1] = item
    n = n + #item
  end
  parts[#parts + 1] = "]"
  return table.concat(parts)
end

-- `n` printable bytes that hardly compress (Park-Miller: exact in doubles too).
local function noise(n, seed)
  local t, x = {}, seed or 1
  for i = 1, n do
    x = x * 16807 % 2147483647
    t[i] = string.char(33 + x % 94)
  end
  return table.concat(t)
end

local NOISE = noise(3000, 42)
-- A repeat 5000 bytes back: beyond a 4 KiB window, so only a compressor that keeps to the agreed
-- window (12 bits or less) can encode it without a distance the peer's inflater rejects.
local FAR = noise(5000, 7)
FAR = FAR .. FAR

local function pmd(client_bits, server_bits, client_nct, server_nct)
  return { permessage_deflate = {
    client_max_window_bits = client_bits, server_max_window_bits = server_bits,
    client_no_context_takeover = client_nct or false,
    server_no_context_takeover = server_nct or false,
  } }
end

-- Options for one open (wsopen writes its defaults into the table: a fresh one every time).
local function opts(deflate, extra)
  local o = { permessage_deflate = deflate, max_payload_size = BIG }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Sends each message of `list` ({ opcode, data }) and waits for its answer; returns the answers.
local function exchange(conn, got, list, timeout)
  local answers = {}
  for _, m in ipairs(list) do
    local before = #got
    assert.is_true(luws.wssend(conn, m[1], m[2]))
    local ok, err = H.pump(conn, function() return #got > before end, timeout or 10)
    assert(ok, "no answer to a message of " .. #m[2] .. " bytes: " .. tostring(err))
    answers[#answers + 1] = got[before + 1]
  end
  return answers
end

-- A peer's report=1 line as a table ("rsv1" stays a string: one digit per frame).
local function parse_report(line)
  local r = {}
  for k, v in tostring(line):gmatch("(%w+)=(%S*)") do
    r[k] = k ~= "rsv1" and tonumber(v) or v
  end
  return r
end

-- Sends each text of `texts` to a report=1 URL and returns the peer's reports.
local function wire_reports(url, deflate, texts, extra)
  local handler, got = H.recorder()
  local conn = H.open(url, handler, opts(deflate, extra))
  local list = {}
  for i, t in ipairs(texts) do list[i] = { 1, t } end
  local reports = {}
  for i, a in ipairs(exchange(conn, got, list, 20)) do
    assert.equal(1, a[1])
    reports[i] = parse_report(a[2])
    assert.equal(#texts[i], reports[i].length, "the peer got another message")
  end
  luws.wsclose(conn)
  return reports
end

-- The request headers a peer's /headers path sends back: { [lowercase name] = value }.
local function request_headers(url, deflate)
  local handler, got = H.recorder()
  local conn = H.open(url, handler, { permessage_deflate = deflate })
  assert.is_true(H.pump(conn, function() return #got >= 1 end))
  luws.wsclose(conn)
  local t = {}
  for name, value in got[1][2]:gmatch("([^:\n]+):%s*([^\n]*)\n") do t[name:lower()] = value end
  return t
end

-- The parameters of an offer or answer, as a set: { ["permessage-deflate"] = true, ... }.
local function tokens(value)
  local t = {}
  for tok in tostring(value):gmatch("[^;,%s]+") do t[tok] = true end
  return t
end

-- What each peer agrees to for a URL and an option value (see the peers' negotiation rules:
-- ws echoes what was offered; websockets' default is 12-bit windows). luws offers
-- client_max_window_bits whenever it offers the extension, which these expectations rely on.
local PEERS = {
  {
    name = "Node ws", kind = "node",
    agreements = {
      { "/", true, pmd(15, 15) },
      { "/?server_no_context_takeover=1", true, pmd(15, 15, false, true) },
      { "/?client_no_context_takeover=1", true, pmd(15, 15, true, false) },
      { "/?server_max_window_bits=9", true, pmd(15, 9) },
      { "/?server_max_window_bits=10", true, pmd(15, 10) },
      { "/?client_max_window_bits=10", true, pmd(10, 15) },
      { "/?server_no_context_takeover=1&server_max_window_bits=10&client_max_window_bits=10", true,
        pmd(10, 10, false, true) },
      { "/", { client_no_context_takeover = true }, pmd(15, 15, true, false) },
      { "/", { server_no_context_takeover = true }, pmd(15, 15, false, true) },
      { "/", { server_max_window_bits = 10 }, pmd(15, 10) },
      { "/", { client_max_window_bits = 10 }, pmd(10, 15) },
      { "/", { client_max_window_bits = 9, server_max_window_bits = 9,
               client_no_context_takeover = true, server_no_context_takeover = true },
        pmd(9, 9, true, true) },
    },
  },
  {
    name = "Python websockets", kind = "echo",
    agreements = {
      { "/", true, pmd(12, 12) },
      { "/?server_no_context_takeover=1", true, pmd(15, 15, false, true) },
      { "/?client_no_context_takeover=1", true, pmd(15, 15, true, false) },
      { "/?server_max_window_bits=9", true, pmd(15, 9) },
      { "/?server_max_window_bits=10", true, pmd(15, 10) },
      { "/?client_max_window_bits=10", true, pmd(10, 15) },
      { "/?server_no_context_takeover=1&server_max_window_bits=10&client_max_window_bits=10", true,
        pmd(10, 10, false, true) },
      { "/", { client_no_context_takeover = true }, pmd(12, 12, true, false) },
      { "/", { server_no_context_takeover = true }, pmd(12, 12, false, true) },
      { "/", { server_max_window_bits = 10 }, pmd(12, 10) },
      { "/", { client_max_window_bits = 10 }, pmd(10, 12) },
      { "/", { client_max_window_bits = 9, server_max_window_bits = 9,
               client_no_context_takeover = true, server_no_context_takeover = true },
        pmd(9, 9, true, true) },
    },
  },
}

local function describe_option(v)
  if v == true then return "true" end
  local keys = {}
  for k, x in pairs(v) do keys[#keys + 1] = k .. " = " .. tostring(x) end
  table.sort(keys)
  return "{ " .. table.concat(keys, ", ") .. " }"
end

describe("permessage-deflate", function()
  local servers = {}
  local bad
  setup(function()
    for _, p in ipairs(PEERS) do servers[p.kind] = H.server(p.kind) end
    bad = H.server("bad")
  end)

  for _, peer in ipairs(PEERS) do
    describe("against " .. peer.name, function()
      local function url(path) return servers[peer.kind].url(path) end
      -- An option under which this peer lets luws compress what it sends. Python websockets
      -- restricts a client window it may choose to 12 bits, under which luws sends
      -- uncompressed (miniz_oxide compresses with 15 bits only): it gets no such offer.
      local function sending(extra)
        if peer.kind ~= "echo" and not extra then return true end
        local o = {}
        if peer.kind == "echo" then o.client_max_window_bits = false end
        for k, v in pairs(extra or {}) do o[k] = v end
        return o
      end

      it("echoes text and binary byte-exact through compression, a 3 MB JSON document too", function()
        local handler, got = H.recorder()
        local conn = H.open(url("/"), handler, opts(true))
        local doc = json_document(3 * 1024 * 1024)
        local bytes = {}
        for i = 0, 65535 do bytes[#bytes + 1] = string.char(i % 256, (i * 7) % 256) end
        local list = {
          { 1, "héllo" }, { 2, "\0\1\2\255" }, { 1, "" }, { 1, doc },
          { 2, table.concat(bytes) }, { 2, string.rep("\0", 1024 * 1024) }, { 1, NOISE }, { 1, NOISE },
        }
        local answers = exchange(conn, got, list, 30)
        for i, m in ipairs(list) do
          assert.equal(m[1], answers[i][1], "opcode of message " .. i)
          assert.is_true(m[2] == answers[i][2], "message " .. i .. " (" .. #m[2] .. " bytes) came back altered")
        end
        assert.same(pmd(peer.kind == "echo" and 12 or 15, peer.kind == "echo" and 12 or 15),
          conn:extensions())
        luws.wsclose(conn)
      end)

      it("sends a 1 MB JSON document in under a third of its bytes, and uncompressed without the option", function()
        local doc = json_document(1024 * 1024)
        local plain = wire_reports(url("/?report=1"), nil, { doc })[1]
        assert.same({ opcode = 1, length = #doc, frames = 1, rsv1 = "0", wire = #doc }, plain)
        local packed = wire_reports(url("/?report=1"), sending(), { doc })[1]
        assert.equal("1", packed.rsv1:sub(1, 1))
        assert.is_true(packed.wire < #doc / 3, packed.wire .. " bytes on the wire for " .. #doc)
        if peer.kind == "echo" then
          -- The default offer lets this server choose our window; it picks 12 bits, so the
          -- document goes uncompressed (what it sends us is compressed all the same).
          local restricted = wire_reports(url("/?report=1"), true, { doc })[1]
          assert.same({ "0", #doc }, { restricted.rsv1, restricted.wire })
        end
      end)

      describe("agrees to what the server and the options ask for, and works through it", function()
        for _, a in ipairs(peer.agreements) do
          it(a[1] .. " with permessage_deflate = " .. describe_option(a[2]), function()
            local handler, got = H.recorder()
            local conn = H.open(url(a[1]), handler, opts(a[2]))
            assert.same(a[3], conn:extensions())
            -- The server's window carried across messages (NOISE twice), repeats beyond small
            -- windows (FAR), large and binary messages.
            local list = { { 1, NOISE }, { 1, NOISE }, { 1, FAR }, { 1, json_document(200 * 1024) },
                           { 2, FAR .. "\0\255" }, { 1, NOISE } }
            local answers = exchange(conn, got, list, 20)
            for i, m in ipairs(list) do
              assert.is_true(m[2] == answers[i][2], "message " .. i .. " came back altered")
            end
            luws.wsclose(conn)
          end)
        end
      end)

      it("keeps its window across messages unless client_no_context_takeover is agreed", function()
        -- The same text twice: with context takeover the second is mostly one back-reference.
        local r = wire_reports(url("/?report=1"), sending(), { NOISE, NOISE })
        assert.equal("1", r[1].rsv1)
        assert.is_true(r[2].wire < r[1].wire / 4, "second copy: " .. r[2].wire .. " of " .. r[1].wire)
        -- Asked for by the client, then demanded by the server: every message starts afresh.
        r = wire_reports(url("/?report=1"), sending({ client_no_context_takeover = true }), { NOISE, NOISE })
        assert.is_true(r[2].wire > r[1].wire * 0.9, "second copy: " .. r[2].wire .. " of " .. r[1].wire)
        r = wire_reports(url("/?report=1&client_no_context_takeover=1"), sending(), { NOISE, NOISE })
        assert.is_true(r[2].wire > r[1].wire * 0.9, "second copy: " .. r[2].wire .. " of " .. r[1].wire)
      end)

      it("sends messages shorter than threshold uncompressed (default 1024)", function()
        local r = wire_reports(url("/?report=1"), sending(),
          { string.rep("a", 1023), string.rep("a", 1024), "hello" })
        assert.same({ "0", 1023 }, { r[1].rsv1, r[1].wire })
        assert.equal("1", r[2].rsv1)
        assert.is_true(r[2].wire < 100)
        assert.same({ "0", 5 }, { r[3].rsv1, r[3].wire })
        r = wire_reports(url("/?report=1"), sending({ threshold = 0 }), { "hello", string.rep("b", 50) })
        assert.same({ "1", "1" }, { r[1].rsv1, r[2].rsv1 })
        r = wire_reports(url("/?report=1"), sending({ threshold = 4096 }),
          { string.rep("c", 4095), string.rep("c", 4096) })
        assert.same({ "0", "1" }, { r[1].rsv1, r[2].rsv1 })
      end)

      it("offers nothing without the option, and extensions() is an empty table", function()
        local h = request_headers(url("/headers"), nil)
        assert.is_nil(h["sec-websocket-extensions"])
        local conn = H.open(url("/"), function() end)
        assert.same({}, conn:extensions())
        luws.wsclose(conn)
        conn = H.open(url("/?deflate=0"), function() end, opts(true))
        assert.same({}, conn:extensions(), "offered, but the server declined")
        luws.wsclose(conn)
      end)
    end)
  end

  it("offers permessage-deflate with client_max_window_bits, and the parameters the options give", function()
    local node = servers.node
    local offer = tokens(request_headers(node.url("/headers"), true)["sec-websocket-extensions"])
    assert.is_true(offer["permessage-deflate"])
    assert.is_true(offer["client_max_window_bits"] or false)
    offer = tokens(request_headers(node.url("/headers"), {
      client_max_window_bits = 10, server_max_window_bits = 9,
      client_no_context_takeover = true, server_no_context_takeover = true,
    })["sec-websocket-extensions"])
    for _, t in ipairs({ "permessage-deflate", "client_max_window_bits=10", "server_max_window_bits=9",
                         "client_no_context_takeover", "server_no_context_takeover" }) do
      assert.is_true(offer[t] or false, t)
    end
    -- false leaves it out: the server may not restrict luws's window.
    assert.equal("permessage-deflate", request_headers(node.url("/headers"),
      { client_max_window_bits = false })["sec-websocket-extensions"])
  end)

  it("works through the verawebsockets API: create's options, then wso:extensions()", function()
    local doc = json_document(300 * 1024)
    local events, opened, closed = {}, false, false
    local handlers = {
      [1] = function(reason, _, detail) events[#events + 1] = { 1, reason, detail } end,
      [3] = function(w)
        opened = true
        events[#events + 1] = { 3 }
        assert(vws.send(w, doc))
      end,
      [4] = function() closed = true; events[#events + 1] = { 4 } end,
      [8] = function(data, _, opcode) events[#events + 1] = { 8, data, opcode } end,
    }
    -- Not standalone, so every loop() returns and every wait here is bounded.
    local wso = vws.create(servers.node.url("/"), handlers, {}, false,
      { permessage_deflate = true, max_payload_size = BIG })
    -- An object left open would keep later specs' standalone loops from blocking.
    finally(function()
      vws.close(wso)
      local deadline = H.socket.gettime() + 5
      while opened and not closed and H.socket.gettime() < deadline do
        vws.loop()
        H.socket.sleep(0.01)
      end
    end)
    vws.connect(wso)
    local deadline = H.socket.gettime() + 15
    while #events < 2 and H.socket.gettime() < deadline do
      vws.loop()
      luws.wait({ wso }, 0.05)
    end
    assert.equal(3, events[1] and events[1][1])
    assert.equal(8, events[2] and events[2][1], "no echo")
    assert.is_true(events[2][2] == doc, "the echo differs")
    assert.same(pmd(15, 15), wso:extensions())
    vws.close(wso)
    deadline = H.socket.gettime() + 5
    while not closed and H.socket.gettime() < deadline do
      vws.loop()
      H.socket.sleep(0.01)
    end
    assert.same({ 4 }, events[3])
  end)

  describe("a server that gets it wrong fails the connection with the RFC close code", function()
    local cases = {
      { "/deflate_corrupt", true, "receiver error: invalid compressed data", "close 1007" },
      { "/deflate_rsv1_continuation", true, "receiver error: protocol error: reserved bits set", "close 1002" },
      { "/deflate_rsv1_control", true, "receiver error: protocol error: reserved bits set", "close 1002" },
      { "/rsv1_unnegotiated", true, "receiver error: protocol error: reserved bits set", "close 1002" },
      -- Not offered, so not negotiated: a compressed frame is a protocol error.
      { "/deflate_corrupt", nil, "receiver error: protocol error: reserved bits set", "close 1002" },
      { "/deflate_ok_fragmented", nil, "receiver error: protocol error: reserved bits set", "close 1002" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. (c[2] and "" or " (not offered)"), function()
        local id = H.id()
        local handler, got = H.recorder()
        local conn = H.open(bad.url(c[1] .. "?id=" .. id), handler, { permessage_deflate = c[2] })
        local ok, err = H.pump(conn, function() return false end, 5)
        assert.is_nil(ok)
        assert.equal(c[3]:gsub("^receiver error: ", ""), err)
        assert.same({ { false, c[3] } }, got)
        local log = bad:log(id, "close")
        assert.matches("^" .. c[4], log[#log])
      end)
    end

    -- A few KiB that inflate to MiBs: stopped past max_payload_size, not inflated whole first.
    local bombs = {
      { "/deflate_bomb?size=4194304", 65535 },   -- a 4 KiB frame, the default limit
      { "/deflate_bomb", 1024 * 1024 },          -- a 100 KiB frame inflating to 100 MiB
    }
    for _, b in ipairs(bombs) do
      it(b[1] .. " with max_payload_size " .. b[2], function()
        local id = H.id()
        local handler, got = H.recorder()
        local o = { permessage_deflate = true }
        if b[2] ~= 65535 then o.max_payload_size = b[2] end
        local conn = H.open(bad.url(b[1] .. (b[1]:find("?", 1, true) and "&" or "?") .. "id=" .. id), handler, o)
        local rss = H.rss()
        local ok, err = H.pump(conn, function() return false end, 10)
        assert.is_nil(ok)
        local n = tonumber(tostring(err):match("^message of (%d+) bytes exceeds max_payload_size " .. b[2] .. "$"))
        assert(n, "error: " .. tostring(err))
        assert.is_true(n > b[2])
        assert.same({ { false, "receiver error: " .. err } }, got)
        assert.is_true(H.rss() - rss < 64 * 1024, "RSS grew by " .. (H.rss() - rss) .. " KiB")
        local log = bad:log(id, "close")
        assert.matches("^close 1009", log[#log])
      end)
    end
  end)

  it("inflates a compressed message over three frames with a ping inside, then plain and compressed ones", function()
    local id = H.id()
    local handler, got = H.recorder()
    local conn = H.open(bad.url("/deflate_ok_fragmented?id=" .. id), handler, { permessage_deflate = true })
    assert.same(pmd(15, 15), conn:extensions())
    assert.is_true(H.pump(conn, function() return #got >= 3 end))
    local text = string.rep("Hello, compressed and fragmented world! ", 8)
    assert.same({ { 1, text }, { 1, "plain after compressed" }, { 1, text } }, got)
    local log = bad:log(id, "pong")
    assert.equal("pong ping-in-the-middle", log[#log])
    luws.wsclose(conn)
  end)

  describe("a bad Sec-WebSocket-Extensions answer fails the open", function()
    local function urlencode(s)
      return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
    end
    local cases = {
      { "/ext_unknown_param", true, "permessage-deflate; foo=1", "unknown parameter foo" },
      { "/ext_repeated_param", true, "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "parameter server_no_context_takeover repeated" },
      { "/ext_bad_value", true, "permessage-deflate; server_max_window_bits=7", "bad value for server_max_window_bits" },
      { "/ext?value=" .. urlencode("permessage-deflate; client_max_window_bits=16"), true,
        "permessage-deflate; client_max_window_bits=16", "bad value for client_max_window_bits",
        "/ext (client_max_window_bits=16)" },
      { "/ext_server_bits_over", { server_max_window_bits = 10 }, "permessage-deflate; server_max_window_bits=15",
        "server_max_window_bits over the offer" },
      { "/ext_twice", true, "permessage-deflate, permessage-deflate", "permessage-deflate twice" },
      { "/ext_unknown_extension", true, "x-webkit-deflate-frame", "unknown extension x-webkit-deflate-frame" },
    }
    for _, c in ipairs(cases) do
      local name = c[5] or c[1]
      it(name .. " with permessage_deflate = " .. describe_option(c[2]), function()
        local ok, err = luws.wsopen(bad.url(c[1]), function() end, { permessage_deflate = c[2] })
        assert.is_false(ok)
        assert.equal("upgrade failed; bad Sec-WebSocket-Extensions " .. c[3] .. " (" .. c[4] .. ")", err)
      end)
      it(name .. " not offered", function()
        local ok, err = luws.wsopen(bad.url(c[1]), function() end)
        assert.is_false(ok)
        assert.equal("upgrade failed; unexpected Sec-WebSocket-Extensions " .. c[3], err)
      end)
    end

    it("/ext_client_bits_not_offered: client_max_window_bits=10 is an error only if not offered", function()
      local id = H.id()
      local handler, got = H.recorder()
      local conn, err = luws.wsopen(bad.url("/ext_client_bits_not_offered?id=" .. id), handler,
        { permessage_deflate = true })
      local offer = bad:log(id, "offer")[1] or ""
      if offer:find("client_max_window_bits", 1, true) then
        -- luws offers it (RFC 7692 §7.1.2.2 then lets the server pick any 8-15).
        assert(conn, err)
        assert.same(pmd(10, 15), conn:extensions())
        luws.wsclose(conn)
      else
        assert.is_false(conn)
        assert.equal("upgrade failed; bad Sec-WebSocket-Extensions permessage-deflate; client_max_window_bits=10" ..
          " (client_max_window_bits not offered)", err)
      end
    end)
  end)
end)
