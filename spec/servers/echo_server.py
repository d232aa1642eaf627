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
    messages up to 64 MiB; no server-initiated pings (deterministic tests).
  * permessage-deflate (RFC 7692) is the library default (negotiated only when
    offered: server and client windows 12 bits); the query string sets it per
    connection: deflate=0 (off), server_no_context_takeover=1,
    client_no_context_takeover=1, server_max_window_bits=N (9-15),
    client_max_window_bits=N (8-15).
  * report=1: instead of echoing, answers each message with one text line about
    how it came over the wire (its frames as received, before inflating):
      "opcode=1 length=<bytes> frames=<n> rsv1=<0|1 per frame> wire=<payload bytes>"
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
import collections
import http
import logging
import ssl
import urllib.parse

import websockets
from websockets.asyncio.server import serve
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

SUBPROTOCOLS = ("chat", "superchat")


def select_subprotocol(connection, offered):
    for p in offered:
        if p in SUBPROTOCOLS:
            return p
    return None


DEFLATE_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
DEFLATE_BITS = ("server_max_window_bits", "client_max_window_bits")


def deflate_extensions(q):
    """The extension list for this connection's query, or None for the default."""
    if q.get("deflate", [""])[0] == "0":
        return []
    kw = {k: True for k in DEFLATE_FLAGS if q.get(k, [""])[0] == "1"}
    kw.update({k: int(q[k][0]) for k in DEFLATE_BITS if k in q})
    if not kw:
        return None
    return [ServerPerMessageDeflateFactory(compress_settings={"memLevel": 5}, **kw)]


class WireRecorder(Extension):
    """Sees every frame as received (it is last in the list: decoding runs in reverse)
    and queues, per complete data message, its rsv1 bits and payload bytes."""

    name = "x-luws-wire-recorder"

    def __init__(self):
        self.reports = collections.deque()
        self.current = None

    def decode(self, frame, *, max_size=None):
        op = frame.opcode.value
        if op in (1, 2):
            self.current = [op, [], 0]
        if self.current is not None and op in (0, 1, 2):
            self.current[1].append("1" if frame.rsv1 else "0")
            self.current[2] += len(frame.data)
            if frame.fin:
                self.reports.append(self.current)
                self.current = None
        return frame

    def encode(self, frame):
        return frame


def process_request(connection, request):
    path, _, query = request.path.partition("?")
    q = urllib.parse.parse_qs(query)
    extensions = deflate_extensions(q)
    if extensions is not None:
        # Read by the handshake's negotiation, which runs after this hook.
        connection.protocol.available_extensions = extensions
    if path != "/redirect":
        return None
    to = q.get("to", ["/"])[0]
    if to == "self":
        to = request.path
    response = connection.respond(http.HTTPStatus(int(q.get("code", ["302"])[0])), "")
    response.headers["Location"] = to
    return response


def process_response(connection, request, response):
    if response.status_code == 101:
        response.headers["X-Luws-Peer"] = "websockets/" + websockets.__version__
        if "report=1" in request.path.partition("?")[2].split("&"):
            # Before the 101 goes out, so no frame can be parsed without it.
            connection.luws_wire = WireRecorder()
            connection.protocol.extensions.append(connection.luws_wire)


async def handler(ws):
    path = ws.request.path.split("?", 1)[0]
    if path == "/close":
        await ws.close(4001, "server-close")
        return
    if path == "/headers":
        await ws.send("".join("%s: %s\n" % kv for kv in ws.request.headers.raw_items()))
    wire = getattr(ws, "luws_wire", None)
    async for message in ws:
        if wire is None:
            await ws.send(message)
            continue
        op, rsv1, nbytes = wire.reports.popleft() if wire.reports else (0, [], -1)
        size = len(message.encode() if isinstance(message, str) else message)
        await ws.send("opcode=%d length=%d frames=%d rsv1=%s wire=%d"
                      % (op, size, len(rsv1), "".join(rsv1), nbytes))


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
