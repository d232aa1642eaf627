#!/usr/bin/env python3
"""luws test peer: a WebSocket server that can be told to end, stall, go down and come back.

Design criteria
  * Python 3.11 standard library only; the handshake and framing (RFC 6455) are done here, so
    that "stall", "fin" and "reset" act on the raw socket with nothing in between.
  * Process contract of the other peers (peer.py): binds 127.0.0.1 port 0 for WebSocket
    clients and prints "PORT <n> PID <pid>" once, after a line "CONTROL <port>" naming its
    control port (also 127.0.0.1); exits on SIGTERM/SIGINT/SIGHUP, when its parent changes,
    when the reader of its stdout pipe is gone, if it cannot start in 15 s, and by itself
    after --lifetime seconds (default 300).
  * One thread per connection; every loop and every wait is bounded in time. Built for
    spec/reconnect_spec.lua (the `reconnect` option): the WebSocket port can be closed and
    reopened on the same port number while the control port stays up.

WebSocket clients, any path (e.g. /push?every=0.1&tag=T):
    after the 101 the server sends text "hello <conn#>", then "m <conn#> <seq>" (seq 1, 2, ...)
    every `every` seconds (default 0.1; 0 = only the hello); a client's text message <t> is
    answered with text "echo <t>" (binary likewise, as binary), pings with pongs, a Close with
    the Close echo and FIN. `tag` groups connections for the control commands and the log.
    conn# counts every accepted TCP connection of the process, from 1.

Control port: plain HTTP GET, one request per connection; every answer is 200 with
Content-Length, lines by default ("ok <command> <conn#...>"), JSON with &json=1.
Commands that act on connections act on the open ones (all, or those with ?tag=T) and answer
once each has done its first step (Close frame written, RST, FIN, stall begun); at most 2 s.
    /close?code=1001      a Close frame (code, default 1001) to every client; then waits
                          <= 2 s for its Close echo (or EOF), FIN, reads to EOF <= 1 s
    /reset                TCP reset: SO_LINGER 0, then close
    /fin                  FIN without a Close frame (shutdown SHUT_WR), then reads to EOF <= 3 s
    /protocol             a text frame with RSV1 set (a protocol error for a client that
                          negotiated no extension); the connection then goes on as before
    /stall                stop sending and reading on the current connections, keep them open
                          (at most 60 s, then FIN); later connections are not stalled
    /down?seconds=N&how=fin|reset|close
                          close the listening socket first (connects are refused), then every
                          connection (by `how`, default fin), listen again on the same port N
                          s after the listener closed (default 3; at most 120). Answer:
                          "ok down <conn#...>" then "down_at <t>" and "up_at <planned t>"
    /up                   end a down (listen again) and a reject, now
    /reject?seconds=N&status=503
                          for N s (at most 120) accept and log each connection, read its request
                          and answer "HTTP/1.1 <status> Rejected" instead of the 101
    /log?tag=T&conns=K&timeout=S
                          waits (at most S s, default 0, at most 30) until K connections (with
                          the tag) were accepted, then reports, one per line:
                            now <time.time()>
                            listening 0|1
                            event <t> down|up|reject|bind-retry [...]
                            conn <conn#> <accept t> <tag|-> <ws|rejected> <state> <end|->
                                 <open t|-> <end t|->                (on one line)
                            sent <conn#> <text>          (what the client sent, in order)
                          state: handshake, open, stalled, closing, ended; end: close, reset,
                          fin, client-close, client-eof, client-reset, send-failed, stall-max,
                          rejected, no-handshake (a down's ends are those of its `how`)
    /quit                 exit now
Timestamps are time.time() (seconds since the epoch, the clock socket.gettime() reads).

Usage: python3 restart_peer.py [--lifetime SECONDS]
"""

import peer

peer.arm_startup_alarm()  # cancelled once the PORT line is out

import argparse
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse

MAX_HEAD = 16 * 1024
HEAD_WAIT = 5.0      # seconds for an upgrade request
ACK_WAIT = 2.0       # seconds a control command waits for the connections' first step
CLOSE_WAIT = 2.0     # seconds for the client's Close echo after ours
DRAIN_WAIT = 3.0     # seconds to read to EOF after a FIN
STALL_MAX = 60.0     # seconds a stalled connection is kept
TICK = 0.02          # seconds between command checks in every loop
MAX_DOWN = 120.0

