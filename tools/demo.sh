#!/usr/bin/env bash
# The main job: run lua/examples/echo.lua against a local echo server that this script starts
# (Python `websockets`, an independent implementation) and stops again, by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
python3 spec/servers/echo_server.py >"$log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q '^PORT ' "$log" && break; sleep 0.1; done
port=$(awk '/^PORT /{print $2}' "$log")
[ -n "$port" ] || { echo "demo: echo server did not start" >&2; cat "$log" >&2; exit 1; }
LUA_CPATH="./target/lua51/?.so;;" lua5.1 lua/examples/echo.lua "ws://127.0.0.1:$port/"
