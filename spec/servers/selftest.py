#!/usr/bin/env python3
"""Self-test for the luws test peers (bad_server.py, echo_server.py, node_echo.js).

Starts the servers as subprocesses and checks every behaviour quickly with
a raw-socket client (stdlib) and the `websockets` client (compression on for the
permessage-deflate checks, so a failing deflate spec can be told from a broken peer).
node_echo.js needs Node and `ws` (tools/install-deps.sh: target/node).
Run from anywhere:  python3 spec/servers/selftest.py [-v] [-k NAME]
Exit status 0 when everything passed.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
NODE_PATH = os.environ.get("LUWS_NODE_PATH") or os.path.join(HERE, "..", "..", "target", "node", "node_modules")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERBOSE = False


# ------------------------------------------------------------------ helpers


def peer_cmd(script, *args):
    """The command that runs a peer: Python's, or Node for a .js one."""
    if script.endswith(".js"):
        return ["node", os.path.join(HERE, script), *args]
    return [PY, os.path.join(HERE, script), *args]


class Server:
    def __init__(self, script, *args):
        self.proc = subprocess.Popen(peer_cmd(script, *args), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     env=dict(os.environ, NODE_PATH=NODE_PATH))
        r, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline().decode() if r else ""
        parts = line.split()
        if len(parts) != 4 or parts[0] != "PORT" or parts[2] != "PID":
            self.proc.kill()
            raise RuntimeError("bad startup line %r: %r" % (line, self.proc.stdout.read()))
        self.port, self.pid = int(parts[1]), int(parts[3])
        assert self.pid == self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def uid():
    return uuid.uuid4().hex[:12]


def http_get(port, target, timeout=35):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (target, port)).encode())
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode(), body.decode()


def log(port, ident, wait="", timeout=5):
    _, body = http_get(port, "/log?id=%s&wait=%s&timeout=%s" % (ident, wait, timeout))
    return body.splitlines()


def count(port, wait=None, timeout=5):
    q = "/count" if wait is None else "/count?wait=%d&timeout=%s" % (wait, timeout)
    return int(http_get(port, q)[1])


def mask(data, key):
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def cframe(op, payload=b"", fin=True, masked=True):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    mb = 0x80 if masked else 0
    if n < 126:
        h = struct.pack("!BB", b0, mb | n)
    elif n < 65536:
        h = struct.pack("!BBH", b0, mb | 126, n)
    else:
        h = struct.pack("!BBQ", b0, mb | 127, n)
    if masked:
        key = os.urandom(4)
        return h + key + mask(payload, key)
    return h + payload


