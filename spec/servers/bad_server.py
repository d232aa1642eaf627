#!/usr/bin/env python3
"""luws test peer: a deliberately misbehaving WebSocket server.

Design criteria
  * Python 3.11 standard library only, so it can misbehave at the byte level
    (no WebSocket library between the tests and the wire).
  * Binds 127.0.0.1 port 0 and prints exactly "PORT <n> PID <pid>" once; after
    that stdout/stderr go to /dev/null (or to $LUWS_SERVER_LOG) so a pipe that
    nobody reads can never block it.
  * Never outlives the test run: exits on SIGTERM/SIGINT, when its parent
    process changes (checked every second), when nobody holds the read end
    of its stdout pipe any more (so pclose() in the parent never blocks for
    long), and if it cannot start in 15 s.
  * One thread per connection; every blocking wait is bounded (<= 30 s per
    wait, <= 60 s for the "hold the socket" behaviours).
  * The behaviour is chosen by the request path, parameters come from the
    query string; events are recorded per "id=<token>" and read back through
    a plain HTTP endpoint on the same port (GET /log, GET /count).
  * With --tls the same port also accepts plain-text log/count requests (the
    first byte decides: 0x16 = TLS ClientHello); a plain-text *upgrade*
    request on a TLS port is closed without an answer, like a real TLS server.

Usage: python3 bad_server.py [--tls CERT KEY] [--client-ca CA] [--stall-tls]
"""

import peer

peer.arm_startup_alarm()  # cancelled once the PORT line is out

import argparse
import base64
import fcntl
import hashlib
import os
import select
import socket
import ssl
import string
import struct
import termios
import threading
import time
import urllib.parse
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 64 * 1024
MAX_MESSAGE = 64 * 1024 * 1024 + 1024
WAIT = 30.0  # upper bound for any single blocking wait
HOLD = 60.0  # upper bound for "keep the socket open until the client goes"
CHUNK = 16 * 1024

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

# ---------------------------------------------------------------- event log

_log_cond = threading.Condition()
_logs = {}  # id -> [line, ...]
_open_lock = threading.Lock()
_open_count = 0


def _printable(data, limit=None):
    if limit is not None:
        data = data[:limit]
    s = data.decode("utf-8", "replace")
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def record(ident, *parts):
    if not ident:
        return
    line = " ".join(str(p) for p in parts if p != "")
    with _log_cond:
        _logs.setdefault(ident, []).append(line)
        _log_cond.notify_all()


def wait_log(ident, prefix, timeout):
    deadline = time.monotonic() + timeout
    with _log_cond:
        while True:
            lines = list(_logs.get(ident, ()))
            if not prefix or any(l.startswith(prefix) for l in lines):
                return lines, False
            left = deadline - time.monotonic()
            if left <= 0:
                return lines, True
            _log_cond.wait(min(left, 1.0))


def wait_count(target, timeout, me=0):
    deadline = time.monotonic() + timeout
    while True:
        with _open_lock:
            n = _open_count - me
        if target is None or n == target or time.monotonic() >= deadline:
            return n
        time.sleep(0.05)


# ---------------------------------------------------------------- framing


