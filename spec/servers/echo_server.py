#!/usr/bin/env python3
"""luws test peer: an independent, well-behaved WebSocket echo server.

Design criteria
  * Built on the PyPI `websockets` package (asyncio API,
    websockets.asyncio.server.serve) so luws is checked against an
    implementation it shares no code with.
  * Same process contract as bad_server.py: binds 127.0.0.1 port 0, prints
    "PORT <n> PID <pid>" once, then stdout/stderr go to /dev/null (or to
    $LUWS_SERVER_LOG); exits on SIGTERM/SIGINT, when its parent changes and
    when the reader of its stdout pipe is gone.
  * Echoes every message with its type (text as text, binary as binary),
    messages up to 64 MiB; no server-initiated pings (deterministic tests);
    permessage-deflate is left at the library default (only used if offered).
  * Path /close: closes with 4001 "server-close" right after the handshake.
  * Subprotocols: selects the first offered one of "chat", "superchat";
    other offers are not rejected, just not selected.

Usage: python3 echo_server.py [--tls CERT KEY]
"""

import signal

signal.alarm(15)  # startup watchdog, cancelled once the PORT line is out

import argparse
import asyncio
import logging
import os
import select
import ssl
import stat
import sys
import threading
import time

from websockets.asyncio.server import serve

SUBPROTOCOLS = ("chat", "superchat")


def select_subprotocol(connection, offered):
    for p in offered:
        if p in SUBPROTOCOLS:
            return p
    return None


async def handler(ws):
    path = ws.request.path.split("?", 1)[0]
    if path == "/close":
        await ws.close(4001, "server-close")
        return
    async for message in ws:
        await ws.send(message)


def watch_parent(ppid, pipe_fd):
    """Exit when the parent changes or the reader of our stdout pipe is gone
    (so a Lua parent's pclose() never waits for long)."""
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


def stdout_pipe():
    try:
        if stat.S_ISFIFO(os.fstat(1).st_mode):
            return os.dup(1)
    except OSError:
        pass
    return None


async def main():
    ap = argparse.ArgumentParser(description="luws echo test server (websockets)")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    ctx = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: os._exit(0))
    ppid = os.getppid()

    logging.basicConfig(level=logging.CRITICAL)
    async with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=ctx,
        max_size=64 * 1024 * 1024,
        max_queue=16,
        ping_interval=None,
        select_subprotocol=select_subprotocol,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write("PORT %d PID %d\n" % (port, os.getpid()))
        sys.stdout.flush()
        signal.alarm(0)
        threading.Thread(target=watch_parent, args=(ppid, stdout_pipe()), daemon=True).start()
        out = os.open(os.environ.get("LUWS_SERVER_LOG") or os.devnull,
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
