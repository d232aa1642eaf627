-- wss://: TLS with LuWS's defaults (no verification), verification on request, CA files,
-- client certificates, SNI, LuaSec-style options, and a server that stalls the handshake.
local H = spec_helper
local luws = H.luws

describe("wss://", function()
  local self_signed, ca_signed
  setup(function()
    self_signed = H.server("echo", { tls = true })
    ca_signed = H.server("bad", { tls = "ca", client_ca = true })
  end)

  local function find(lines, pattern)
    for _, l in ipairs(lines) do if l:match(pattern) then return l end end
  end

  local function echo_once(url, opts)
    local handler, got = H.recorder()
    local conn, err = luws.wsopen(url, handler, opts)
    if not conn then return nil, err end
    luws.wssend(conn, 1, "over tls")
    local ok = H.pump(conn, function() return #got >= 1 end)
    luws.wsclose(conn)
    return ok and got[1][2]
  end

  it("connects to a self-signed server by default, as LuWS does (ssl_verify = none)", function()
    assert.equal("over tls", echo_once(self_signed.url("/")))
  end)

  it("refuses that server when asked to verify the peer", function()
    local ok, err = echo_once(self_signed.url("/"), { ssl_verify = "peer" })
    assert.is_nil(ok)
    assert.matches("^Failed SSL negotation: certificate verify failed", err)
  end)

  it("verifies against ssl_cafile", function()
    local ca = H.servers.tls_ca()
    local id = H.id()
    assert.equal("over tls", echo_once(ca_signed.url("/echo?id=" .. id), { ssl_verify = "peer", ssl_cafile = ca }))
  end)

  it("checks the host name when verifying", function()
    local ca = H.servers.tls_ca()
    -- The certificate names localhost and 127.0.0.1; reach the same server under another name
    -- through the connect option.
    local url = ca_signed.url("/echo"):gsub("localhost", "wrong.example")
    local connect = function(host, port)
      local s = H.socket.tcp()
      s:settimeout(5)
      assert(s:connect("127.0.0.1", port))
      return s
    end
    local ok, err = echo_once(url, { ssl_verify = "peer", ssl_cafile = ca, connect = connect })
    assert.is_nil(ok)
    assert.matches("^Failed SSL negotation: ", err)
  end)

  it("sends SNI with the host name", function()
    local id = H.id()
    echo_once(ca_signed.url("/echo?id=" .. id))
    assert.equal("sni localhost", find(ca_signed:log(id, "sni"), "^sni"))
  end)

  it("presents a client certificate from ssl_certificate and ssl_key", function()
    local cert, key = H.servers.client_cert()
    local id = H.id()
    assert.equal("over tls", echo_once(ca_signed.url("/echo?id=" .. id), { ssl_certificate = cert, ssl_key = key }))
    assert.equal("client-cert luws-client", find(ca_signed:log(id, "client-cert"), "^client%-cert"))
    local id2 = H.id()
    echo_once(ca_signed.url("/echo?id=" .. id2))
    assert.equal("client-cert none", find(ca_signed:log(id2, "client-cert"), "^client%-cert"))
  end)

  it("accepts ssl_options as LuWS's comma-separated string or as a table, and ssl_protocol", function()
    assert.equal("over tls", echo_once(self_signed.url("/"), { ssl_options = "all,no_sslv2,no_sslv3" }))
    assert.equal("over tls", echo_once(self_signed.url("/"), { ssl_options = { "all", "no_tlsv1" } }))
    assert.equal("over tls", echo_once(self_signed.url("/"), { ssl_protocol = "tlsv1_2", ssl_mode = "client" }))
  end)

  it("raises for TLS options it cannot honour", function()
    for _, opts in ipairs({
      { ssl_protocol = "sslv3" }, { ssl_options = "no_such_flag" }, { ssl_verify = "sometimes" },
      { ssl_mode = "server" }, { ssl_key = "/tmp/key.pem" },
    }) do
      local ok, err = pcall(luws.wsopen, self_signed.url("/"), function() end, opts)
      assert.is_false(ok)
      assert.matches("bad option 'ssl_%a+' to 'wsopen'", tostring(err))
    end
  end)

  it("reports an unreadable ssl_cafile", function()
    local ok, err = luws.wsopen(self_signed.url("/"), function() end, { ssl_verify = "peer", ssl_cafile = "/nonexistent.pem" })
    assert.is_false(ok)
    assert.equal("Failed SSL negotation: cannot read ssl_cafile /nonexistent.pem: no such file or directory", err)
  end)

  it("gives up on a server that stalls the TLS handshake within connect_timeout", function()
    local stall = H.server("bad", { tls = true, stall = true })
    local t, ok, err = H.elapsed(function()
      return luws.wsopen(stall.url("/echo"), function() end, { connect_timeout = 0.5 })
    end)
    assert.is_false(ok)
    assert.equal("Failed SSL negotation: timeout", err)
    assert.is_true(t >= 0.4 and t < 3, "took " .. t)
  end)
end)
