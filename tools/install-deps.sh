#!/usr/bin/env bash
# Installs what building and testing luws needs on a fresh Debian 12 machine (root):
# Lua interpreters and busted, LuaSocket, OpenSSL headers for native-tls, the openssl CLI for
# test certificates, Python `websockets` for the independent peer, strace/valgrind for checks,
# tinyproxy and microsocks (real HTTP CONNECT and SOCKS5 proxies).
# Idempotent and quiet; `--demo` installs only what the demo needs.
set -euo pipefail

demo_pkgs=(lua5.1 pkg-config libssl-dev python3-pip)
test_pkgs=(lua5.2 lua5.3 lua5.4 luajit liblua5.1-0-dev liblua5.2-dev liblua5.3-dev liblua5.4-dev libluajit-5.1-dev lua-busted lua-socket lua-sec luarocks openssl strace valgrind
  make gcc libc6-dev
  tinyproxy microsocks)  # real proxies for spec/proxy_spec.lua

pkgs=("${demo_pkgs[@]}")
[ "${1:-}" = "--demo" ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py=${LUWS_PYTHON:-python3}
if ! "$py" -c 'import websockets' 2>/dev/null; then
  "$py" -m pip install -q websockets 2>/dev/null || "$py" -m pip install -q --break-system-packages websockets
fi

command -v cargo >/dev/null || { echo "install-deps: cargo (Rust) is required" >&2; exit 1; }
