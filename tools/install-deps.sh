#!/usr/bin/env bash
# Installs what building and testing luws needs on a fresh Debian 12 machine (root): the Debian
# packages below and those of every Lua version in tools/lib.sh's table, Python `websockets`,
# Node.js and its `ws` package (pinned, into target/node for spec/servers/node_echo.js).
# A Lua that Debian lacks (5.5) is built by tools/lua-build.sh when a test first needs it.
# Idempotent and quiet; `--demo` installs only what the demo needs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

demo_pkgs=(
  lua5.1          # the demo's interpreter
  pkg-config      # native-tls finds OpenSSL
  libssl-dev
  python3-pip     # Python `websockets`, the independent echo peer
)
test_pkgs=(
  $(lua_apt_packages)  # every apt row of the Lua-version table: interpreter and headers
  lua-busted      # the spec runner; its Lua files are also what a built Lua runs
  lua-socket
  lua-sec
  luarocks        # tools/luarocks.sh
  openssl         # test certificates
  strace          # bench: syscalls per idle wsreceive
  valgrind        # tools/leaks.sh
  make
  gcc             # Lua 5.5 and its C modules (tools/lua-build.sh)
  libc6-dev
  curl            # tools/lua-build.sh fetches Debian source tarballs
  tinyproxy       # real HTTP CONNECT and SOCKS5 proxies for spec/proxy_spec.lua
  microsocks
)

pkgs=("${demo_pkgs[@]}")
[ "${1:-}" = "--demo" ] || pkgs+=("${test_pkgs[@]}")
apt_need "${pkgs[@]}"

py=${LUWS_PYTHON:-python3}
if ! "$py" -c 'import websockets' 2>/dev/null; then
  "$py" -m pip install -q websockets 2>/dev/null || "$py" -m pip install -q --break-system-packages websockets
fi

if [ "${1:-}" != "--demo" ]; then
  # Node: Debian's, unless the machine has one (a Node distribution that bundles npm conflicts
  # with Debian's npm package).
  if ! command -v node >/dev/null; then apt_need nodejs npm
  elif ! command -v npm >/dev/null; then apt_need npm; fi
  # `ws`, pinned, project-local (git-ignored): spec/support/servers.lua puts it on NODE_PATH.
  ws_version=8.23.0
  node_dir=$LUWS_ROOT/target/node
  if [ "$(node -p "require('$node_dir/node_modules/ws/package.json').version" 2>/dev/null)" != "$ws_version" ]; then
    echo "npm: installing ws@$ws_version into $node_dir" >&2
    npm install --prefix "$node_dir" --no-save --no-package-lock --no-audit --no-fund \
      --loglevel=error "ws@$ws_version" >/dev/null
  fi
fi

command -v cargo >/dev/null || { echo "install-deps: cargo (Rust) is required" >&2; exit 1; }