LOCK = threading.Condition()
CLIENTS = []         # every accepted connection, in order (the log)
EVENTS = []          # (t, what, detail)
STATE = {"listener": None, "port": 0, "down_until": 0.0, "reject_until": 0.0,
         "reject_status": 503, "want": None, "counter": 0}


def now():
    return time.time()


def event(what, detail=""):
    with LOCK:
        EVENTS.append((now(), what, detail))
        LOCK.notify_all()


frame = peer.frame


class Gone(Exception):
    def __init__(self, why):
        Exception.__init__(self, why)
        self.why = why


class Client:
    def __init__(self, sock, n, t, rejected):
        self.sock = sock
        self.n = n
        self.t = t
        self.kind = "rejected" if rejected else "ws"
        self.tag = ""
        self.state = "handshake"
        self.end = None
        self.t_open = None
        self.t_end = None
        self.sent = []
        self.cmds = []          # (command, arg, threading.Event)
        self.buf = bytearray()
        self.every = 0.1
        self.stalled_at = None

    # ---------------------------------------------------------------- commands

    def post(self, cmd, arg):
        """Queues a command; returns an Event set once its first step is done, or None."""
        with LOCK:
            if self.state == "ended":
                return None
            ev = threading.Event()
            self.cmds.append((cmd, arg, ev))
            return ev

    def take(self):
        with LOCK:
            cmds, self.cmds = self.cmds, []
        return cmds

    def set_state(self, st):
        with LOCK:
            self.state = st
            LOCK.notify_all()

    def finish(self, why):
        with LOCK:
            if self.end is None:
                self.end = why
            self.state = "ended"
            self.t_end = now()
            pending, self.cmds = self.cmds, []
            LOCK.notify_all()
        for _, _, ev in pending:
            ev.set()
        try:
            self.sock.close()
        except OSError:
            pass

    # ---------------------------------------------------------------- socket steps

    def send(self, data):
        try:
            self.sock.settimeout(2.0)
            self.sock.sendall(data)
        except OSError:
            raise Gone("send-failed")

    def reset(self):
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def drain(self, limit):
        """Reads and discards until EOF, an error, or `limit` s."""
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                r, _, _ = select.select([self.sock], [], [], min(left, TICK * 5))
                if r and not self.sock.recv(65536):
                    return
            except (OSError, ValueError):
                return

    def fin_and_drain(self, limit):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        self.drain(limit)

    def frames(self):
        """Handles the complete frames in the buffer; raises Gone at the client's Close."""
        while True:
            f = peer.take_frame(self.buf)
            if f is None:
                return
            op, payload = f
            if op == 1:
                text = payload.decode("utf-8", "replace")
                with LOCK:
                    self.sent.append(text)
                    LOCK.notify_all()
                self.send(frame(1, b"echo " + payload))
            elif op == 2:
                with LOCK:
                    self.sent.append("<binary %d>" % len(payload))
                    LOCK.notify_all()
                self.send(frame(2, b"echo " + payload))
            elif op == 8:
                if self.state != "closing":
                    self.send(frame(8, payload[:2]))
                raise Gone("client-close")
            elif op == 9:
                self.send(frame(10, payload))

    def read_some(self, timeout):
        """Waits up to `timeout` s for data and handles it."""
        try:
            r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        except (OSError, ValueError):
            raise Gone("client-reset")
        if not r:
            return
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            raise Gone("client-reset")
        except OSError:
            raise Gone("client-reset")
        if not data:
            raise Gone("client-eof")
        self.buf += data
        self.frames()

    # ---------------------------------------------------------------- the ends

    def do_close(self, code, ev):
        self.set_state("closing")
        self.send(frame(8, struct.pack("!H", code)))
        ev.set()
        deadline = time.monotonic() + CLOSE_WAIT
        try:
            while time.monotonic() < deadline:
                self.read_some(TICK * 5)
        except Gone:
            pass
        self.fin_and_drain(1.0)
        raise Gone("close")

    def act(self, cmd, arg, ev):
        """Runs one command on an open connection; raises Gone when it ends it."""
        if cmd == "close":
            self.do_close(arg, ev)
        elif cmd == "reset":
            self.reset()
            ev.set()
            raise Gone("reset")
        elif cmd == "fin":
            self.set_state("closing")
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            ev.set()
            self.drain(DRAIN_WAIT)
            raise Gone("fin")
        elif cmd == "protocol":
            self.send(b"\xc1\x02hi")  # FIN + RSV1 + text, unmasked, 2 bytes
            ev.set()
        elif cmd == "stall":
            if self.stalled_at is None:
                self.stalled_at = time.monotonic()
                self.set_state("stalled")
            ev.set()
        else:
            ev.set()

    # ---------------------------------------------------------------- the life

    def handshake(self):
        """Reads the request head; returns (target, key) or raises Gone."""
        head = bytearray()
        deadline = time.monotonic() + HEAD_WAIT
        while b"\r\n\r\n" not in head:
            for cmd, arg, ev in self.take():
                if cmd == "reset":
                    self.reset()
                    ev.set()
                    raise Gone("reset")
                ev.set()
                raise Gone(cmd)
            left = deadline - time.monotonic()
            if left <= 0 or len(head) > MAX_HEAD:
                raise Gone("no-handshake")
            try:
                r, _, _ = select.select([self.sock], [], [], min(left, TICK))
                if not r:
                    continue
                data = self.sock.recv(4096)
            except (OSError, ValueError):
                raise Gone("no-handshake")
            if not data:
                raise Gone("no-handshake")
            head += data
        i = head.index(b"\r\n\r\n")
        self.buf = bytearray(head[i + 4:])
        lines = bytes(head[:i]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        target = parts[1] if len(parts) > 1 else "/"
        key = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        return target, key

    def run(self):
        try:
            try:
                self.life()
            except Gone as g:
                self.finish(g.why)
                return
            self.finish("ended")
        except Exception as e:  # never let a thread die silently holding a socket
            self.finish("error %s" % e)

    def life(self):
        target, key = self.handshake()
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
        with LOCK:
            self.tag = q.get("tag", "")
        if self.kind == "rejected":
            status = STATE["reject_status"]
            try:
                self.sock.settimeout(2.0)
                self.sock.sendall(("HTTP/1.1 %d Rejected\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n" % status).encode())
            except OSError:
                pass
            self.fin_and_drain(1.0)
            raise Gone("rejected")
        if not key:
            try:
                self.sock.settimeout(2.0)
                self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                  b"Connection: close\r\n\r\n")
            except OSError:
                pass
            raise Gone("no-handshake")
        try:
            self.every = max(float(q.get("every", "0.1")), 0.0)
        except ValueError:
            self.every = 0.1
        accept = peer.accept_key(key)
        self.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode()
                  + frame(1, ("hello %d" % self.n).encode()))
        with LOCK:
            self.t_open = now()
            self.state = "open"
            LOCK.notify_all()
        seq = 0
        next_push = time.monotonic() + self.every
        self.frames()  # anything that came with the request
        while True:
            for cmd, arg, ev in self.take():
                self.act(cmd, arg, ev)
            if self.stalled_at is not None:
                if time.monotonic() - self.stalled_at > STALL_MAX:
                    self.fin_and_drain(1.0)
                    raise Gone("stall-max")
                time.sleep(TICK)
                continue
            t = time.monotonic()
            if self.every > 0 and t >= next_push:
                seq += 1
                self.send(frame(1, ("m %d %d" % (self.n, seq)).encode()))
                next_push = max(next_push + self.every, t)
            wait = TICK if self.every <= 0 else min(TICK, max(next_push - time.monotonic(), 0))
            self.read_some(wait)


