"""luws test peers: the process plumbing they share (Python 3.11 stdlib only).

Used by bad_server.py, fake_luup.py, sockproxy_relay.py, stream_peer.py and
restart_peer.py (serve_forever; the last two also take the frame helpers at the
end) and echo_server.py (on_signals_exit + announce, its listener is asyncio's).  The
contract spec/support/servers.lua relies on:
  * listen on 127.0.0.1 port 0 and print exactly "PORT <n> PID <pid>" once;
    after that stdout/stderr go to $LUWS_SERVER_LOG (appended) or /dev/null,
    so a pipe that nobody reads can never block the peer;
  * never outlive the test run: exit on SIGTERM/SIGINT/SIGHUP, when the parent
    process changes (checked every second), when nobody holds the read end of
    the stdout pipe any more (so pclose() in a Lua parent never waits long),
    and if the PORT line is not out 15 s after arm_startup_alarm();
  * one daemon thread per accepted connection, TCP_NODELAY set.
"""

import os
import select
import signal
import socket
import stat
import sys
import threading
import time

STARTUP = 15  # seconds allowed from arm_startup_alarm() to the PORT line


def arm_startup_alarm():
    """SIGALRM (default action: exit) unless announce() runs within STARTUP s."""
    signal.alarm(STARTUP)


def on_signals_exit():
    """Exit at once on SIGTERM/SIGINT/SIGHUP; returns the parent pid to watch."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: os._exit(0))
    return os.getppid()


def stdout_pipe():
    """A dup of stdout when it is a pipe (else None), kept after quiet_output()."""
    try:
        if stat.S_ISFIFO(os.fstat(1).st_mode):
            return os.dup(1)
    except OSError:
        pass
    return None


def watchdog(ppid, pipe_fd):
    """Exit when the parent changes or the reader of our stdout pipe is gone."""
    poller = None
    if pipe_fd is not None:
        poller = select.poll()
        poller.register(pipe_fd, 0)  # POLLERR/POLLHUP are always reported
    while True:
        if poller is not None:
            if poller.poll(1000):
                os._exit(0)
        else:
            time.sleep(1.0)
        if os.getppid() != ppid:
            os._exit(0)


def quiet_output():
    """Send stdout and stderr to $LUWS_SERVER_LOG (appended) or /dev/null."""
    out = os.open(os.environ.get("LUWS_SERVER_LOG") or os.devnull,
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def announce(port, ppid):
    """Print the PORT line, cancel the startup alarm, start the watchdog, go quiet."""
    sys.stdout.write("PORT %d PID %d\n" % (port, os.getpid()))
    sys.stdout.flush()
    signal.alarm(0)
    threading.Thread(target=watchdog, args=(ppid, stdout_pipe()), daemon=True).start()
    quiet_output()


def listen():
    """A listening socket on 127.0.0.1, port chosen by the kernel."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    srv.settimeout(1.0)
    return srv


def serve_forever(handler, before_start=None):
    """The whole life of a threaded peer: signals, listen, announce, accept.

    handler(sock) runs in its own daemon thread per connection;
    before_start(sock), if given, runs in the accepting thread first."""
    ppid = on_signals_exit()
    srv = listen()
    announce(srv.getsockname()[1], ppid)
    while True:
        try:
            sock, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            time.sleep(0.05)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if before_start is not None:
            before_start(sock)
        threading.Thread(target=handler, args=(sock,), daemon=True).start()


# ---------------------------------------------------------------- frames (the small peers)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    """Sec-WebSocket-Accept for a client's key (RFC 6455 §4.2.2)."""
    import base64
    import hashlib
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(opcode, payload):
    """A final, unmasked frame as a server sends it."""
    import struct
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def take_frame(buf):
    """Removes one complete client frame from the front of `buf` (a bytearray) and returns
    (opcode, unmasked payload), or None while the frame is incomplete."""
    import struct
    if len(buf) < 2:
        return None
    op, n, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
    masked = buf[1] & 0x80
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", bytes(buf[2:4]))[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
    key = b""
    if masked:
        if len(buf) < pos + 4:
            return None
        key, pos = bytes(buf[pos:pos + 4]), pos + 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    del buf[:pos + n]
    return op, payload