class Raw:
    """Minimal raw WebSocket client."""

    def __init__(self, port, path, tls=None, extra="", timeout=5, handshake=True):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            s = tls.wrap_socket(s, server_hostname="localhost")
        self.s = s
        self.buf = b""
        self.key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n%s\r\n") % (path, port, self.key, extra)
        self.s.sendall(req.encode())
        self.status = self.head = None
        if handshake:
            self.read_head()

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode()
        self.status = self.head.split("\r\n")[0]
        return self.head

    def header(self, name):
        for line in self.head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def expect_accept(self):
        assert self.status.startswith("HTTP/1.1 101"), self.head
        want = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
        assert self.header("Sec-WebSocket-Accept") == want, self.head

    def need(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("eof with %d buffered" % len(self.buf))
            self.buf += d

    def frame(self):
        self.need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            self.need(4)
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self.need(10)
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        key = None
        if b1 & 0x80:
            self.need(pos + 4)
            key, pos = self.buf[pos:pos + 4], pos + 4
        self.need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        if key:
            payload = mask(payload, key)
        return dict(fin=bool(b0 & 0x80), rsv=(b0 >> 4) & 7, op=b0 & 15,
                    masked=key is not None, payload=payload, n=n)

    def send(self, op, payload=b"", **kw):
        self.s.sendall(cframe(op, payload, **kw))

    def close(self, code=1000, reason=b""):
        self.send(8, struct.pack("!H", code) + reason)

    def expect_eof(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True

    def silent_for(self, secs):
        self.s.settimeout(secs)
        try:
            d = self.s.recv(65536)
            return False if d else "eof"
        except socket.timeout:
            return True
        finally:
            self.s.settimeout(5)

    def shut(self):
        try:
            self.s.close()
        except OSError:
            pass


def code_of(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


# ------------------------------------------------------------------ bad server tests

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def echo_basic(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/echo?id=" + i)
    c.expect_accept()
    c.send(1, "hello")
    f = c.frame()
    assert f["op"] == 1 and f["payload"] == b"hello" and not f["masked"], f
    c.send(2, b"\x00\x01\x02")
    f = c.frame()
    assert f["op"] == 2 and f["payload"] == b"\x00\x01\x02", f
    c.send(1, "frag-", fin=False)
    c.send(9, "mid")
    c.send(0, "ment", fin=False)
    c.send(0, "ed")
    f = c.frame()
    assert f["op"] == 10 and f["payload"] == b"mid", f
    f = c.frame()
    assert f["op"] == 1 and f["payload"] == b"frag-mented", f
    c.send(1, "")
    assert c.frame()["payload"] == b""
    c.send(2, b"x" * 70000)
    assert c.frame()["n"] == 70000
    c.close(1000, b"done")
    f = c.frame()
    assert f["op"] == 8 and code_of(f["payload"]) == 1000, f
    assert c.expect_eof()
    got = log(p, i, "close")
    assert got == ["open", "text 5 hello", "binary 3", "ping mid", "text 11 frag-mented",
                   "text 0", "binary 70000", "close 1000 done"], got


@test
def echo_close_nocode_and_unmasked(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/echo?id=" + i)
    c.send(8, b"")
    f = c.frame()
    assert f["op"] == 8 and f["payload"] == b"", f
    assert log(p, i, "close") == ["open", "close none"]
    i = uid()
    c = Raw(p, "/?id=" + i)
    c.send(1, "x", masked=False)
    f = c.frame()
    assert f["op"] == 8 and code_of(f["payload"]) == 1002, f
    assert log(p, i, "unmasked") == ["open", "unmasked"]
    # client close after a pong
    i = uid()
    c = Raw(p, "/echo?id=" + i)
    c.send(10, "unsolicited")
    c.close(4321)
    assert code_of(c.frame()["payload"]) == 4321
    assert log(p, i, "close") == ["open", "pong unsolicited", "close 4321"]


@test
def echo_protocol(ctx):
    c = Raw(ctx.bad.port, "/echo?protocol=chat", extra="Sec-WebSocket-Protocol: chat\r\n")
    c.expect_accept()
    assert c.header("Sec-WebSocket-Protocol") == "chat"
    c.shut()


@test
def headers(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/headers?id=" + i, extra="X-Luws-Test: yes\r\n")
    c.expect_accept()
    f = c.frame()
    lines = f["payload"].decode().split("\n")
    assert lines[0] == "GET /headers?id=%s HTTP/1.1" % i, lines
    assert "Host: 127.0.0.1:%d" % p in lines and "X-Luws-Test: yes" in lines, lines
    assert "Sec-WebSocket-Key: " + c.key in lines, lines
    c.send(1, "after")
    assert c.frame()["payload"] == b"after"
    c.shut()
    assert log(p, i, "eof") == ["open", "text 5 after", "eof"]


@test
def hang(ctx):
    p, i = ctx.bad.port, uid()
    for path in ("/hang", "/hang-accept"):
        c = Raw(p, path + "?id=" + i, handshake=False)
        assert c.silent_for(0.7) is True, path
        c.shut()
        assert log(p, i, "eof") == ["eof"], (path, log(p, i))
        i = uid()


@test
def status(ctx):
    c = Raw(ctx.bad.port, "/status?code=404&reason=Not%20Found")
    assert c.head == "HTTP/1.1 404 Not Found\r\nContent-Length: 0", c.head
    assert c.expect_eof()
    c = Raw(ctx.bad.port, "/status?code=503&reason=Service%20Unavailable")
    assert c.status == "HTTP/1.1 503 Service Unavailable"
    c = Raw(ctx.bad.port, "/status?code=302&reason=Found&location=ws://127.0.0.1:1/x")
    assert c.header("Location") == "ws://127.0.0.1:1/x"
    c = Raw(ctx.bad.port, "/nonexistent")
    assert c.status == "HTTP/1.1 404 Not Found"


@test
def bad_handshakes(ctx):
    p = ctx.bad.port
    c = Raw(p, "/badaccept")
    assert c.status.startswith("HTTP/1.1 101") and c.header("Sec-WebSocket-Accept")
    try:
        c.expect_accept()
        raise AssertionError("accept should be wrong")
    except AssertionError as e:
        assert "should" not in str(e)
    c.shut()
    c = Raw(p, "/noaccept")
    assert c.status.startswith("HTTP/1.1 101") and c.header("Sec-WebSocket-Accept") is None
    assert c.header("Upgrade") == "websocket"
    c = Raw(p, "/noupgrade")
    assert c.header("Upgrade") is None and c.header("Sec-WebSocket-Accept")
    c = Raw(p, "/notws")
    assert c.header("Upgrade") == "h2c"
    c = Raw(p, "/garbage")
    assert c.head == "hello" and c.expect_eof()
    c = Raw(p, "/eof")
    assert c.head == "" and c.expect_eof()


@test
def masked(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/masked?id=" + i)
    f = c.frame()
    assert f["masked"] and f["payload"] == b"hi" and f["op"] == 1, f
    c.close(1002)
    assert code_of(c.frame()["payload"]) == 1002
    assert log(p, i, "close") == ["open", "close 1002"]


@test
def reset(ctx):
    c = Raw(ctx.bad.port, "/reset")
    c.expect_accept()
    got = c.buf
    try:
        while True:
            d = c.s.recv(65536)
            if not d:
                raise AssertionError("got FIN instead of RST")
            got += d
    except ConnectionResetError:
        pass
    assert got[0] == 0x81 and 2 < len(got) < 2 + 45, got


@test
def huge(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/huge?len=100000000&id=" + i)
    c.need(10)
    assert c.buf[0] == 0x82 and c.buf[1] == 127, c.buf[:10]
    assert struct.unpack("!Q", c.buf[2:10])[0] == 100000000
    got = len(c.buf) - 10
    while got < 1000000:
        got += len(c.s.recv(65536))
    c.close(1009)
    assert log(p, i, "close") == ["open", "close 1009"]
    assert c.expect_eof()
    c = Raw(p, "/huge?len=300")
    f = c.frame()
    assert f["n"] == 300 and f["payload"] == b"\0" * 300 and c.buf[1:2] != b"\x7f"
    c = Raw(p, "/huge?len=70000")
    c.need(2)
    assert c.buf[1] == 127
    assert c.frame()["n"] == 70000


@test
def fragmented(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/fragmented?id=" + i)
    fs = [c.frame() for _ in range(4)]
    assert [(f["op"], f["fin"], f["payload"]) for f in fs] == [
        (1, False, b"Hello, "), (9, True, b"ping-in-the-middle"),
        (0, False, b"fragmented "), (0, True, b"world")], fs
    c.send(10, "ping-in-the-middle")
    c.send(1, "ok")
    assert c.frame()["payload"] == b"ok"
    assert log(p, i, "text") == ["open", "pong ping-in-the-middle", "text 2 ok"]


@test
def close(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/close?code=4000&reason=bye&id=" + i)
    f = c.frame()
    assert f["op"] == 8 and f["payload"] == struct.pack("!H", 4000) + b"bye", f
    c.close(4000)
    assert c.expect_eof()
    assert log(p, i, "close") == ["open", "close 4000"]
    i = uid()
    c = Raw(p, "/close?id=" + i)
    assert c.frame()["payload"] == b""
    c.send(8)
    assert c.expect_eof()
    assert log(p, i, "close") == ["open", "close none"]


@test
def silence(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/silence?id=" + i)
    c.expect_accept()
    c.send(9, "keepalive")
    assert c.silent_for(0.7) is True
    assert log(p, i, "ping") == ["open", "ping keepalive"]
    c.close(1000)
    assert c.expect_eof()
    assert log(p, i, "close")[-1] == "close 1000"
    assert c.buf == b""


@test
def trickle(ctx):
    c = Raw(ctx.bad.port, "/trickle?msg=hi")
    t0 = time.monotonic()
    c.s.settimeout(3)
    first = c.buf or c.s.recv(10)  # the first byte may come with the 101
    assert first == b"\x81", first
    c.buf = first
    f = c.frame()
    dt = time.monotonic() - t0
    assert f["payload"] == b"hi" and dt > 2.5, (f, dt)


@test
def flood(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/flood?size=1000&count=5&id=" + i)
    for _ in range(5):
        f = c.frame()
        assert f["op"] == 2 and f["n"] == 1000
    c.send(1, "still-echo")
    assert c.frame()["payload"] == b"still-echo"
    c.shut()
    i = uid()
    c = Raw(p, "/flood?size=100000&id=" + i)
    for _ in range(100):
        assert c.frame()["n"] == 100000
    c.close(1000)
    while True:
        f = c.frame()
        if f["op"] == 8:
            break
    assert code_of(f["payload"]) == 1000
    assert c.expect_eof()
    assert log(p, i, "close") == ["open", "close 1000"]


@test
def protocol_violations(ctx):
    p = ctx.bad.port
    cases = {
        "/badutf8": [(1, True, 0, b"\xff\xfe")],
        "/badutf8-frag": [(1, False, 0, b"hello \xce"), (0, True, 0, b"A world")],
        "/rsv": [(1, True, 4, b"rsv")],
        "/badopcode": [(3, True, 0, b"x")],
        "/badclose": [(8, True, 0, struct.pack("!H", 999))],
        "/bigping": [(9, True, 0, b"p" * 126)],
    }
    for path, want in cases.items():
        i = uid()
        c = Raw(p, path + "?id=" + i)
        got = [c.frame() for _ in want]
        assert [(f["op"], f["fin"], f["rsv"], f["payload"]) for f in got] == want, (path, got)
        code = 1007 if "utf8" in path else 1002
        c.close(code)
        if path != "/badclose":
            assert code_of(c.frame()["payload"]) == code
        assert c.expect_eof()
        assert log(p, i, "close") == ["open", "close %d" % code], (path, log(p, i))


@test
def push(ctx):
    p = ctx.bad.port
    i = uid()
    c = Raw(p, "/push?count=200&size=1000&then=fin&id=" + i)
    for _ in range(200):
        f = c.frame()
        assert f["op"] == 1 and f["payload"][:28] == b"abcdefghijklmnopqrstuvwxyzab"
    try:
        c.frame()
        raise AssertionError("expected eof")
    except EOFError:
        pass
    c.shut()
    i = uid()
    c = Raw(p, "/push?count=3&size=5&opcode=2&then=close&id=" + i)
    fs = [c.frame() for _ in range(4)]
    assert [f["op"] for f in fs] == [2, 2, 2, 8] and fs[0]["payload"] == b"\0\1\2\3\4"
    assert code_of(fs[3]["payload"]) == 1000
    c.close(1000)
    assert c.expect_eof()
    assert log(p, i, "close") == ["open", "close 1000"]
    c = Raw(p, "/push?count=2&size=3&then=none")
    assert [c.frame()["payload"] for _ in range(2)] == [b"abc", b"abc"]
    c.send(1, "x")
    assert c.frame()["payload"] == b"x"
    c.shut()


@test
def pingpong(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/pingpong?payload=abc&id=" + i)
    f = c.frame()
    assert f["op"] == 9 and f["payload"] == b"abc"
    c.send(10, "abc")
    assert log(p, i, "pong") == ["open", "pong abc"]
    c.send(1, "e")
    assert c.frame()["payload"] == b"e"


@test
def slowread_and_count(ctx):
    p, i = ctx.bad.port, uid()
    assert count(p, 0) == 0, count(p)
    c = Raw(p, "/slowread?id=" + i)
    c.expect_accept()
    c.s.setblocking(False)
    sent = 0
    t0 = time.monotonic()
    blob = cframe(2, b"z" * 65536)
    while time.monotonic() - t0 < 10:
        try:
            sent += c.s.send(blob)
        except BlockingIOError:
            break
    assert time.monotonic() - t0 < 10, "sends never blocked"
    conns = [Raw(p, "/echo") for _ in range(3)]
    assert count(p, 4) == 4
    for x in conns:
        x.shut()
    # our FIN would queue behind the unsent data: abort instead
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.shut()
    # with pause=1 the server starts reading (echo) after one second
    c = Raw(p, "/slowread?pause=1")
    c.send(1, "late")
    assert c.silent_for(0.5) is True
    c.s.settimeout(3)
    assert c.frame()["payload"] == b"late"
    c.shut()
    assert count(p, 0) == 0
    assert log(p, i, "eof")[-1] in ("eof", "reset")


@test
def pingflood(ctx):
    p, i = ctx.bad.port, uid()
    c = Raw(p, "/pingflood?bytes=10000&then=close&hold=0.3&id=" + i)
    fs = [c.frame() for _ in range(79)]  # ceil(10000 / 127) pings of 125 bytes
    assert all(f["op"] == 9 and f["payload"] == b"p" * 125 and not f["masked"] for f in fs)
    f = c.frame()
    assert f["op"] == 8 and code_of(f["payload"]) == 1000, f
    c.send(10, b"p" * 125)
    c.close(1000)
    assert c.expect_eof()  # after the hold the server drains, sees our Close and closes
    c.shut()
    got = [l for l in log(p, i, "eof") if not l.startswith("rx-quiet")]
    assert got == ["open", "sent 10033", "sent-close", "close 1000", "drained 139",
                   "pongs 1", "eof"], got
    # then=hold and size: an rx-quiet line tells when our output stopped arriving
    i = uid()
    c = Raw(p, "/pingflood?bytes=100&size=0&then=hold&hold=1&id=" + i)
    assert [c.frame()["n"] for _ in range(50)] == [0] * 50
    t_sent = time.time()
    c.send(2, b"x" * 200)
    got = log(p, i, "rx-quiet")
    quiet = [l.split() for l in got if l.startswith("rx-quiet")]
    assert len(quiet) == 1 and quiet[0][1] == "208", got
    assert abs(float(quiet[0][2]) - t_sent) < 0.2, (quiet, t_sent)
    assert c.silent_for(0.3) is True
    c.shut()
    assert log(p, i, "eof")[-3:] == ["drained 208", "pongs 0", "eof"], log(p, i)
    # a client that reads nothing: the flood stalls (bounded), our reset ends the drain
    i = uid()
    c = Raw(p, "/pingflood?bytes=50000000&stall=0.3&hold=0&id=" + i)
    got = log(p, i, "stalled", 10)
    assert got[-1] == "stalled" and 0 < int(got[-2].split()[1]) < 50000000, got
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.shut()
    assert log(p, i, "reset")[-1] == "reset", log(p, i)
    assert count(p, 0) == 0


@test
def stallclose(ctx):
    p = ctx.bad.port
    want = {
        "close": (8, False, struct.pack("!H", 4001)),
        "masked": (1, True, b"hi"),
        "badutf8": (1, False, b"\xff\xfe"),
    }
    for then, (op, masked, payload) in want.items():
        i = uid()
        c = Raw(p, "/stallclose?after=0.4&then=%s&code=4001&hold=0.3&id=%s" % (then, i))
        t0 = time.monotonic()
        c.send(2, b"q" * 1000)  # queued unread on the server: 2 + 2 + 4 + 1000 bytes
        f = c.frame()
        assert 0.3 < time.monotonic() - t0 < 2
        assert (f["op"], f["masked"], f["payload"]) == (op, masked, payload), (then, f)
        t_frame = time.time()
        c.close(1002)
        assert c.expect_eof()
        c.shut()
        got = [l for l in log(p, i, "eof") if not l.startswith("rx-quiet")]
        sent = got[1].split()
        assert sent[:3] == ["sent", then, "1008"] and abs(float(sent[3]) - t_frame) < 0.2, got
        assert got[2:] == ["close 1002", "drained 1016", "pongs 0", "eof"], (then, got)
    # a client that goes before `after`
    i = uid()
    c = Raw(p, "/stallclose?after=5&id=" + i)
    c.shut()
    assert log(p, i, "eof") == ["open", "eof"], log(p, i)


@test
def log_endpoint(ctx):
    p = ctx.bad.port
    t0 = time.monotonic()
    head, body = http_get(p, "/log?id=nobody&wait=open&timeout=0.5")
    assert "200 OK" in head and "X-Timed-Out: 1" in head and body == "", (head, body)
    assert 0.4 < time.monotonic() - t0 < 3
    i = uid()
    result = {}
    th = threading.Thread(target=lambda: result.setdefault("l", log(p, i, "text", 10)))
    th.start()
    time.sleep(0.3)
    c = Raw(p, "/echo?id=" + i)
    c.send(1, "line\nbreak")
    c.frame()
    th.join(12)
    assert result["l"] == ["open", "text 10 line\\nbreak"], result
    head, body = http_get(p, "/log?id=" + i)
    assert "Content-Length: %d" % len(body) in head
    assert http_get(p, "/nope")[0].startswith("HTTP/1.1 404")


@test
def tls_bad(ctx):
    s = ctx.bad_tls
    i = uid()
    c = Raw(s.port, "/echo?id=" + i, tls=ctx.client_ctx)
    c.expect_accept()
    c.send(1, "secure")
    assert c.frame()["payload"] == b"secure"
    c.close(1000)
    assert code_of(c.frame()["payload"]) == 1000
    assert log(s.port, i, "close") == ["open", "sni localhost", "text 6 secure", "close 1000"]
    # a plain upgrade on the TLS port is dropped
    c = Raw(s.port, "/echo", handshake=False)
    assert c.read_head() == ""
    # CA-signed leaf, verified against the CA, with optional client certs
    s = ctx.bad_ca
    for cert in (True, False):
        i = uid()
        cctx = ssl.create_default_context(cafile=ctx.files["ca"])
        if cert:
            cctx.load_cert_chain(ctx.files["client"], ctx.files["client_key"])
        c = Raw(s.port, "/echo?id=" + i, tls=cctx)
        c.expect_accept()
        c.close(1000)
        c.frame()
        want = "client-cert luws-client" if cert else "client-cert none"
        assert log(s.port, i, "close") == ["open", "sni localhost", want, "close 1000"], log(s.port, i)
    # the send/receive pump over TLS
    i = uid()
    c = Raw(ctx.bad_tls.port, "/huge?len=50000000&id=" + i, tls=ctx.client_ctx)
    c.need(10)
    got = len(c.buf)
    while got < 2000000:
        got += len(c.s.recv(65536))
    c.close(1009)
    assert log(ctx.bad_tls.port, i, "close") == ["open", "sni localhost", "close 1009"]
    c.shut()
    i = uid()
    c = Raw(ctx.bad_tls.port, "/flood?size=70000&id=" + i, tls=ctx.client_ctx)
    for _ in range(50):
        assert c.frame()["n"] == 70000
    c.send(9, "p")
    c.close(1001)
    ops = set()
    while True:
        f = c.frame()
        ops.add(f["op"])
        if f["op"] == 8:
            break
    assert code_of(f["payload"]) == 1001 and ops <= {2, 8, 10}, ops
    assert log(ctx.bad_tls.port, i, "close") == ["open", "sni localhost", "ping p", "close 1001"]
    # close_notify on graceful close
    c = Raw(ctx.bad_tls.port, "/push?count=2&size=3&then=fin", tls=ctx.client_ctx)
    c.frame(), c.frame()
    assert c.s.recv(10) == b""


@test
def tls_stall(ctx):
    s = ctx.bad_stall
    assert count(s.port, 0) == 0
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=1)
    # send a real ClientHello by hand so the socket stays ours
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.client_ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    raw.sendall(out.read())
    try:
        got = raw.recv(100)
        raise AssertionError("server answered the ClientHello: %r" % got)
    except (socket.timeout, TimeoutError):
        pass
    assert count(s.port) == 1
    raw.close()
    assert count(s.port, 0) == 0


# ------------------------------------------------------------------ echo server tests


@test
def echo_server(ctx):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def run():
        for port, scheme, sslctx in ((ctx.echo.port, "ws", None),
                                     (ctx.echo_tls.port, "wss", ctx.client_ctx)):
            host = "localhost" if sslctx else "127.0.0.1"
            async with connect("%s://%s:%d/" % (scheme, host, port), ssl=sslctx,
                               max_size=64 << 20, compression=None) as ws:
                await ws.send("text ✓")
                got = await ws.recv()
                assert got == "text ✓", got
                await ws.send(b"\x00\xff")
                got = await ws.recv()
                assert got == b"\x00\xff", got
                big = os.urandom(16 << 20)
                await ws.send(big)
                assert await ws.recv() == big
            async with connect("%s://%s:%d/close" % (scheme, host, port), ssl=sslctx) as ws:
                try:
                    await ws.recv()
                    raise AssertionError("expected close")
                except ConnectionClosed as e:
                    assert e.rcvd.code == 4001 and e.rcvd.reason == "server-close", e
        async with connect("ws://127.0.0.1:%d/" % ctx.echo.port,
                           subprotocols=["x", "superchat"]) as ws:
            assert ws.subprotocol == "superchat"

    asyncio.run(run())


# ------------------------------------------------------------------ permessage-deflate


def wire_report(line):
    """A report=1 answer as a dict of strings."""
    return dict(kv.split("=", 1) for kv in line.split())


@test
def deflate_echo_peers(ctx):
    import json
    from websockets.sync.client import connect
    doc = json.dumps([{"id": i, "room": "kitchen", "value": i * 0.5} for i in range(40000)])
    far = os.urandom(2500).hex() * 2  # a repeat 5000 bytes back: beyond 1 KiB windows
    for name, port in (("node", ctx.node.port), ("websockets", ctx.echo.port)):
        base = "ws://127.0.0.1:%d" % port
        with connect(base + "/", max_size=1 << 26) as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ext.startswith("permessage-deflate"), (name, ext)
            for m in ("hello", doc, bytes(range(256)) * 100, "", far):
                ws.send(m)
                assert ws.recv() == m, (name, len(m))
        with connect(base + "/?report=1", max_size=1 << 26) as ws:
            ws.send(doc)
            r = wire_report(ws.recv())
            assert r["rsv1"] == "1" and int(r["length"]) == len(doc), (name, r)
            assert int(r["wire"]) < len(doc) // 3, (name, r)
            ws.send(iter(["a" * 1000, "b" * 1000]))
            r = wire_report(ws.recv())
            assert r["rsv1"][0] == "1" and set(r["rsv1"][1:]) == {"0"}, (name, r)
            assert int(r["frames"]) >= 2 and int(r["length"]) == 2000, (name, r)
        with connect(base + "/?report=1", compression=None) as ws:
            ws.send(doc)
            r = wire_report(ws.recv())
            assert r["rsv1"] == "0" and int(r["wire"]) == len(doc), (name, r)
        q = "server_no_context_takeover=1&server_max_window_bits=10&client_max_window_bits=10"
        with connect(base + "/?" + q) as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            for t in ("server_no_context_takeover", "server_max_window_bits=10",
                      "client_max_window_bits=10"):
                assert t in ext, (name, ext)
            ws.send(far)
            assert ws.recv() == far, name
        with connect(base + "/?deflate=0") as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None, name
        with connect(base + "/headers", compression=None) as ws:
            assert "sec-websocket-extensions" not in ws.recv().lower(), name
        with connect(base + "/headers") as ws:
            assert "sec-websocket-extensions: permessage-deflate" in ws.recv().lower(), name
    with connect("ws://127.0.0.1:%d/" % ctx.node.port) as ws:
        assert ws.response.headers["X-Luws-Peer"].startswith("ws/8."), ws.response.headers


@test
def deflate_bad_modes(ctx):
    from websockets.exceptions import ConnectionClosedError, NegotiationError
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    from websockets.sync.client import connect
    p = ctx.bad.port
    # websockets closes with 1002 where it cannot inflate (luws: 1007); the bomb is over max_size
    fails = (("deflate_corrupt", 1002), ("deflate_bomb?size=4194304", 1009), ("deflate_bomb", 1009),
             ("deflate_rsv1_continuation", 1002), ("deflate_rsv1_control", 1002),
             ("rsv1_unnegotiated", 1002))
    for mode, code in fails:
        i = uid()
        try:
            with connect("ws://127.0.0.1:%d/%s%sid=%s" % (p, mode, "&" if "?" in mode else "?", i),
                         max_size=1 << 20) as ws:
                ws.recv(timeout=5)
            raise AssertionError("%s: a message arrived" % mode)
        except ConnectionClosedError as e:
            assert e.sent is not None and e.sent.code == code, (mode, e)
        got = log(p, i, "close")
        assert got[0] == "offer permessage-deflate; client_max_window_bits", (mode, got)
        assert got[-1].startswith("close %d" % code), (mode, got)
    i = uid()
    with connect("ws://127.0.0.1:%d/deflate_ok_fragmented?id=%s" % (p, i)) as ws:
        text = "Hello, compressed and fragmented world! " * 8
        got = [ws.recv(timeout=5) for _ in range(3)]
        assert got == [text, "plain after compressed", text], got
    assert "pong ping-in-the-middle" in log(p, i, "pong"), log(p, i)
    # rsv1_unnegotiated answers without the extension even to an offer
    c = Raw(p, "/rsv1_unnegotiated", extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    c.expect_accept()
    assert c.header("Sec-WebSocket-Extensions") is None, c.head
    assert c.frame()["rsv"] == 4
    c.shut()
    for mode in ("ext_unknown_param", "ext_repeated_param", "ext_bad_value", "ext_twice",
                 "ext_unknown_extension", "ext_server_bits_over"):
        kw = {}
        if mode == "ext_server_bits_over":
            kw = dict(compression=None,
                      extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=10)])
        try:
            with connect("ws://127.0.0.1:%d/%s" % (p, mode), **kw):
                pass
            raise AssertionError("%s: accepted" % mode)
        except NegotiationError:
            pass
    c = Raw(p, "/ext?value=a%3Bb")  # any value, offered or not
    c.expect_accept()
    assert c.header("Sec-WebSocket-Extensions") == "a;b", c.head
    c.shut()


@test
def node_lifecycle(ctx):
    s = Server("node_echo.js")
    os.kill(s.pid, signal.SIGTERM)
    assert s.proc.wait(3) is not None
    # the reader of its stdout pipe goes, the parent stays
    s = Server("node_echo.js")
    s.proc.stdout.close()
    try:
        s.proc.wait(4)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        raise AssertionError("node_echo.js survived the end of its stdout pipe")


@test
def lifecycle(ctx):
    for script in ("bad_server.py", "echo_server.py", "node_echo.js"):
        # SIGTERM
        s = Server(script)
        os.kill(s.pid, signal.SIGTERM)
        assert s.proc.wait(3) is not None
        # parent death: start it from an intermediate python that exits
        code = ("import subprocess,sys;p=subprocess.Popen(%r,"
                "stdout=subprocess.PIPE);print(p.stdout.readline().decode().strip(),flush=True)"
                % peer_cmd(script))
        out = subprocess.run([PY, "-c", code], capture_output=True, timeout=20,
                             env=dict(os.environ, NODE_PATH=NODE_PATH)).stdout.decode()
        pid = int(out.split()[3])
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("%s survived its parent" % script)


# ------------------------------------------------------------------ main


def make_certs(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "self.key", "-out", "self.crt", "-days", "2",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=luws test CA")
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, cn in (("leaf", "localhost"), ("client", "luws-client")):
        run("req", "-new", *ec, "-keyout", name + ".key", "-out", name + ".csr",
            "-subj", "/CN=" + cn)
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", name + ".crt", "-extfile", name + ".ext")
    j = lambda n: os.path.join(d, n)
    return dict(cert=j("self.crt"), key=j("self.key"), ca=j("ca.crt"), leaf=j("leaf.crt"),
                leaf_key=j("leaf.key"), client=j("client.crt"), client_key=j("client.key"))


class Ctx:
    pass


def main():
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", action="store_true")
    ap.add_argument("-k", default="")
    a = ap.parse_args()
    VERBOSE = a.v
    ctx = Ctx()
    servers = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="luws-selftest-") as d:
        ctx.files = f = make_certs(d)
        ctx.client_ctx = ssl.create_default_context(cafile=f["cert"])

        def start(*args):
            s = Server(*args)
            servers.append(s)
            return s
        try:
            ctx.bad = start("bad_server.py")
            ctx.bad_tls = start("bad_server.py", "--tls", f["cert"], f["key"])
            ctx.bad_ca = start("bad_server.py", "--tls", f["leaf"], f["leaf_key"],
                               "--client-ca", f["ca"])
            ctx.bad_stall = start("bad_server.py", "--tls", f["cert"], f["key"], "--stall-tls")
            ctx.echo = start("echo_server.py")
            ctx.echo_tls = start("echo_server.py", "--tls", f["cert"], f["key"])
            ctx.node = start("node_echo.js")
            for t in TESTS:
                if a.k not in t.__name__:
                    continue
                t0 = time.monotonic()
                try:
                    t(ctx)
                    print("ok   %-32s %.2fs" % (t.__name__, time.monotonic() - t0), flush=True)
                except Exception:
                    failed += 1
                    print("FAIL %s" % t.__name__, flush=True)
                    traceback.print_exc()
            for s in servers:
                assert s.proc.poll() is None, "server died"
        finally:
            for s in servers:
                s.stop()
    print("%d failed" % failed if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