# -------------------------------------------------------------------- the listener

def bind_listener(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("127.0.0.1", port))
        srv.listen(128)
    except OSError:
        srv.close()
        raise
    return srv


def accept_loop():
    """Owns the WebSocket listener: accepts, closes it for a down, reopens it on time."""
    while True:
        with LOCK:
            want = STATE["want"]
            srv = STATE["listener"]
            down = now() < STATE["down_until"]
        if want == "down":
            if srv is not None:
                srv.close()
                with LOCK:
                    STATE["listener"] = None
            with LOCK:
                STATE["want"] = None
                LOCK.notify_all()
            continue
        if srv is None and not down:
            try:
                srv = bind_listener(STATE["port"])
            except OSError as e:
                event("bind-retry", str(e.errno))
                time.sleep(TICK)
                continue
            with LOCK:
                STATE["listener"] = srv
                LOCK.notify_all()
            event("up")
            continue
        if srv is None:
            time.sleep(TICK / 2)
            continue
        try:
            r, _, _ = select.select([srv], [], [], TICK)
            if not r:
                continue
            sock, _ = srv.accept()
        except (OSError, ValueError):
            time.sleep(TICK / 2)
            continue
        t = now()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with LOCK:
            STATE["counter"] += 1
            c = Client(sock, STATE["counter"], t, t < STATE["reject_until"])
            CLIENTS.append(c)
            LOCK.notify_all()
        threading.Thread(target=c.run, daemon=True).start()


