#!/usr/bin/env python3
"""luws test peer: a WebSocket server that streams messages, then ends the connection.

Design criteria
  * Python 3.11 standard library only (the WebSocket handshake and framing are done here,
    RFC 6455), same process contract as the other peers (peer.py): binds 127.0.0.1 port 0,
    prints "PORT <n> PID <pid>" once, then goes quiet; exits on SIGTERM/SIGINT, when its
    parent changes, when the reader of its stdout pipe is gone, and if it cannot start in 15 s.
  * One thread per connection; every blocking wait is bounded.
  * Used by spec/host_stall_spec.lua to end notify connections in the three ways a peer can,
    at chosen moments, while messages are still arriving.

One endpoint, any path:
    GET /<anything>?count=N&interval=MS&size=B&end=close|fin|rst|none&delay=MS
  After the 101: N text messages "m<i>:" padded with "x" to B bytes (at least the prefix),
  MS milliseconds apart (0: all in one write), then, `delay` ms after the last one (0: in the
  same write as the last message), the end:
    close  a Close frame 1000; waits (<= 2 s) for the client's Close or EOF, then FIN
    fin    FIN without a Close (shutdown(SHUT_WR)), then reads until EOF (<= 5 s)
    rst    a TCP reset (SO_LINGER 0, then close)
    none   nothing: waits (<= 30 s) for the client to close
  Whenever the client's Close arrives first (wsclose), it is echoed and the connection ends
  with FIN; an EOF or a reset from the client ends it at once. Pings are answered with pongs.

Usage: python3 stream_peer.py
"""

import peer

peer.arm_startup_alarm()  # cancelled once the PORT line is out

import select
import socket
import struct
import time
import urllib.parse

MAX_HEAD = 16 * 1024
HEAD_WAIT = 5.0
CLOSE_WAIT = 2.0
FIN_WAIT = 5.0
NONE_WAIT = 30.0


class Gone(Exception):
    """The client closed, reset, or sent its Close (already answered)."""


frame = peer.frame


def message(i, size):
    text = "m%d:" % i
    return (text + "x" * max(size - len(text), 0)).encode()


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.close_sent = False

    def send(self, data):
        try:
            self.sock.settimeout(5.0)
            self.sock.sendall(data)
        except OSError:
            raise Gone()

    def pump(self, timeout):
        """Reads and handles the client's frames for up to `timeout` s (0: what is ready)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0)
            try:
                ready, _, _ = select.select([self.sock], [], [], left)
            except (OSError, ValueError):
                raise Gone()
            if not ready:
                return
            try:
                data = self.sock.recv(65536)
            except OSError:
                raise Gone()
            if not data:
                raise Gone()
            self.buf += data
            self.frames()
            if time.monotonic() >= deadline:
                return

    def frames(self):
        while True:
            f = peer.take_frame(self.buf)
            if f is None:
                return
            op, payload = f
            if op == 8:
                if not self.close_sent:
                    self.close_sent = True
                    self.send(frame(8, payload[:2]))
                self.finish(1.0)
                raise Gone()
            if op == 9:
                self.send(frame(10, payload))

    def finish(self, linger):
        """FIN, then read until the client's EOF (at most `linger` s)."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + linger
        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                if not self.sock.recv(65536):
                    return
            except OSError:
                return

    def reset(self):
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


def handshake(sock):
    """Reads the upgrade request and answers 101; returns the query as a dict, or None."""
    head = bytearray()
    deadline = time.monotonic() + HEAD_WAIT
    while b"\r\n\r\n" not in head:
        left = deadline - time.monotonic()
        if left <= 0 or len(head) > MAX_HEAD:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except OSError:
            return None
        if not data:
            return None
        head += data
    lines = bytes(head[:head.index(b"\r\n\r\n")]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    target = parts[1] if len(parts) > 1 else "/"
    key = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    if not key:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return None
    accept = peer.accept_key(key)
    sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))


def qint(q, name, default):
    try:
        return int(q.get(name, default))
    except ValueError:
        return default


def handle(sock):
    try:
        q = handshake(sock)
        if q is None:
            return
        c = Conn(sock)
        count, size = qint(q, "count", 10), qint(q, "size", 16)
        interval, delay = qint(q, "interval", 0) / 1000.0, qint(q, "delay", 0) / 1000.0
        end = q.get("end", "fin")
        try:
            pending = b""
            for i in range(1, count + 1):
                pending += frame(1, message(i, size))
                if i < count and interval > 0:
                    c.send(pending)
                    pending = b""
                    c.pump(interval)
            if delay > 0 or end in ("fin", "rst", "none"):
                c.send(pending)
                pending = b""
                if delay > 0:
                    c.pump(delay)
            if end == "close":
                c.close_sent = True
                c.send(pending + frame(8, struct.pack("!H", 1000)))
                c.pump(CLOSE_WAIT)  # returns by Gone when the client's Close comes
                c.finish(0.5)
            elif end == "fin":
                c.finish(FIN_WAIT)
            elif end == "rst":
                c.reset()
                return
            else:
                c.pump(NONE_WAIT)
        except Gone:
            pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    peer.serve_forever(handle)


if __name__ == "__main__":
    main()
