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
  * Every 101 carries an extra header, X-Luws-Peer: websockets/<version>.
  * Path /headers: the first message is the request's headers, "name: value" lines.
  * Path /redirect?code=N&to=URL: answers N with Location URL (no upgrade);
    /redirect?code=N&to=self: Location is the request's own URL (a loop).

Usage: python3 echo_server.py [--tls CERT KEY]
"""

import peer

peer.arm_startup_alarm()  # cancelled once the PORT line is out

import argparse
import asyncio
import http
import logging
import ssl
import urllib.parse

import websockets
from websockets.asyncio.server import serve

SUBPROTOCOLS = ("chat", "superchat")


def select_subprotocol(connection, offered):
    for p in offered:
        if p in SUBPROTOCOLS:
            return p
    return None


def process_request(connection, request):
    path, _, query = request.path.partition("?")
    if path != "/redirect":
        return None
    q = urllib.parse.parse_qs(query)
    to = q.get("to", ["/"])[0]
    if to == "self":
        to = request.path
    response = connection.respond(http.HTTPStatus(int(q.get("code", ["302"])[0])), "")
    response.headers["Location"] = to
    return response


def process_response(connection, request, response):
    if response.status_code == 101:
        response.headers["X-Luws-Peer"] = "websockets/" + websockets.__version__


async def handler(ws):
    path = ws.request.path.split("?", 1)[0]
    if path == "/close":
        await ws.close(4001, "server-close")
        return
    if path == "/headers":
        await ws.send("".join("%s: %s\n" % kv for kv in ws.request.headers.raw_items()))
    async for message in ws:
        await ws.send(message)


async def main():
    ap = argparse.ArgumentParser(description="luws echo test server (websockets)")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()
    ctx = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])

    ppid = peer.on_signals_exit()

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
        process_request=process_request,
        process_response=process_response,
    ) as server:
        peer.announce(server.sockets[0].getsockname()[1], ppid)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
