---@meta luws
-- LuaLS type annotations for luws (https://luals.github.io/wiki/annotations/). Not loaded at run
-- time: put this file (or the lua/ folder) in the workspace or in `workspace.library`, and
-- `require "luws"`, `require "verawebsockets"` and `require "L_<Plugin>_LuWS"` complete and check.
--
-- Conventions (README, "Errors"): runtime failures are returned (`false, err` / `nil, err`, or the
-- handler called with `opcode == false`); wrong argument types or option values raise a Lua error.

------------------------------------------------------------------------------ LuWS API

---WebSocket opcodes luws sends and delivers: 1 text, 2 binary, 8 close, 9 ping, 10 pong.
---Floats with an integer value (`1.0`) are accepted on every Lua version.
---@alias luws.Opcode 1|2|8|9|10

---Message handler: called by `wsreceive` for every complete (reassembled) message with
---`opcode` 1 or 2, and once with `opcode == false` and an error text (`"receiver error: closed"`,
---`"message timeout"`, `"receiver error: …"`) when the connection fails or the peer closes.
---The extra arguments are `options.handler_args`, unpacked. An error it raises is logged, not
---propagated. It may call `wssend`/`wsclose` on its own connection.
---@alias luws.Handler fun(conn: luws.Conn, opcode: 1|2|false, data: string, ...: any)

---Control handler: called for every control frame (8 close, 9 ping, 10 pong) before the default
---handling (a Close is answered and reported to the message handler; a ping is answered with a
---pong echoing its payload). Return `false` to suppress the default handling.
---@alias luws.ControlHandler fun(conn: luws.Conn, opcode: 8|9|10, data: string, ...: any): boolean?

---An LTN12 source: returns the next chunk, `nil` at the end, or `nil, err` to abort the send.
---@alias luws.Source fun(): string?, string?

---The `connect` option: opens the TCP connection itself (SockProxy, a bound interface, ...).
---Returns an object with `getfd()` (a LuaSocket TCP object), or `nil, err`. luws takes its file
---descriptor over (and calls `setfd(-1)` on it when it has that method).
---@alias luws.ConnectFunction fun(host: string, port: integer): (luws.Socket|nil), string?

---Anything with a file descriptor, such as a LuaSocket TCP object.
---@class luws.Socket
---@field getfd fun(self: luws.Socket): integer
---@field setfd? fun(self: luws.Socket, fd: integer)

---Built-in Luup notification (the contract of SockProxy's `NTFY=`): a watcher thread asks Luup to
---run `action` when data arrives, once per arrival, and once more when the peer closes.
---@class luws.Notify
---@field device integer Luup device number (`DeviceNum`).
---@field service string Service id the action is declared in (`serviceId`).
---@field action? string Action name. Default `"HandleReceive"`.
---@field host? string Luup's HTTP host. Default `"127.0.0.1"`.
---@field port? integer Luup's HTTP port. Default `3480`.
---@field pid? string|integer The `Pid` parameter sent. Default: a number unique in the process.

---Options of `wsopen`. All are optional. luws writes LuWS's defaults for `receive_timeout`,
---`receive_chunk_size`, `max_payload_size` and `use_masking` back into the table, as LuWS does.
---Numbers may be given as strings (`"30"`). Times are seconds (fractions allowed).
---@class luws.Options
---@field handler_args? any[] Extra arguments passed to the handlers, unpacked (`1..#t`). Default none.
---@field receive_timeout? number Seconds without any frame from the peer before the handler gets `false, "message timeout"`. Default `0` (none).
---@field receive_chunk_size? integer Bytes per socket read (min 16). Default `4096` (LuWS: 2048).
---@field receive_budget? integer Bytes one `wsreceive` call processes before it returns `true` (more pending). Default `65536`.
---@field max_payload_size? integer Largest message (reassembled) delivered; a larger one calls the handler with `false` and closes with 1009. Default `65535`.
---@field keepalive? number Send a ping after this many idle seconds. Default `0` (off).
---@field send_timeout? number Longest a `wssend` may wait for the socket; then `false, "send error: timeout"`. `0`: never wait, buffer the rest. Default `5`.
---@field close_timeout? number How long `wsclose` waits for the peer's Close. Default `1`.
---@field connect_timeout? number TCP connect (and TLS) bound. Default `15`.
---@field handshake_timeout? number WebSocket upgrade bound. Default `5`.
---@field upgrade_headers? table<string, string|number> Extra HTTP headers for the upgrade request.
---@field ssl_protocol? "any"|"sslv23"|"tlsv1"|"tlsv1_1"|"tlsv1_2"|"tlsv1_3" LuaSec-style protocol: `any` (default) or exactly one version.
---@field ssl_verify? "none"|"peer"|"client_once"|"fail_if_no_peer_cert"|string[] Default `"none"` (as LuWS: no certificate check). `"peer"` verifies against the system roots plus `ssl_cafile`.
---@field ssl_mode? "client" Only `"client"`. Default `"client"`.
---@field ssl_options? string|string[] LuaSec options, a table or LuWS's comma-separated string (`"all,no_tlsv1"`). Default `"all"`.
---@field ssl_cafile? string PEM file of extra trusted CA certificates (used with `ssl_verify = "peer"`).
---@field ssl_certificate? string PEM client certificate (chain), for servers that ask for one; needs `ssl_key`.
---@field ssl_key? string PEM private key of `ssl_certificate`.
---@field use_masking? boolean `false` sends unmasked frames, for servers that cannot unmask (breaks RFC 6455 §5.3). Default `true`.
---@field control_handler? luws.ControlHandler
---@field connect? luws.ConnectFunction Open the TCP connection yourself (e.g. through SockProxy).
---@field notify? luws.Notify Built-in Luup notification, instead of SockProxy.
---@field follow_redirects? integer Redirects to follow (0 to 20; default 0, as LuWS).
---@field protocols? string[]|string Subprotocols to offer, in order of preference (`conn:protocol()` is the choice).
---@field reconnect? boolean|luws.Reconnect Reopen by itself after an end the application did not ask for.
---@field on_open? fun(conn: luws.Conn, attempt: integer, ...: any) After every successful open (attempt 0 is the first).

---Backoff of `reconnect` (seconds).
---@class luws.Reconnect
---@field initial? number Delay before an outage's first attempt. Default 1.
---@field max? number Longest delay; a connection that lived longer resets the backoff. Default 60.
---@field factor? number Growth of each delay. Default 2.
---@field jitter? number Spread of each delay, 0–1. Default 0.25.
---@field attempts? integer Failed attempts in a row before giving up; nil: never.

---A connection returned by `wsopen`. Also usable with LuaSocket's `socket.select`.
---`tostring(conn)` is `"luws-websock[host:port]"`.
---@class luws.Conn: userdata
local Conn = {}

---Same as `luws.wssend(conn, opcode, data)`.
---@param opcode luws.Opcode|number
---@param data? string|number|luws.Source
---@return boolean ok
---@return string? err
function Conn:send(opcode, data) end

---Same as `luws.wsreceive(conn)`.
---@return boolean|nil more
---@return integer|string nbytes_or_err
function Conn:receive() end

---Same as `luws.wsclose(conn)`.
function Conn:close() end

---Same as `luws.wslastping(conn)`.
---@return number
function Conn:lastping() end

---The socket's file descriptor (for `socket.select` and poll loops), `-1` once closed.
---@return integer
function Conn:getfd() end

---True when data is already buffered (TLS or frame decoder) so a select would wrongly sleep.
---@return boolean
function Conn:dirty() end

---True while the connection is open (not closed, failed or closing).
---@return boolean
function Conn:isopen() end

---The subprotocol the server chose (see the `protocols` option), or nil.
---@return string?
function Conn:protocol() end

---The URL it opened, after any redirect (`follow_redirects`).
---@return string
function Conn:url() end

---The server's 101 answer: status, reason phrase and headers (names lowercase).
---@return integer status
---@return string reason
---@return table<string, string> headers
function Conn:response() end

---`"open"`, `"reconnecting"` (with `reconnect`) or `"closed"`.
---@return "open"|"reconnecting"|"closed"
function Conn:state() end

---The native module (`require "luws"`, or the `L_<Plugin>_LuWS.lua` shim); it carries both
---APIs, LuWS (below) and verawebsockets (further down).
---@class luws: verawebsockets
---@field _VERSION integer LuWS-style version number, `YYDDD` (e.g. `26325`).
---@field VERSION string Crate version, e.g. `"0.1.0"`.
---@field version string Same as `VERSION`.
---@field tls_backend "native-tls"|"rustls" The compiled-in TLS backend.
---@field debug_mode boolean LuWS compatibility only: luws reads nothing from it (verawebsockets logging: `set_log_level`).
local luws = {}

---Opens a WebSocket connection (blocking, bounded by `connect_timeout` and `handshake_timeout`).
---A bad URL returns `false, err`; a handler or options of the wrong type raises.
---@param url string `ws://host[:port]/path?query` or `wss://…` (IPv6 literals in brackets).
---@param message_handler luws.Handler
---@param options? luws.Options
---@return luws.Conn|false conn
---@return string? err `"Connection to HOST:PORT failed: …"`, `"upgrade failed; …"`, `"Failed SSL negotation: …"`, `"Invalid protocol/address …"`.
---@nodiscard
function luws.wsopen(url, message_handler, options) end

---Sends one message: `data` is a string (a number is sent as its `tostring`), nil (empty) or an
---LTN12 source drained into one message. Any size. Never blocks longer than `send_timeout`.
---@param conn luws.Conn|nil
---@param opcode luws.Opcode|number 1 text, 2 binary, 8 close (`data` empty or 2-byte code + reason), 9 ping, 10 pong.
---@param data? string|number|luws.Source
---@return boolean ok
---@return string? err `"not connected"`, `"closing"`, `"send error: …"`.
function luws.wssend(conn, opcode, data) end

---Non-blocking: processes what has arrived (bounded work) and calls the handlers. Returns
---`more, nbytes` (`more` true when data is still pending: call again soon) or `nil, err`
---(`"not connected"`, `"closed"`, `"message timeout"`, …).
---@param conn luws.Conn|nil
---@return boolean|nil more
---@return integer|string nbytes_or_err
function luws.wsreceive(conn) end

---Sends Close 1000 if open, waits up to `close_timeout` for the peer's Close, closes the socket.
---Safe at any time, twice, or on `nil`.
---@param conn luws.Conn|nil
function luws.wsclose(conn) end

---Time (`os.time()`-like seconds, fractional) of the last frame received from the peer.
---@param conn luws.Conn|nil
---@return number
function luws.wslastping(conn) end

---LuWS compatibility; luws's parser cannot lose sync, so this does nothing.
---@param conn luws.Conn|nil
function luws.wsreset(conn) end

---Sleeps in poll(2) until some of `conns` have work (data, buffered data, a due timer), or
---`timeout` seconds pass (nil or negative: no limit). Returns those conns (empty on timeout).
---@generic T: luws.Conn|verawebsockets.Wso
---@param conns T[]
---@param timeout? number
---@return T[]
function luws.wait(conns, timeout) end

------------------------------------------------------------------------------ verawebsockets API

---verawebsockets event IDs (libwebsockets 2.4 callback reasons).
---@alias verawebsockets.Event
---| 1 # connection error: `handler(reason, wso, detail)`, reason in libwebsockets words (`"HS: Accept hash wrong"`, `"Peer hung up"`, …), detail the luws error text
---| 3 # established: `handler(wso)`
---| 4 # closed: `handler(wso)`
---| 8 # receive: `handler(data, wso, opcode)`, opcode 1 text or 2 binary

---An event handler: the name of a global function (looked up when the event fires, as Vera
---does) or a function. It gets the documented parameter (event 1: the reason; event 8: the
---data), then the wso, then more context (event 1: the luws error text; event 8: the opcode).
---@alias verawebsockets.Handler string|fun(...: any)

---`create`'s `ssl_settings`. Verification is off unless asked for.
---@class verawebsockets.SslSettings
---@field client_ssl_cert_filepath? string PEM client certificate presented to the server.
---@field client_ssl_private_key_filepath? string PEM private key of that certificate.
---@field client_ssl_ca_filepath? string PEM file of trusted CA certificates (adds to the system roots).
---@field client_ssl_verify_peer? boolean Verify the server's certificate and host name. Default `false`.

---A websocket object from `create`. Also usable with LuaSocket's `socket.select`.
---`tostring(wso)` is `"verawebsockets[url]"`.
---@class verawebsockets.Wso: userdata
local Wso = {}

---Same as `connect(wso)`.
function Wso:connect() end

---Same as `send(wso, data, is_binary)`.
---@param data string|number
---@param is_binary? boolean
---@return boolean ok
---@return string? err
function Wso:send(data, is_binary) end

---Same as `close(wso)`.
function Wso:close() end

---The socket's file descriptor, `-1` before connecting or once closed.
---@return integer
function Wso:getfd() end

---True when data is already buffered so a select would wrongly sleep.
---@return boolean
function Wso:dirty() end

---@class verawebsockets
local vws = {}

---Creates a websocket object; `connect` starts it.
---@param url string
---@param event_handlers table<verawebsockets.Event|integer, verawebsockets.Handler>
---@param ssl_settings? verawebsockets.SslSettings
---@param standalone? boolean `true` for scripts that may block in `loop()` and `send`; `false` (default) inside Luup: `loop()` makes one bounded pass and sends never wait (`send_timeout = 0`).
---@param options? luws.Options luws extension: the `wsopen` options (timeouts, sizes, `ssl_*`, `notify`, …).
---@return verawebsockets.Wso wso
---@nodiscard
function vws.create(url, event_handlers, ssl_settings, standalone, options) end

---Starts connecting and returns at once; DNS, TCP, TLS and the handshake progress in `loop()`.
---@param wso verawebsockets.Wso
function vws.connect(wso) end

---Services the objects and delivers events on the calling thread. Standalone objects: until all
---are closed (sleeping in poll). Non-standalone: what is ready, returning within a bound.
function vws.loop() end

---libwebsockets log mask (ERR 1, WARN 2, NOTICE 4, INFO 8, DEBUG 16, PARSER 32, HEADER 64,
---EXT 128, CLIENT 256, LATENCY 512, USER 1024), or `"all"` (2047) / `"none"` (0). Logs go to
---`luup.log` when it exists, else stderr.
---@param levels integer|"all"|"none"
function vws.set_log_level(levels) end

---Sends `data` as a text message, or binary when `is_binary` is true. Returns `false, err`
---(`"not connected"`, `"closing"`, `"send error: …"`) when it cannot.
---@param wso verawebsockets.Wso
---@param data string|number
---@param is_binary? boolean
---@return boolean ok
---@return string? err
function vws.send(wso, data, is_binary) end

---Closes the connection (event 4 follows).
---@param wso verawebsockets.Wso
function vws.close(wso) end

return luws
