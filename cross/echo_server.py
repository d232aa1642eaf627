#!/usr/bin/env python3
"""Fallback loopback WebSocket echo server for cross/verify.sh (stdlib only).

Used when spec/servers/echo_server.py (which needs the `websockets` package)
is absent. Binds 127.0.0.1:0, prints "PORT <n> PID <pid>", echoes text and
binary messages with their type, answers pings, echoes close frames, and
exits after --lifetime seconds (default 120) or on SIGTERM.
"""
import argparse, base64, hashlib, os, signal, socket, struct, sys, threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def send_frame(s, opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    s.sendall(head + payload)


def serve(conn):
    try:
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = conn.recv(4096)
            if not chunk:
                return
            req += chunk
        headers = {}
        for line in req.split(b"\r\n")[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
        key = headers.get(b"sec-websocket-key", b"")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        msg_op, msg = None, b""
        while True:
            b0, b1 = recv_exact(conn, 2)
            fin, op, masked, n = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", recv_exact(conn, 2))[0]
            elif n == 127:
                n = struct.unpack("!Q", recv_exact(conn, 8))[0]
            mask = recv_exact(conn, 4) if masked else b"\0\0\0\0"
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(conn, n)))
            if op == 8:
                send_frame(conn, 8, data[:2])
                return
            if op == 9:
                send_frame(conn, 10, data)
                continue
            if op == 10:
                continue
            if op in (1, 2):
                msg_op, msg = op, data
            else:
                msg += data
            if fin:
                send_frame(conn, msg_op, msg)
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lifetime", type=float, default=120)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    print("PORT %d PID %d" % (srv.getsockname()[1], os.getpid()), flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
