#!/usr/bin/env bash
# The main job: run lua/examples/echo.lua against a local echo server that this script starts
# (Python `websockets`, an independent implementation) and stops again, by its PID.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT"
start_peer python3 spec/servers/echo_server.py
trap stop_peer EXIT
LUA_CPATH="./target/lua51/?.so;;" lua5.1 lua/examples/echo.lua "ws://127.0.0.1:$PEER_PORT/"
