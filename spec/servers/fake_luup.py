#!/usr/bin/env python3
"""luws test peer: a fake Luup HTTP port (3480) that records action requests.

Design criteria
  * Python 3.11 standard library only; same process contract as bad_server.py:
    binds 127.0.0.1 port 0, prints "PORT <n> PID <pid>" once, then stdout/stderr
    go to /dev/null (or $LUWS_SERVER_LOG); exits on SIGTERM/SIGINT, when its
    parent changes, when the reader of its stdout pipe is gone, and if it cannot
    start in 15 s.
  * Answers every request the way openLuup does, which is the hard case for a
    notifier: "HTTP/1.1 200 OK", a chunked JSON body, "Connection: keep-alive",
    and then it keeps the socket open for --hold seconds (default 90) waiting
    for another request, whatever the client's "Connection: close" said.  A
    client that reads to EOF stalls for 90 s; one that reads the status line
    and closes does not.
  * Records every request line with its arrival time (time.time(), taken when
    the whole request head has arrived), so a test can compare it with the
    send time of a frame on the same machine.
  * Control endpoints (not recorded, answered with Content-Length and closed):
      GET /requests[?match=S][&wait=N][&timeout=T][&headers=1]
          the records whose request-target contains S, one per line:
          "<t> <request-target>" (t with 6 decimals); with headers=1 each is
          followed by its header lines, indented by two spaces.  With wait=N,
          first waits (at most T s, default 5, max 30) until N records match.
      GET /open[?wait=N][&timeout=T]
          the number of recorded (non-control) connections still open, after
          waiting (at most T s) until it equals N.
  * One thread per connection; every blocking wait is bounded.

Usage: python3 fake_luup.py [--hold SECONDS]
"""

import peer

peer.arm_startup_alarm()  # cancelled once the PORT line is out

import argparse
import socket
import threading
import time
import urllib.parse

WAIT = 30.0  # bound on a control request's wait
MAX_HEAD = 64 * 1024

_cond = threading.Condition()
_records = []  # (t, target, [header lines])
_open = 0  # recorded connections still open

ARGS = None


def serve_control(sock, path, query):
    q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    try:
        timeout = min(float(q.get("timeout", "5")), WAIT)
    except ValueError:
        timeout = 5.0
    deadline = time.monotonic() + timeout
    if path == "/requests":
        match = q.get("match", "")
        try:
            want = int(q.get("wait", "0"))
        except ValueError:
            want = 0
        with _cond:
            while True:
                got = [r for r in _records if match in r[1]]
                left = deadline - time.monotonic()
                if len(got) >= want or left <= 0:
                    break
                _cond.wait(min(left, 1.0))
        lines = []
        for t, target, headers in got:
            lines.append("%.6f %s" % (t, target))
            if q.get("headers") == "1":
                lines += ["  " + h for h in headers]
        body = "".join(l + "\n" for l in lines)
    elif path == "/open":
        want = q.get("wait")
        with _cond:
            while True:
                n = _open
                left = deadline - time.monotonic()
                if want is None or str(n) == want or left <= 0:
                    break
                _cond.wait(min(left, 0.05))
        body = "%d\n" % n
    else:
        body = None
    if body is None:
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    else:
        data = body.encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(data) + data)


def luup_answer(target):
    """What openLuup sends for /data_request?id=action: chunked JSON, keep-alive."""
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
    action = q.get("action", "")
    body = ('{"u:%sResponse": {"OK": "OK"}}' % action).encode()
    head = ("HTTP/1.1 200 OK\r\n"
            "Server: openLuup (fake, luws tests)\r\n"
            "Content-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: keep-alive\r\n"
            "Access-Control-Allow-Origin: *\r\n\r\n").encode()
    return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


def handle(sock):
    global _open
    counted = False
    buf = bytearray()
    try:
        while True:
            # Wait for a request head; between requests the connection is held like openLuup's.
            limit = ARGS.hold if counted else WAIT
            deadline = time.monotonic() + limit
            while b"\r\n\r\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or len(buf) > MAX_HEAD:
                    return
                sock.settimeout(min(left, WAIT))
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return  # the client closed: what a good notifier does after the status line
                buf += data
            t = time.time()
            i = buf.index(b"\r\n\r\n")
            lines = bytes(buf[:i]).decode("latin-1").split("\r\n")
            del buf[:i + 4]
            parts = lines[0].split(" ")
            target = parts[1] if len(parts) > 1 else "/"
            path, _, query = target.partition("?")
            if path in ("/requests", "/open"):
                serve_control(sock, path, query)
                return
            with _cond:
                _records.append((t, target, lines[1:]))
                if not counted:
                    counted = True
                    _open += 1
                _cond.notify_all()
            sock.settimeout(WAIT)
            sock.sendall(luup_answer(target))
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass
        if counted:
            with _cond:
                _open -= 1
                _cond.notify_all()


def main():
    global ARGS
    ap = argparse.ArgumentParser(description="luws fake Luup port 3480")
    ap.add_argument("--hold", type=float, default=90.0,
                    help="seconds a connection is kept open after an answer (openLuup: ~90)")
    ARGS = ap.parse_args()
    peer.serve_forever(handle)


if __name__ == "__main__":
    main()