# -------------------------------------------------------------------- control

def live(tag):
    with LOCK:
        return [c for c in CLIENTS if c.state != "ended" and (tag is None or c.tag == tag)]


def command_all(cmd, arg, tag):
    """Posts `cmd` to the matching open connections; waits for their first steps."""
    waits = []
    for c in live(tag):
        ev = c.post(cmd, arg)
        if ev is not None:
            waits.append((c.n, ev))
    deadline = time.monotonic() + ACK_WAIT
    done = []
    for n, ev in waits:
        if ev.wait(max(deadline - time.monotonic(), 0)):
            done.append(n)
    return done


def qnum(q, name, default, lo, hi):
    try:
        v = float(q.get(name, default))
    except ValueError:
        v = default
    return min(max(v, lo), hi)


def go_down(seconds, how, tag):
    with LOCK:
        STATE["down_until"] = now() + seconds + 3600  # no reopening before the close is done
        STATE["want"] = "down"
        LOCK.notify_all()
        deadline = time.monotonic() + ACK_WAIT
        while STATE["want"] == "down" and time.monotonic() < deadline:
            LOCK.wait(TICK)
        t_down = now()
        STATE["down_until"] = t_down + seconds
    event("down", "%.3f" % seconds)
    done = command_all(how, 1001, tag)
    return done, t_down, t_down + seconds


def log_lines(tag, conns, timeout):
    deadline = time.monotonic() + timeout
    with LOCK:
        while True:
            n = len([c for c in CLIENTS if tag is None or c.tag == tag])
            left = deadline - time.monotonic()
            if n >= conns or left <= 0:
                break
            LOCK.wait(min(left, 0.1))
        out = {"now": now(), "listening": STATE["listener"] is not None,
               "events": [{"t": t, "what": w, "detail": d} for t, w, d in EVENTS],
               "conns": []}
        for c in CLIENTS:
            if tag is not None and c.tag != tag:
                continue
            out["conns"].append({"n": c.n, "t": c.t, "tag": c.tag, "kind": c.kind,
                                 "state": c.state, "end": c.end, "t_open": c.t_open,
                                 "t_end": c.t_end, "sent": list(c.sent)})
    return out


def as_lines(out):
    lines = ["now %.6f" % out["now"], "listening %d" % (1 if out["listening"] else 0)]
    for e in out["events"]:
        lines.append(("event %.6f %s %s" % (e["t"], e["what"], e["detail"])).rstrip())
    for c in out["conns"]:
        lines.append("conn %d %.6f %s %s %s %s %s %s" % (
            c["n"], c["t"], c["tag"] or "-", c["kind"], c["state"], c["end"] or "-",
            "%.6f" % c["t_open"] if c["t_open"] else "-",
            "%.6f" % c["t_end"] if c["t_end"] else "-"))
    for c in out["conns"]:
        for s in c["sent"]:
            lines.append("sent %d %s" % (c["n"], s.replace("\\", "\\\\").replace("\n", "\\n")))
    return lines


