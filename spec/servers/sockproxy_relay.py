#!/usr/bin/env python3
"""luws test peer: a relay speaking toggledbits' SockProxy protocol (sockproxyd).

Design criteria
  * Python 3.11 standard library only; same process contract as bad_server.py:
    binds 127.0.0.1 port 0, prints "PORT <n> PID <pid>" once, then stdout/stderr
    go to /dev/null (or $LUWS_SERVER_LOG); exits on SIGTERM/SIGINT, when its
    parent changes, when the reader of its stdout pipe is gone, and if it cannot
    start in 15 s.
  * The protocol as sockproxyd speaks it (lines end in LF; a CR is not accepted):
      greeting      "OK TOGGLEDBITS-SOCKPROXY 1 <hexid>\n"
      CONN host:port [NTFY=dev/sid/act[/pid]] [RTIM=ms] [PACE=s] [BLKS=n]
                    -> "OK CONN <id>\n" and from then on transparent bytes both
                       ways; or "ERR CONN <why>\n" and still in setup mode
      CAPA          -> "OK CAPA BLKS RTIM NTFY CONN UDP\n"
      QUIT          -> "OK QUIT\n", then the connection closes
      other         -> "ERR <word> unknown command\n"
    Notifications (NTFY) are parsed and recorded but not sent: luws's own
    `notify` option replaces them.
  * Test-only, in setup mode on a fresh connection:
      XLOG <id> [<hex marker>]
        -> "OK XLOG <id> target=<host:port> ntfy=<NTFY or -> up=<bytes>
            down=<bytes> marker_up=<0|1> marker_down=<0|1> open=<0|1>\n"
           (up = client to target; a marker is searched in the first 8 MiB of
           each direction), or "ERR XLOG unknown session\n".
  * --refuse answers every CONN with "ERR CONN refused by test relay".
  * The remote connect is bounded by 5 s (as sockproxyd); each session is two
    pump threads; a half-close is passed on (shutdown SHUT_WR), the session
    ends when both directions have ended.  Bounded waits everywhere else.

Usage: python3 sockproxy_relay.py [--refuse]
"""

import peer

peer.arm_startup_alarm()  # cancelled once the PORT line is out

import argparse
import os
import socket
import threading
import time

KEEP = 8 * 1024 * 1024  # bytes kept per direction for the marker search
SETUP_WAIT = 30.0  # a client idle this long in setup mode is dropped

ARGS = None
_lock = threading.Lock()
_sessions = {}  # id -> Session
_next = [0]


class Session:
    def __init__(self, sid, target, ntfy):
        self.id = sid
        self.target = target
        self.ntfy = ntfy
        self.count = {"up": 0, "down": 0}
        self.kept = {"up": bytearray(), "down": bytearray()}
        self.open = True

    def add(self, direction, data):
        with _lock:
            self.count[direction] += len(data)
            kept = self.kept[direction]
            if len(kept) < KEEP:
                kept += data[: KEEP - len(kept)]

    def describe(self, marker):
        with _lock:
            found = {d: int(bool(marker) and marker in self.kept[d]) for d in ("up", "down")}
            return "target=%s ntfy=%s up=%d down=%d marker_up=%d marker_down=%d open=%d" % (
                self.target, self.ntfy or "-", self.count["up"], self.count["down"],
                found["up"], found["down"], int(self.open))


def read_line(sock, buf):
    """One LF-terminated line (without the LF), or None when the client went or idled."""
    deadline = time.monotonic() + SETUP_WAIT
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or len(buf) > 4096:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except OSError:
            return None
        if not data:
            return None
        buf += data
    i = buf.index(b"\n")
    line = bytes(buf[:i])
    del buf[:i + 1]
    return line.decode("latin-1")


def pump(src, dst, session, direction, done):
    try:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            session.add(direction, data)
            try:
                dst.sendall(data)
            except OSError:
                break
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        done.release()


def connect_target(spec):
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None, "invalid address"
    if ARGS.refuse:
        return None, "refused by test relay"
    try:
        return socket.create_connection((host.strip("[]"), int(port)), timeout=5), None
    except socket.timeout:
        return None, "timeout"
    except OSError as e:
        return None, (e.strerror or str(e)).lower()


def handle(sock):
    buf = bytearray()
    try:
        sock.sendall(b"OK TOGGLEDBITS-SOCKPROXY 1 %x\n" % os.getpid())
        while True:
            line = read_line(sock, buf)
            if line is None:
                return
            if "\r" in line:
                sock.sendall(b"ERR - CR not accepted\n")
                continue
            words = line.split()
            cmd = words[0].upper() if words else ""
            if cmd == "CAPA":
                sock.sendall(b"OK CAPA BLKS RTIM NTFY CONN UDP\n")
            elif cmd == "QUIT":
                sock.sendall(b"OK QUIT\n")
                return
            elif cmd == "XLOG":
                sid = words[1] if len(words) > 1 else ""
                try:
                    marker = bytes.fromhex(words[2]) if len(words) > 2 else b""
                except ValueError:
                    sock.sendall(b"ERR XLOG marker must be hex\n")
                    continue
                s = _sessions.get(sid)
                if s is None:
                    sock.sendall(b"ERR XLOG unknown session\n")
                else:
                    sock.sendall(("OK XLOG %s %s\n" % (sid, s.describe(marker))).encode())
            elif cmd == "CONN":
                if len(words) < 2:
                    sock.sendall(b"ERR CONN missing host:port\n")
                    continue
                opts = dict(w.split("=", 1) for w in words[2:] if "=" in w)
                remote, err = connect_target(words[1])
                if remote is None:
                    sock.sendall(("ERR CONN %s\n" % err).encode())
                    continue
                with _lock:
                    _next[0] += 1
                    sid = "%x" % _next[0]
                    session = Session(sid, words[1], opts.get("NTFY"))
                    _sessions[sid] = session
                remote.settimeout(None)
                remote.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(("OK CONN %s\n" % sid).encode())
                sock.settimeout(None)
                if buf:  # bytes the client sent right after its CONN line
                    session.add("up", bytes(buf))
                    remote.sendall(bytes(buf))
                    buf.clear()
                done = threading.Semaphore(0)
                threading.Thread(target=pump, args=(remote, sock, session, "down", done),
                                 daemon=True).start()
                pump(sock, remote, session, "up", done)
                done.acquire()
                done.acquire()
                session.open = False
                remote.close()
                return
            else:
                sock.sendall(("ERR %s unknown command\n" % (cmd or "-")).encode())
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    global ARGS
    ap = argparse.ArgumentParser(description="luws test SockProxy relay")
    ap.add_argument("--refuse", action="store_true", help="answer every CONN with ERR CONN")
    ARGS = ap.parse_args()
    peer.serve_forever(handle)


if __name__ == "__main__":
    main()