def make_frame(opcode, payload=b"", fin=True, rsv=0, mask=False, length=None):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = os.urandom(4)
        return head + key + xor_mask(payload, key)
    return head + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def xor_mask(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload = masked, payload


def parse_frame(buf):
    """Return (Frame, consumed) or (None, 0) when buf holds no whole frame."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack_from("!H", buf, 2)[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack_from("!Q", buf, 2)[0]
        pos = 10
    if n > MAX_MESSAGE:
        raise TooBig(n)
    masked = bool(b1 & 0x80)
    if masked:
        if len(buf) < pos + 4:
            return None, 0
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None, 0
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = xor_mask(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload), pos + n


class TooBig(Exception):
    pass


class PeerGone(Exception):
    """The client went away: kind is 'eof', 'reset' or 'timeout'."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


# ---------------------------------------------------------------- connection


class Conn:
    def __init__(self, sock, is_tls):
        self.sock = sock
        self.tls = is_tls
        self.buf = bytearray()
        self.id = ""
        self.query = {}
        # WebSocket session state
        self.frag_op = None
        self.frag = []
        self.outq = []
        self.close_sent = False
        self.close_received = False
        self.failed = False
        self.echo = True
        self.reply_ping = True
        self.reply_close = True

    # -- raw I/O
    def ev(self, *parts):
        record(self.id, *parts)

    def recv_some(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise PeerGone("timeout")
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            raise PeerGone("eof")
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            raise PeerGone("reset")
        if not data:
            raise PeerGone("eof")
        self.buf += data

    def readable_now(self):
        if self.tls and self.sock.pending():
            return True
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(r)

    def send(self, data):
        self.sock.settimeout(WAIT)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise PeerGone("timeout")
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            raise PeerGone("eof")
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            raise PeerGone("reset")

    def read_head(self):
        """Read up to the blank line that ends an HTTP request head."""
        deadline = time.monotonic() + WAIT
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                return None
            self.recv_some(deadline - time.monotonic())
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i])
        del self.buf[:i + 4]
        if len(head) > MAX_HEAD:
            return None
        return head

    def wait_gone(self, limit, consume=True):
        """Keep the socket until the client goes (or `limit` seconds)."""
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            if consume:
                try:
                    self.recv_some(min(left, WAIT))
                    self.buf.clear()
                except PeerGone as e:
                    if e.kind != "timeout":
                        return e.kind
            else:
                p = select.poll()
                p.register(self.sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
                try:
                    evs = p.poll(min(left, WAIT) * 1000)
                except OSError:
                    return "reset"
                if evs:
                    _, mask = evs[0]
                    return "reset" if mask & select.POLLERR else "eof"

    def finish(self, linger=2.0):
        """Graceful close: TLS close_notify, FIN, drain until EOF, close."""
        try:
            if self.tls:
                self.sock.settimeout(1.0)
                try:
                    raw = self.sock.unwrap()
                    self.sock = raw
                    self.tls = False
                except Exception:
                    pass
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        deadline = time.monotonic() + linger
        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                if not self.sock.recv(65536):
                    break
            except Exception:
                break

    def reset(self):
        """Abort the connection with a TCP RST (SO_LINGER 0, then close)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    # -- WebSocket frames
    def read_frame(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                f, used = parse_frame(self.buf)
            except TooBig:
                self.ev("error too-big")
                raise
            if f is not None:
                del self.buf[:used]
                return f
            self.recv_some(deadline - time.monotonic())

    def queue_close(self, code=None, reason=b""):
        if not self.close_sent:
            self.close_sent = True
            self.outq.append(make_frame(OP_CLOSE, close_payload(code, reason)))

    def flush(self):
        if self.outq:
            data = b"".join(self.outq)
            self.outq.clear()
            self.send(data)

    def fail(self, what, code=1002):
        self.ev("error", what)
        self.failed = True
        self.queue_close(code)

    def handle(self, f):
        """Process one client frame: record it, queue replies."""
        if not f.masked:
            self.ev("unmasked")
            self.failed = True
            self.queue_close(1002)
            return
        if f.rsv:
            return self.fail("rsv")
        op = f.opcode
        if op >= 8:
            if op not in (OP_CLOSE, OP_PING, OP_PONG):
                return self.fail("opcode-%d" % op)
            if not f.fin or len(f.payload) > 125:
                return self.fail("bad-control")
            if op == OP_PING:
                self.ev("ping", _printable(f.payload))
                if self.reply_ping and not self.close_sent:
                    self.outq.append(make_frame(OP_PONG, f.payload))
            elif op == OP_PONG:
                self.ev("pong", _printable(f.payload))
            else:
                code = None
                if len(f.payload) >= 2:
                    code = struct.unpack("!H", f.payload[:2])[0]
                self.ev("close", "none" if code is None else code, _printable(f.payload[2:]))
                self.close_received = True
                if self.reply_close:
                    self.queue_close(code)
            return
        if op == OP_CONT:
            if self.frag_op is None:
                return self.fail("bad-continuation")
            self.frag.append(f.payload)
            if f.fin:
                op, data = self.frag_op, b"".join(self.frag)
                self.frag_op, self.frag = None, []
                self.message(op, data)
        elif op in (OP_TEXT, OP_BINARY):
            if self.frag_op is not None:
                return self.fail("expected-continuation")
            if f.fin:
                self.message(op, f.payload)
            else:
                self.frag_op, self.frag = op, [f.payload]
        else:
            self.fail("opcode-%d" % op)

    def message(self, op, data):
        if op == OP_TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return self.fail("badutf8", 1007)
            self.ev("text", len(data), _printable(data, 40))
        else:
            self.ev("binary", len(data))
        if self.echo and not self.close_sent:
            self.outq.append(make_frame(op, data))

    def session(self, limit=None, idle=WAIT):
        """Read/handle/reply until a close, failure or the client going away."""
        deadline = None if limit is None else time.monotonic() + limit
        try:
            while True:
                if deadline is not None:
                    idle_now = min(idle, deadline - time.monotonic())
                    if idle_now <= 0:
                        self.ev("timeout")
                        break
                else:
                    idle_now = idle
                try:
                    f = self.read_frame(idle_now)
                except PeerGone as e:
                    if e.kind == "timeout" and deadline is not None and time.monotonic() < deadline:
                        continue
                    self.ev(e.kind)
                    return
                except TooBig:
                    self.queue_close(1009)
                    self.flush()
                    break
                self.handle(f)
                self.flush()
                if self.close_received or self.failed:
                    break
        except PeerGone as e:
            self.ev(e.kind)
            return
        self.finish()

    def send_pumping(self, data, stop_on_close=True, stall_limit=WAIT):
        """Send `data` while handling what the client sends meanwhile.

        Returns True when everything was sent, False when the client closed
        or failed (mid-`data` only if stop_on_close).  Raises PeerGone when
        the client went away or stopped reading for `stall_limit` seconds."""
        view = memoryview(data)
        pos = 0
        stalled_since = None
        while pos < len(view):
            while not (self.close_received or self.failed) and self.readable_now():
                try:
                    self.recv_some(1.0)
                except PeerGone as e:
                    if e.kind == "timeout":
                        break
                    raise
                while True:
                    f, used = parse_frame(self.buf)
                    if f is None:
                        break
                    del self.buf[:used]
                    self.handle(f)
            if stop_on_close and (self.close_received or self.failed):
                return False
            self.sock.settimeout(1.0)
            try:
                n = self.sock.send(view[pos:pos + CHUNK])
                pos += n
                stalled_since = None
            except socket.timeout:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since >= stall_limit:
                    raise PeerGone("timeout")
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                time.sleep(0.01)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                raise PeerGone("eof")
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                raise PeerGone("reset")
        return not (self.close_received or self.failed)


    # -- a peer that never reads (bounded output tests)
    def inq(self):
        """Bytes the client sent that we have not read (the kernel's receive queue)."""
        try:
            raw = fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
            return struct.unpack("i", raw)[0]
        except (OSError, ValueError):
            return -1

    def poll_unread(self, events, timeout):
        """poll(2) on the socket without reading it; returns the event mask (0 on timeout)."""
        p = select.poll()
        try:
            p.register(self.sock.fileno(), events | select.POLLERR | select.POLLHUP)
            evs = p.poll(max(timeout, 0) * 1000)
        except (OSError, ValueError):
            return select.POLLERR
        return evs[0][1] if evs else 0

    def send_unread(self, blocks, watch, stall_limit=WAIT, limit=HOLD):
        """Send every bytes object of `blocks` without ever reading, in non-blocking steps so
        that this thread cannot hang on a client that stops reading too.

        Returns (bytes_sent, ending): ending None when all went out, "reset" when the client
        went away, "stalled" when it took nothing for `stall_limit` seconds, "time-limit"
        when `limit` seconds passed in all."""
        sent = 0
        deadline = time.monotonic() + limit
        self.sock.settimeout(0)
        try:
            for block in blocks:
                view = memoryview(block)
                pos = 0
                last_progress = time.monotonic()
                while pos < len(view):
                    if time.monotonic() >= deadline:
                        return sent, "time-limit"
                    watch.sample()
                    try:
                        n = self.sock.send(view[pos:])
                    except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                            ssl.SSLWantReadError):
                        n = 0
                    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                        return sent, "reset"
                    if n:
                        pos += n
                        sent += n
                        last_progress = time.monotonic()
                        continue
                    if time.monotonic() - last_progress >= stall_limit:
                        return sent, "stalled"
                    mask = self.poll_unread(select.POLLOUT, 0.05)
                    if mask & select.POLLERR:
                        return sent, "reset"
            return sent, None
        finally:
            self.sock.settimeout(WAIT)

    def hold_unread(self, limit, watch):
        """Keep the socket for `limit` seconds without reading. Returns None, or "reset"/"eof"
        when the client's RST/FIN arrived first (a FIN queued behind unread data cannot)."""
        deadline = time.monotonic() + limit
        while True:
            watch.sample()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            mask = self.poll_unread(select.POLLRDHUP, min(left, 0.05))
            if mask & select.POLLERR:
                return "reset"
            if mask & (select.POLLRDHUP | select.POLLHUP):
                return "eof"

    def drain(self, limit):
        """Read and discard what the client sent until it goes (<= `limit` s); records
        "drained <bytes>", "pongs <n>" and "close <code>" for the frames in it. After the
        client's Close our FIN goes out (the closing handshake is complete)."""
        deadline = time.monotonic() + limit
        buf, pos = bytearray(self.buf), 0
        self.buf.clear()
        total, pongs, ending, closed = len(buf), 0, "timeout", False
        while True:
            while True:  # frame headers only; payloads are skipped, except a Close's
                if len(buf) - pos < 2:
                    break
                b0, b1 = buf[pos], buf[pos + 1]
                n, hl = b1 & 0x7F, 2
                if n == 126:
                    if len(buf) - pos < 4:
                        break
                    n, hl = struct.unpack_from("!H", buf, pos + 2)[0], 4
                elif n == 127:
                    if len(buf) - pos < 10:
                        break
                    n, hl = struct.unpack_from("!Q", buf, pos + 2)[0], 10
                key = None
                if b1 & 0x80:
                    if len(buf) - pos < hl + 4:
                        break
                    key = bytes(buf[pos + hl:pos + hl + 4])
                    hl += 4
                if len(buf) - pos < hl + n:
                    break
                op = b0 & 0x0F
                if op == OP_PONG:
                    pongs += 1
                elif op == OP_CLOSE and not closed:
                    body = bytes(buf[pos + hl:pos + hl + n])
                    if key:
                        body = xor_mask(body, key)
                    code = struct.unpack("!H", body[:2])[0] if len(body) >= 2 else "none"
                    self.ev("close", code, _printable(body[2:]))
                    closed = True
                    try:
                        self.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                pos += hl + n
            if pos > (1 << 20):
                del buf[:pos]
                pos = 0
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(min(left, 1.0))
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                ending = "eof"
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                ending = "reset"
                break
            if not data:
                ending = "eof"
                break
            total += len(data)
            buf += data
        self.ev("drained", total)
        self.ev("pongs", pongs)
        self.ev(ending)


# ---------------------------------------------------------------- handshake


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def http_response(c, status, reason, headers=(), body=b""):
    lines = ["HTTP/1.1 %d %s" % (status, reason)]
    lines += ["%s: %s" % h for h in headers]
    lines.append("Content-Length: %d" % len(body))
    c.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def switch(c, hdrs, accept="good", upgrade="websocket", extra=()):
    key = hdrs.get("sec-websocket-key", "")
    lines = ["HTTP/1.1 101 Switching Protocols"]
    if upgrade is not None:
        lines.append("Upgrade: " + upgrade)
    lines.append("Connection: Upgrade")
    if accept == "good":
        lines.append("Sec-WebSocket-Accept: " + accept_key(key))
    elif accept == "bad":
        lines.append("Sec-WebSocket-Accept: " + accept_key(key + "x"))
    proto = c.query.get("protocol")
    if proto is not None:
        lines.append("Sec-WebSocket-Protocol: " + proto)
    lines += list(extra)
    c.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    if accept == "good" and upgrade == "websocket":
        c.ev("open")
        if c.tls:
            c.ev("sni", getattr(c, "sni", None) or "none")
        if c.tls and ARGS.client_ca:
            try:
                cert = c.sock.getpeercert()
            except Exception:
                cert = None
            cn = "none"
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
            c.ev("client-cert", cn)


def qint(c, name, default):
    try:
        return int(c.query.get(name, default))
    except (TypeError, ValueError):
        return default


def qfloat(c, name, default, limit=HOLD):
    try:
        v = float(c.query.get(name, default))
    except (TypeError, ValueError):
        v = default
    return min(max(v, 0.0), limit)


def alphabet(n):
    s = string.ascii_lowercase
    return (s * (n // 26 + 1))[:n].encode()


# ---------------------------------------------------------------- behaviours


def b_echo(c, hdrs, head):
    switch(c, hdrs)
    c.session()


def b_headers(c, hdrs, head):
    switch(c, hdrs)
    text = "\n".join(head.decode("utf-8", "replace").split("\r\n"))
    c.send(make_frame(OP_TEXT, text))
    c.session()


def b_hang(c, hdrs, head):
    kind = c.wait_gone(HOLD)
    if kind != "timeout":
        c.ev(kind)


def b_status(c, hdrs, head):
    code = qint(c, "code", 404)
    reason = c.query.get("reason", "Not Found")
    extra = []
    if "location" in c.query:
        # "@self": back to this very request target (a redirect loop).
        loc = c.query["location"]
        if loc == "@self":
            loc = head.split(b" ", 2)[1].decode("latin-1")
        extra.append(("Location", loc))
    lines = ["HTTP/1.1 %d %s" % (code, reason)] + ["%s: %s" % h for h in extra]
    lines.append("Content-Length: 0")
    c.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    c.finish()


def _bad_switch(**kw):
    def run(c, hdrs, head):
        switch(c, hdrs, **kw)
        kind = c.wait_gone(WAIT)
        if kind != "timeout":
            c.ev(kind)
    return run


def b_raw(c, hdrs, head):
    """/raw?hex=...: a correct 101, then exactly these bytes, then the echo loop (so the
    client's Close is recorded)."""
    switch(c, hdrs)
    try:
        data = bytes.fromhex(c.query.get("hex", ""))
    except ValueError:
        data = b""
    c.send(data)
    c.session()


def b_rawhs(c, hdrs, head):
    """/rawhs?text=...&pad=N: this handshake response verbatim ({ACCEPT} becomes the right key,
    {PAD} N bytes of filler),
    then the socket is held until the client goes."""
    text = c.query.get("text", "").replace("{ACCEPT}", accept_key(hdrs.get("sec-websocket-key", "")))
    text = text.replace("{PAD}", "a" * qint(c, "pad", 0))
    c.send(text.encode("latin-1", "replace"))
    kind = c.wait_gone(WAIT)
    if kind != "timeout":
        c.ev(kind)


def b_garbage(c, hdrs, head):
    c.send(b"hello\r\n\r\n")
    c.finish()


def b_eof(c, hdrs, head):
    c.finish()


def _send_then_session(frames):
    def run(c, hdrs, head):
        switch(c, hdrs)
        c.send(frames() if callable(frames) else frames)
        c.session()
    return run


def b_reset(c, hdrs, head):
    switch(c, hdrs)
    payload = b"this text frame is cut in half by a TCP reset"
    frame = make_frame(OP_TEXT, payload)
    c.send(frame[:2 + len(payload) // 2])
    time.sleep(0.3)
    c.reset()


def b_huge(c, hdrs, head):
    switch(c, hdrs)
    n = qint(c, "len", 1 << 30)
    c.echo = False
    c.send(make_frame(OP_BINARY, b"", length=n))
    piece = b"\x00" * CHUNK
    sent = 0
    try:
        while sent < n:
            part = piece if n - sent >= CHUNK else piece[: n - sent]
            if not c.send_pumping(part):
                break
            sent += len(part)
        if sent >= n:
            c.echo = True
            c.session()
            return
        # The client closed or failed mid-frame: a close frame can't be sent
        # in the middle of our frame, so just wait a bit for its close and go.
        if not c.close_received:
            try:
                deadline = time.monotonic() + 5
                while not c.close_received:
                    c.handle(c.read_frame(deadline - time.monotonic()))
            except (PeerGone, TooBig):
                pass
        c.outq.clear()
    except PeerGone as e:
        c.ev(e.kind)
        return
    c.finish()


def b_fragmented(c, hdrs, head):
    switch(c, hdrs)
    c.send(
        make_frame(OP_TEXT, "Hello, ", fin=False)
        + make_frame(OP_PING, "ping-in-the-middle")
        + make_frame(OP_CONT, "fragmented ", fin=False)
        + make_frame(OP_CONT, "world")
    )
    c.session()


def b_close(c, hdrs, head):
    switch(c, hdrs)
    code = c.query.get("code")
    code = int(code) if code not in (None, "") else None
    c.reply_close = False
    c.close_sent = True
    c.send(make_frame(OP_CLOSE, close_payload(code, c.query.get("reason", ""))))
    c.echo = False
    deadline = time.monotonic() + 5
    try:
        while not c.close_received:
            left = deadline - time.monotonic()
            if left <= 0:
                c.ev("timeout")
                break
            c.handle(c.read_frame(left))
            c.outq.clear()
    except PeerGone as e:
        c.ev(e.kind)
        if e.kind != "timeout":
            return
    except TooBig:
        pass
    c.finish()


def b_silence(c, hdrs, head):
    switch(c, hdrs)
    c.echo = False
    c.reply_ping = False
    c.reply_close = False
    deadline = time.monotonic() + HOLD
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                c.handle(c.read_frame(min(left, WAIT)))
            except PeerGone as e:
                if e.kind == "timeout":
                    continue
                c.ev(e.kind)
                return
            c.outq.clear()  # never send anything
            if c.close_received or c.failed:
                break
    except TooBig:
        pass
    c.finish()


def b_trickle(c, hdrs, head):
    switch(c, hdrs)
    frame = make_frame(OP_TEXT, c.query.get("msg", "hello"))
    try:
        for i in range(len(frame)):
            if i:
                t_end = time.monotonic() + 1.0
                while time.monotonic() < t_end:
                    try:
                        f = c.read_frame(t_end - time.monotonic())
                    except PeerGone as e:
                        if e.kind == "timeout":
                            break
                        raise
                    c.handle(f)
                    if c.close_received or c.failed:
                        c.outq.clear()
                        c.finish()
                        return
            c.send(frame[i:i + 1])
        c.flush()
    except PeerGone as e:
        c.ev(e.kind)
        return
    c.session()


def b_flood(c, hdrs, head):
    switch(c, hdrs)
    size = qint(c, "size", 1024)
    count = c.query.get("count")
    count = int(count) if count not in (None, "") else None
    frame = make_frame(OP_BINARY, b"\x5a" * size)
    c.echo = False
    sent = 0
    try:
        while count is None or sent < count:
            ok = c.send_pumping(frame, stop_on_close=False)
            sent += 1
            if not ok:
                break
            c.flush()
            if c.close_received or c.failed:
                break
        c.flush()
    except PeerGone as e:
        c.ev(e.kind)
        return
    if c.close_received or c.failed:
        c.finish()
    else:
        c.echo = True
        c.session()


def b_push(c, hdrs, head):
    switch(c, hdrs)
    count = qint(c, "count", 10)
    size = qint(c, "size", 16)
    op = qint(c, "opcode", 1)
    then = c.query.get("then", "fin")
    body = alphabet(size) if op == OP_TEXT else bytes(i % 256 for i in range(size))
    data = make_frame(op, body) * count
    if then == "close":
        data += make_frame(OP_CLOSE, close_payload(1000))
        c.close_sent = True
    c.send(data)
    if then == "none":
        c.session()
        return
    if then == "fin":
        c.finish(linger=5.0)  # (TLS close_notify,) FIN, drain <= 5 s
        return
    c.echo = False
    c.reply_close = False
    c.reply_ping = False
    deadline = time.monotonic() + 5
    try:
        while not c.close_received:
            left = deadline - time.monotonic()
            if left <= 0:
                c.ev("timeout")
                break
            c.handle(c.read_frame(left))
            c.outq.clear()
    except PeerGone as e:
        c.ev(e.kind)
        if e.kind != "timeout":
            return
    except TooBig:
        pass
    c.finish()


def b_pingpong(c, hdrs, head):
    switch(c, hdrs)
    c.send(make_frame(OP_PING, c.query.get("payload", "")))
    c.session()


def b_slowread(c, hdrs, head):
    try:
        pause = min(float(c.query.get("pause", HOLD)), HOLD)
    except ValueError:
        pause = HOLD
    switch(c, hdrs)
    kind = c.wait_gone(pause, consume=False)
    if kind != "timeout":
        c.ev(kind)
    elif pause < HOLD:
        c.session()  # start reading: plain echo from now on


class RxWatch:
    """Watches the receive queue of a peer that never reads. Whenever the client's output
    stops arriving (the queue has not grown for QUIET s after growing) it records, once per
    pause, "rx-quiet <queued bytes> <wall time of the last growth>": the moment the client's
    send side stalled, in the clock of LuaSocket's gettime()."""

    QUIET = 0.25

    def __init__(self, c):
        self.c = c
        self.n = max(c.inq(), 0)
        self.grew = None  # wall time of the last growth, None before the first
        self.told = True

    def sample(self):
        n = self.c.inq()
        now = time.time()
        if n > self.n:
            self.n, self.grew, self.told = n, now, False
        elif not self.told and now - self.grew >= self.QUIET:
            self.told = True
            self.c.ev("rx-quiet", self.n, "%.3f" % self.grew)


def _unread_ending(c, watch, ending):
    """Common tail of the never-reading behaviours: hold (never reading), then drain."""
    if ending is None:
        ending = c.hold_unread(qfloat(c, "hold", 5.0), watch)
    watch.sample()
    if ending == "reset":
        c.ev("reset")
        return
    c.drain(qfloat(c, "drain", 5.0, WAIT))
    c.finish(linger=0.5)


def b_pingflood(c, hdrs, head):
    """/pingflood?bytes=N&size=S&then=close|fin|hold&hold=H&drain=D&stall=T: never reads;
    sends ping frames with S (0-125, default 125) payload bytes until N bytes (default 1 MiB,
    whole frames) are out; records "sent <bytes>"; then sends Close 1000 (then=close, the
    default), a FIN (fin) or nothing (hold). Then holds the socket H s (default 5) without
    reading, then reads for at most D s (default 5) and records what came (see drain). A
    client that takes nothing for T s (default 10) ends the flood ("stalled"), so does the
    flood lasting 60 s ("time-limit"); a client that goes away ends it at once ("reset").
    "rx-quiet" lines say when the client's output stalled (see RxWatch)."""
    switch(c, hdrs)
    total = max(qint(c, "bytes", 1 << 20), 0)
    size = min(max(qint(c, "size", 125), 0), 125)
    then = c.query.get("then", "close")
    frame = make_frame(OP_PING, b"p" * size)
    frames = -(-total // len(frame))
    per_block = max(1, (64 * 1024) // len(frame))
    block = frame * per_block

    def blocks():
        left = frames
        while left >= per_block:
            left -= per_block
            yield block
        if left:
            yield frame * left

    watch = RxWatch(c)
    sent, ending = c.send_unread(blocks(), watch, qfloat(c, "stall", 10.0, WAIT))
    c.ev("sent", sent)
    if ending is None and then == "close":
        c.close_sent = True
        _, ending = c.send_unread([make_frame(OP_CLOSE, close_payload(1000))], watch, 5.0)
        if ending is None:
            c.ev("sent-close")
    elif ending is None and then == "fin":
        try:
            c.sock.shutdown(socket.SHUT_WR)
            c.ev("sent-fin")
        except OSError:
            ending = "reset"
    if ending in ("stalled", "time-limit"):
        c.ev(ending)
        ending = None
    _unread_ending(c, watch, ending)


def b_stallclose(c, hdrs, head):
    """/stallclose?after=T&then=close|masked|badutf8&code=C&hold=H&drain=D: never reads; after
    T s (default 1) sends one frame: Close C (default 1000), a masked text frame, or a text
    frame that is not UTF-8; records "sent <then> <queued bytes> <wall time>" (how much the
    client had sent that we had not read). Then holds the socket H s (default 5) without
    reading, then reads for at most D s (default 5) and records what came (see drain). A
    client that goes away before T ends it ("reset"/"eof")."""
    switch(c, hdrs)
    then = c.query.get("then", "close")
    if then == "masked":
        frame = make_frame(OP_TEXT, "hi", mask=True)
    elif then == "badutf8":
        frame = make_frame(OP_TEXT, b"\xff\xfe")
    else:
        then = "close"
        c.close_sent = True
        frame = make_frame(OP_CLOSE, close_payload(qint(c, "code", 1000)))
    watch = RxWatch(c)
    ending = c.hold_unread(qfloat(c, "after", 1.0), watch)
    if ending is not None:
        c.ev(ending)
        return
    queued = c.inq()
    _, ending = c.send_unread([frame], watch, 5.0)
    c.ev("sent", then, queued, "%.3f" % time.time())
    if ending == "stalled":
        ending = None
    _unread_ending(c, watch, ending)


# ---------------------------------------------------------------- permessage-deflate (RFC 7692)
# Each deflate_* mode answers an offer with "permessage-deflate" (plus the server_* parameters the
# offer asks for) and an unoffering client without it, then sends its frames either way: a client
# that did not offer sees RSV1 where nothing was negotiated. The ext_* modes answer a bad
# Sec-WebSocket-Extensions whether offered or not. Every one records "offer <header>|none" first.


def deflate_offer(hdrs):
    """The client's first permessage-deflate offer as {param: value or True}, or None."""
    for ext in hdrs.get("sec-websocket-extensions", "").split(","):
        parts = [p.strip() for p in ext.split(";")]
        if parts[0] == "permessage-deflate":
            params = {}
            for p in parts[1:]:
                k, _, v = p.partition("=")
                params[k.strip()] = v.strip().strip('"') or True
            return params
    return None


class Deflater:
    """The server's side of the extension: raw DEFLATE, each message ending in a sync flush
    whose 00 00 ff ff tail is removed (§7.2.1); one window across messages unless
    no_context_takeover."""

    def __init__(self, bits=15, takeover=True):
        # zlib has no 8-bit window: 9 bits, and no references into earlier messages (a server
        # may always start afresh), keep within 256 bytes for these short messages.
        self.bits, self.takeover, self.z = max(bits, 9), takeover and bits >= 9, None

    def message(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.z is None or not self.takeover:
            self.z = zlib.compressobj(9, zlib.DEFLATED, -self.bits)
        out = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]


def deflate_switch(c, hdrs, negotiate=True):
    """The 101, with the extension when offered (and `negotiate`); returns the Deflater."""
    c.ev("offer", hdrs.get("sec-websocket-extensions", "none"))
    offer = deflate_offer(hdrs) if negotiate else None
    if offer is None:
        switch(c, hdrs)
        return Deflater()
    answer, bits = ["permessage-deflate"], 15
    if offer.get("server_max_window_bits", True) is not True:
        bits = int(offer["server_max_window_bits"])
        answer.append("server_max_window_bits=%d" % bits)
    takeover = "server_no_context_takeover" not in offer
    if not takeover:
        answer.append("server_no_context_takeover")
    switch(c, hdrs, extra=["Sec-WebSocket-Extensions: " + "; ".join(answer)])
    return Deflater(bits, takeover)


def _deflate_then_session(frames, negotiate=True):
    """frames(deflater) -> bytes, sent after the 101; then the echo loop (records the Close)."""
    def run(c, hdrs, head):
        d = deflate_switch(c, hdrs, negotiate)
        c.send(frames(c, d))
        c.session()
    return run


def _pieces(data, n):
    k = -(-len(data) // n)
    return [data[i * k:(i + 1) * k] for i in range(n)]


DEFLATE_TEXT = "Hello, compressed and fragmented world! " * 8


def f_deflate_ok_fragmented(c, d):
    """A compressed text over 3 frames (RSV1 on the first only) with a ping between the first
    two, an uncompressed text, then the first text again compressed in one frame (with context
    takeover: mostly a back-reference into the first message)."""
    a, b, z = _pieces(d.message(DEFLATE_TEXT), 3)
    return (make_frame(OP_TEXT, a, fin=False, rsv=4)
            + make_frame(OP_PING, "ping-in-the-middle")
            + make_frame(OP_CONT, b, fin=False)
            + make_frame(OP_CONT, z)
            + make_frame(OP_TEXT, "plain after compressed")
            + make_frame(OP_TEXT, d.message(DEFLATE_TEXT), rsv=4))


def f_deflate_rsv1_continuation(c, d):
    a, b = _pieces(d.message("the continuation frame has RSV1 too"), 2)
    return make_frame(OP_TEXT, a, fin=False, rsv=4) + make_frame(OP_CONT, b, rsv=4)


_bombs = {}
_bombs_lock = threading.Lock()


def bomb(size):
    """`size` zero bytes deflated: about size / 1030 bytes (DEFLATE's best ratio), cached."""
    with _bombs_lock:
        if size not in _bombs:
            z = zlib.compressobj(9, zlib.DEFLATED, -15)
            chunk, parts, left = b"\0" * (1 << 20), [], size
            while left > 0:
                parts.append(z.compress(chunk[:min(left, len(chunk))]))
                left -= len(chunk)
            _bombs[size] = (b"".join(parts) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
        return _bombs[size]


def f_deflate_bomb(c, d):
    """/deflate_bomb?size=N: one compressed binary frame inflating to N zero bytes (default
    100 MiB: a 100 KiB frame; size=4194304: 4 KiB)."""
    return make_frame(OP_BINARY, bomb(min(max(qint(c, "size", 100 << 20), 1), 1 << 30)), rsv=4)


# The ext_* answers (the value of Sec-WebSocket-Extensions); /ext?value=... answers any value.
EXT_ANSWERS = {
    "/ext_unknown_param": "permessage-deflate; foo=1",
    "/ext_repeated_param": "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "/ext_bad_value": "permessage-deflate; server_max_window_bits=7",
    # a bad answer only to an offer without client_max_window_bits (RFC 7692 §7.1.2.2)
    "/ext_client_bits_not_offered": "permessage-deflate; client_max_window_bits=10",
    # a bad answer only to an offer of server_max_window_bits under 15 (§7.1.2.1)
    "/ext_server_bits_over": "permessage-deflate; server_max_window_bits=15",
    "/ext_twice": "permessage-deflate, permessage-deflate",
    "/ext_unknown_extension": "x-webkit-deflate-frame",
}


def b_ext(c, hdrs, head):
    """A 101 with this Sec-WebSocket-Extensions, then the echo loop (a client that accepted it
    can close normally; one that refused it just goes)."""
    path = urllib.parse.urlsplit(head.split(b" ", 2)[1].decode("latin-1")).path
    value = c.query.get("value", EXT_ANSWERS.get(path, ""))
    c.ev("offer", hdrs.get("sec-websocket-extensions", "none"))
    switch(c, hdrs, extra=["Sec-WebSocket-Extensions: " + value])
    c.session()


def _bigping():
    return make_frame(OP_PING, b"p" * 126)


BEHAVIOURS = {
    "/": b_echo,
    "/echo": b_echo,
    "/headers": b_headers,
    "/hang": b_hang,
    "/status": b_status,
    "/badaccept": _bad_switch(accept="bad"),
    "/noaccept": _bad_switch(accept=None),
    "/noupgrade": _bad_switch(upgrade=None),
    "/notws": _bad_switch(upgrade="h2c"),
    "/garbage": b_garbage,
    "/raw": b_raw,
    "/rawhs": b_rawhs,
    "/eof": b_eof,
    "/masked": _send_then_session(lambda: make_frame(OP_TEXT, "hi", mask=True)),
    "/reset": b_reset,
    "/huge": b_huge,
    "/fragmented": b_fragmented,
    "/close": b_close,
    "/silence": b_silence,
    "/trickle": b_trickle,
    "/flood": b_flood,
    "/badutf8": _send_then_session(make_frame(OP_TEXT, b"\xff\xfe")),
    "/badutf8-frag": _send_then_session(
        make_frame(OP_TEXT, b"hello \xce", fin=False) + make_frame(OP_CONT, b"\x41 world")
    ),
    "/rsv": _send_then_session(make_frame(OP_TEXT, "rsv", rsv=4)),
    "/badopcode": _send_then_session(make_frame(3, "x")),
    "/badclose": _send_then_session(make_frame(OP_CLOSE, close_payload(999))),
    "/bigping": _send_then_session(_bigping),
    "/push": b_push,
    "/pingpong": b_pingpong,
    "/slowread": b_slowread,
    "/pingflood": b_pingflood,
    "/stallclose": b_stallclose,
    "/deflate_corrupt": _deflate_then_session(
        lambda c, d: make_frame(OP_TEXT, b"\xff\xff\xff\xff", rsv=4)),  # BTYPE 11: reserved
    "/deflate_bomb": _deflate_then_session(f_deflate_bomb),
    "/deflate_rsv1_continuation": _deflate_then_session(f_deflate_rsv1_continuation),
    "/deflate_rsv1_control": _deflate_then_session(lambda c, d: make_frame(OP_PING, "x", rsv=4)),
    "/rsv1_unnegotiated": _deflate_then_session(
        lambda c, d: make_frame(OP_TEXT, d.message("compressed, never negotiated"), rsv=4),
        negotiate=False),
    "/deflate_ok_fragmented": _deflate_then_session(f_deflate_ok_fragmented),
    "/ext": b_ext,
}
BEHAVIOURS.update((path, b_ext) for path in EXT_ANSWERS)
# paths where a close frame has already gone out before the session starts
ALREADY_CLOSED = {"/badclose"}


def parse_head(head):
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    method = parts[0] if parts else ""
    target = parts[1] if len(parts) > 1 else "/"
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    url = urllib.parse.urlsplit(target)
    query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
    return method, url.path or "/", query, hdrs


def serve_control(c, path, query):
    if path == "/log":
        try:
            timeout = min(float(query.get("timeout", 5)), WAIT)
        except ValueError:
            timeout = 5.0
        lines, timed_out = wait_log(query.get("id", ""), query.get("wait", ""), timeout)
        body = "".join(l + "\n" for l in lines).encode()
        http_response(c, 200, "OK", [("Content-Type", "text/plain; charset=utf-8"),
                                     ("X-Timed-Out", "1" if timed_out else "0"),
                                     ("Connection", "close")], body)
    elif path == "/count":
        target = query.get("wait")
        try:
            target = int(target) if target not in (None, "") else None
            timeout = min(float(query.get("timeout", 5)), WAIT)
        except ValueError:
            target, timeout = None, 5.0
        n = wait_count(target, timeout)
        http_response(c, 200, "OK", [("Content-Type", "text/plain"), ("Connection", "close")],
                      b"%d\n" % n)
    else:
        http_response(c, 404, "Not Found", [("Connection", "close")])
    c.finish(linger=1.0)


def sniff(sock):
    """Wait for the first byte without consuming it; return it or None."""
    sock.settimeout(WAIT)
    try:
        b = sock.recv(1, socket.MSG_PEEK)
    except OSError:
        return None
    return b or None


def peek_head(sock):
    """For /hang-accept: look at the request without reading it."""
    deadline = time.monotonic() + WAIT
    data = b""
    while b"\r\n\r\n" not in data and len(data) <= MAX_HEAD:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            new = sock.recv(MAX_HEAD + 4, socket.MSG_PEEK)
        except OSError:
            return None
        if not new or new == data:
            if not new:
                return None
            time.sleep(0.02)
        data = new
    return data


def handle_conn(sock):
    global _open_count
    c = Conn(sock, False)
    counted = True
    try:
        first = None
        if TLS_CTX is not None:
            first = sniff(sock)
            if first is None:
                return
            if first == b"\x16":
                if ARGS.stall_tls:
                    c.wait_gone(HOLD, consume=False)
                    return
                sock.settimeout(WAIT)
                SNI.name = None
                try:
                    c.sock = TLS_CTX.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                c.tls = True
                c.sni = SNI.name
        else:
            # /hang-accept must not read the request: peek at it first.
            peek = peek_head(sock)
            if peek is not None:
                line = peek.split(b"\r\n", 1)[0].split(b" ")
                if len(line) > 1 and urllib.parse.urlsplit(line[1].decode("latin-1")).path == "/hang-accept":
                    c.query = parse_head(peek.split(b"\r\n\r\n", 1)[0])[2]
                    c.id = c.query.get("id", "")
                    kind = c.wait_gone(HOLD, consume=False)
                    if kind != "timeout":
                        c.ev(kind)
                    return
        head = c.read_head()
        if head is None:
            http_response(c, 431, "Request Header Fields Too Large", [("Connection", "close")])
            c.finish()
            return
        method, path, query, hdrs = parse_head(head)
        c.query = query
        c.id = query.get("id", "")
        if "upgrade" not in hdrs:
            # control requests are not part of /count
            with _open_lock:
                _open_count -= 1
            counted = False
            serve_control(c, path, query)
            return
        if TLS_CTX is not None and not c.tls:
            return  # plain-text upgrade on a TLS port: just drop it
        if path == "/hang-accept":
            path = "/hang"
        fn = BEHAVIOURS.get(path)
        if fn is None:
            http_response(c, 404, "Not Found", [("Connection", "close")])
            c.finish()
            return
        if path in ALREADY_CLOSED:
            c.close_sent = True
        fn(c, hdrs, head)
    except PeerGone as e:
        c.ev(e.kind)
    except Exception as e:  # keep serving whatever happens
        try:
            c.ev("error", "internal", type(e).__name__)
        except Exception:
            pass
    finally:
        try:
            c.sock.close()
        except Exception:
            pass
        if counted:
            with _open_lock:
                _open_count -= 1


# ---------------------------------------------------------------- main


def count_open(_sock):
    """Counted in /count from accept until handle_conn ends or sees a control request."""
    global _open_count
    with _open_lock:
        _open_count += 1


def main():
    global ARGS, TLS_CTX, SNI
    ap = argparse.ArgumentParser(description="luws misbehaving WebSocket test server")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--client-ca", metavar="CA",
                    help="request (optional) client certificates signed by CA")
    ap.add_argument("--stall-tls", action="store_true",
                    help="accept TLS connections but never complete the handshake")
    ARGS = ap.parse_args()
    SNI = threading.local()
    TLS_CTX = None
    if ARGS.tls:
        TLS_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        TLS_CTX.load_cert_chain(ARGS.tls[0], ARGS.tls[1])
        # Record the server name the client sent (SNI); runs in the handshaking thread.
        TLS_CTX.sni_callback = lambda _obj, name, _ctx: setattr(SNI, "name", name)
        if ARGS.client_ca:
            TLS_CTX.load_verify_locations(ARGS.client_ca)
            TLS_CTX.verify_mode = ssl.CERT_OPTIONAL
    elif ARGS.stall_tls or ARGS.client_ca:
        ap.error("--stall-tls and --client-ca need --tls")

    peer.serve_forever(handle_conn, before_start=count_open)


ARGS = None
TLS_CTX = None

if __name__ == "__main__":
    main()
