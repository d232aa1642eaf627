-- wss://: TLS with LuWS's defaults (no verification), verification on request, CA files,
-- client certificates, SNI, LuaSec-style options, and a server that stalls the handshake.
-- A refused certificate says why, in the same words with either TLS backend.
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

  it("refuses that server when asked to verify the peer: self-signed certificate", function()
    local ok, err = echo_once(self_signed.url("/"), { ssl_verify = "peer" })
    assert.is_nil(ok)
    assert.equal("Failed SSL negotation: certificate verify failed: self-signed certificate", err)
    -- Trusting another CA does not make it less self-signed.
    ok, err = echo_once(self_signed.url("/"), { ssl_verify = "peer", ssl_cafile = H.servers.tls_ca() })
    assert.is_nil(ok)
    assert.equal("Failed SSL negotation: certificate verify failed: self-signed certificate", err)
  end)

  it("refuses a server whose CA it does not know: unknown issuer", function()
    local ok, err = echo_once(ca_signed.url("/echo"), { ssl_verify = "peer" })
    assert.is_nil(ok)
    assert.equal("Failed SSL negotation: certificate verify failed: unknown issuer", err)
  end)

  it("refuses an expired certificate, and one not yet valid, naming which", function()
    local ca = H.servers.tls_ca()
    local expired = H.server("bad", { tls = "expired" })
    local ok, err = echo_once(expired.url("/echo"), { ssl_verify = "peer", ssl_cafile = ca })
    assert.is_nil(ok)
    assert.equal("Failed SSL negotation: certificate verify failed: certificate has expired", err)
    local early = H.server("bad", { tls = "not_yet_valid" })
    ok, err = echo_once(early.url("/echo"), { ssl_verify = "peer", ssl_cafile = ca })
    assert.is_nil(ok)
    assert.equal("Failed SSL negotation: certificate verify failed: certificate is not yet valid", err)
  end)

  it("refuses a certificate for another host name: hostname mismatch (name or IP in the URL)", function()
    local ca = H.servers.tls_ca()
    local wrong = H.server("bad", { tls = "wrong_host" })
    for _, url in ipairs({ wrong.url("/echo"), (wrong.url("/echo"):gsub("localhost", "127.0.0.1")) }) do
      local ok, err = echo_once(url, { ssl_verify = "peer", ssl_cafile = ca })
      assert.is_nil(ok, url)
      assert.equal("Failed SSL negotation: certificate verify failed: hostname mismatch", err, url)
    end
  end)

  it("refuses a certificate not issued for TLS servers: unsuitable certificate purpose", function()
    local s = H.server("bad", { tls = "wrong_purpose" })
    local ok, err = echo_once(s.url("/echo"), { ssl_verify = "peer", ssl_cafile = H.servers.tls_ca() })
    assert.is_nil(ok)
    assert.equal("Failed SSL negotation: certificate verify failed: unsuitable certificate purpose", err)
  end)

  it("refuses a certificate whose signature does not verify: bad signature", function()
    local s = H.server("bad", { tls = "bad_signature" })
    local ok, err = echo_once(s.url("/echo"), { ssl_verify = "peer", ssl_cafile = H.servers.tls_ca() })
    assert.is_nil(ok)
    assert.equal("Failed SSL negotation: certificate verify failed: bad signature", err)
  end)

  it("accepts those certificates without verification, as LuWS does", function()
    for _, kind in ipairs({ "expired", "not_yet_valid", "wrong_host", "wrong_purpose", "bad_signature" }) do
      local s = H.server("bad", { tls = kind })
      assert.equal("over tls", echo_once(s.url("/echo")), kind)
    end
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
    assert.equal("Failed SSL negotation: certificate verify failed: hostname mismatch", err)
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

  it("reports a key that is not the certificate's, in the same words with either backend", function()
    local cert = H.servers.client_cert()
    local _, other_key = H.servers.tls_files()
    local ok, err = luws.wsopen(self_signed.url("/"), function() end, { ssl_certificate = cert, ssl_key = other_key })
    assert.is_false(ok)
    assert.equal("Failed SSL negotation: bad ssl_certificate/ssl_key: key values mismatch", err)
  end)

  it("never shows a TLS library's error codes or source paths", function()
    local ca = H.servers.tls_ca()
    local cert = H.servers.client_cert()
    local _, other_key = H.servers.tls_files()
    local junk = os.tmpname()
    local f = assert(io.open(junk, "w"))
    f:write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    f:close()
    local tries = {
      { self_signed.url("/"), { ssl_verify = "peer" } },
      { ca_signed.url("/echo"), { ssl_verify = "peer" } },
      { H.server("bad", { tls = "expired" }).url("/echo"), { ssl_verify = "peer", ssl_cafile = ca } },
      { H.server("bad", { tls = "wrong_host" }).url("/echo"), { ssl_verify = "peer", ssl_cafile = ca } },
      { self_signed.url("/"), { ssl_certificate = cert, ssl_key = other_key } },
      { self_signed.url("/"), { ssl_verify = "peer", ssl_cafile = junk } },
      { ca_signed.url("/echo"), { ssl_protocol = "tlsv1" } }, -- the server refuses TLS 1.0
    }
    local errs = {}
    for i, t in ipairs(tries) do
      local ok, err = luws.wsopen(t[1], function() end, t[2])
      if ok then luws.wsclose(ok) end
      errs[i] = ok and "connected" or err
    end
    os.remove(junk)
    for _, err in ipairs(errs) do
      assert.matches("^Failed SSL negotation: ", err)
      assert.is_nil(err:match("%.c:%d"), err)
      assert.is_nil(err:match("%.h:%d"), err)
      assert.is_nil(err:match("error:%x%x%x%x%x%x%x%x"), err)
      assert.is_nil(err:match("routines"), err)
    end
  end)

  it("names the alert a server refuses the handshake with", function()
    local ok, err = luws.wsopen(ca_signed.url("/echo"), function() end, { ssl_protocol = "tlsv1" })
    assert.is_false(ok)
    if luws.tls_backend == "rustls" then
      assert.equal("Failed SSL negotation: rustls supports only TLS 1.2 and 1.3", err)
    else
      assert.equal("Failed SSL negotation: tls alert: protocol version", err)
    end
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

  describe("ssl_pin", function()
    -- The README's command: the SHA-256 of the certificate's SubjectPublicKeyInfo, in base64.
    local function pin_of(cert)
      local p = io.popen("openssl x509 -in '" .. cert .. "' -pubkey -noout" ..
        " | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64")
      local b64 = p:read("*l")
      p:close()
      assert.equal(44, #b64)
      return "sha256//" .. b64
    end
    local wrong = "sha256//" .. string.rep("A", 43) .. "="

    it("connects to a self-signed server whose key matches, without any CA", function()
      local pin = pin_of(H.servers.tls_cert(true))
      assert.equal("over tls", echo_once(self_signed.url("/"), { ssl_pin = pin }))
      -- One slash, as the issue of this feature spelled it, is accepted too.
      assert.equal("over tls", echo_once(self_signed.url("/"), { ssl_pin = pin:gsub("//", "/") }))
    end)

    it("refuses a server whose key matches no pin, before sending anything", function()
      local id = H.id()
      local ok, err = echo_once(ca_signed.url("/echo?id=" .. id), { ssl_pin = wrong })
      assert.is_nil(ok)
      assert.equal("Failed SSL negotation: certificate verify failed: public key does not match ssl_pin", err)
      local log = ca_signed:log(id, nil, 0.5)
      assert.is_nil(find(log, "^open"), table.concat(log, "\n"))
    end)

    it("accepts any of several pins (a list, or curl's ';'-separated string)", function()
      local pin = pin_of(H.servers.tls_cert(true))
      assert.equal("over tls", echo_once(self_signed.url("/"), { ssl_pin = { wrong, pin } }))
      assert.equal("over tls", echo_once(self_signed.url("/"), { ssl_pin = wrong .. ";" .. pin }))
    end)

    it("with ssl_verify = 'peer' needs both: the CA and the pin", function()
      local pin = pin_of(H.servers.tls_cert("ca"))
      local ca = H.servers.tls_ca()
      local id = H.id()
      assert.equal("over tls", echo_once(ca_signed.url("/echo?id=" .. id),
        { ssl_verify = "peer", ssl_cafile = ca, ssl_pin = pin }))
      local _, err = echo_once(ca_signed.url("/echo"), { ssl_verify = "peer", ssl_pin = pin })
      assert.equal("Failed SSL negotation: certificate verify failed: unknown issuer", err)
      _, err = echo_once(ca_signed.url("/echo"), { ssl_verify = "peer", ssl_cafile = ca, ssl_pin = wrong })
      assert.equal("Failed SSL negotation: certificate verify failed: public key does not match ssl_pin", err)
    end)

    it("raises on a pin that is not sha256//<base64 of 32 bytes>", function()
      for _, bad in ipairs({ "sha1//AAAA", "sha256//AAAA", "sha256//" .. string.rep("*", 44), "AAAA" }) do
        local ok, err = pcall(luws.wsopen, self_signed.url("/"), function() end, { ssl_pin = bad })
        assert.is_false(ok)
        assert.matches("^bad option 'ssl_pin' to 'wsopen' %(", err)
      end
    end)
  end)

  describe("ssl_servername", function()
    it("sends and verifies another name than the URL's host (a hub reached by IP)", function()
      local hub = H.server("bad", { tls = "wrong_host" }) -- its certificate names wrong.example only
      local ca = H.servers.tls_ca()
      local url = hub.url("/echo"):gsub("localhost", "127.0.0.1")
      local _, err = echo_once(url, { ssl_verify = "peer", ssl_cafile = ca })
      assert.equal("Failed SSL negotation: certificate verify failed: hostname mismatch", err)
      local id = H.id()
      assert.equal("over tls", echo_once(url .. "?id=" .. id,
        { ssl_verify = "peer", ssl_cafile = ca, ssl_servername = "wrong.example" }))
      assert.equal("sni wrong.example", find(hub:log(id, "sni"), "^sni"))
    end)

    it("raises on a value that is no host name", function()
      for _, bad in ipairs({ "", "a b", "bad_name.example", string.rep("a", 64) .. ".example" }) do
        local ok, err = pcall(luws.wsopen, self_signed.url("/"), function() end, { ssl_servername = bad })
        assert.is_false(ok)
        assert.matches("^bad option 'ssl_servername' to 'wsopen' %(", err)
      end
      local ok, err = pcall(luws.wsopen, self_signed.url("/"), function() end, { ssl_servername = 5 })
      assert.is_false(ok)
      assert.equal("bad option 'ssl_servername' to 'wsopen' (string expected, got number)", err)
    end)
  end)
end)