def control(target):
    """Runs one control request; returns (lines, json-able dict)."""
    u = urllib.parse.urlsplit(target)
    cmd = u.path.strip("/")
    q = dict(urllib.parse.parse_qsl(u.query))
    tag = q.get("tag")
    if cmd in ("close", "reset", "fin", "stall", "protocol"):
        arg = int(qnum(q, "code", 1001, 1000, 4999)) if cmd == "close" else None
        done = command_all(cmd, arg, tag)
        return (["ok %s %s" % (cmd, " ".join(str(n) for n in done))],
                {"ok": True, "cmd": cmd, "conns": done})
    if cmd == "down":
        seconds = qnum(q, "seconds", 3.0, 0.0, MAX_DOWN)
        how = q.get("how", "fin")
        if how not in ("fin", "reset", "close"):
            how = "fin"
        done, t_down, t_up = go_down(seconds, how, tag)
        return (["ok down %s" % " ".join(str(n) for n in done), "down_at %.6f" % t_down,
                 "up_at %.6f" % t_up],
                {"ok": True, "cmd": "down", "conns": done, "down_at": t_down, "up_at": t_up})
    if cmd == "up":
        with LOCK:
            STATE["down_until"] = 0.0
            STATE["reject_until"] = 0.0
            LOCK.notify_all()
            deadline = time.monotonic() + ACK_WAIT
            while STATE["listener"] is None and time.monotonic() < deadline:
                LOCK.wait(TICK)
            up = STATE["listener"] is not None
        return (["ok up %d" % (1 if up else 0)], {"ok": up, "cmd": "up"})
    if cmd == "reject":
        seconds = qnum(q, "seconds", 3.0, 0.0, MAX_DOWN)
        status = int(qnum(q, "status", 503, 200, 599))
        with LOCK:
            STATE["reject_until"] = now() + seconds
            STATE["reject_status"] = status
        event("reject", "%.3f %d" % (seconds, status))
        return (["ok reject", "until %.6f" % STATE["reject_until"]],
                {"ok": True, "cmd": "reject", "until": STATE["reject_until"]})
    if cmd == "log":
        out = log_lines(tag, int(qnum(q, "conns", 0, 0, 1e6)), qnum(q, "timeout", 0, 0, 30))
        return as_lines(out), out
    if cmd == "quit":
        threading.Timer(0.1, lambda: os._exit(0)).start()
        return ["ok quit"], {"ok": True, "cmd": "quit"}
    return (["error unknown command %s" % cmd], {"ok": False, "error": "unknown command"})


def serve_control(sock):
    try:
        sock.settimeout(5.0)
        head = b""
        while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < MAX_HEAD:
            data = sock.recv(4096)
            if not data:
                return
            head += data
        line = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        target = parts[1] if len(parts) > 1 else "/"
        lines, obj = control(target)
        if "json=1" in urllib.parse.urlsplit(target).query.split("&"):
            body = json.dumps(obj).encode()
            ctype = "application/json"
        else:
            body = ("\n".join(lines) + "\n").encode()
            ctype = "text/plain"
        sock.settimeout(5.0)
        sock.sendall(("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n" % (ctype, len(body))).encode() + body)
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def control_loop(srv):
    while True:
        try:
            sock, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            time.sleep(0.05)
            continue
        threading.Thread(target=serve_control, args=(sock,), daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description="luws restart test peer")
    ap.add_argument("--lifetime", type=float, default=300.0)
    args = ap.parse_args()
    ppid = peer.on_signals_exit()
    ctl = peer.listen()
    ws = bind_listener(0)
    STATE["listener"] = ws
    STATE["port"] = ws.getsockname()[1]
    life = threading.Timer(max(args.lifetime, 1.0), lambda: os._exit(0))
    life.daemon = True
    life.start()
    threading.Thread(target=accept_loop, daemon=True).start()
    threading.Thread(target=control_loop, args=(ctl,), daemon=True).start()
    sys.stdout.write("CONTROL %d\n" % ctl.getsockname()[1])
    sys.stdout.flush()
    peer.announce(STATE["port"], ppid)
    while True:
        time.sleep(1.0)


if __name__ == "__main__":
    main()
