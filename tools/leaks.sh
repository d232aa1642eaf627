#!/usr/bin/env bash
# Leak and resource checks: descriptors, RSS and valgrind over many wsopen/wsclose cycles,
# one count per check; exit status non-zero when any check failed.
#
#   tools/leaks.sh          ~1 min: 10,000 wsopen/wsclose cycles + 10,000 conns left to the GC
#                           (ws://), 100 + 100 over wss://, valgrind 200 + 200 (ws://) and
#                           3 + 3 (wss://): fds unchanged, RSS within 1 MiB, 0 bytes definitely
#                           lost in the module, no memcheck error in it
#   tools/leaks.sh --long   ~10 min: 100,000 + 100,000 (ws://), 2,000 + 2,000 (wss://),
#                           valgrind 2,000 + 2,000 (ws://) and 20 + 20 (wss://)
#
# The checks live in spec/leaks/ (cycles.lua, valgrind.sh); this only sequences them. It uses
# the module at $LUWS_CPATH or target/lua51/luws.so (built when missing), and installs
# valgrind when it is missing.
# Env: LUWS_LUA (default lua5.1), LUWS_CPATH.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT" || exit 2

long=0
case "${1:-}" in
  --long) long=1 ;;
  "") ;;
  *) echo "usage: tools/leaks.sh [--long]" >&2; exit 2 ;;
esac
export LUWS_LUA=${LUWS_LUA:-lua5.1}

if [ "$long" -eq 1 ]; then
  n=100000; tls_n=2000; vg_n=2000; vg_tls_n=20
else
  n=10000; tls_n=100; vg_n=200; vg_tls_n=3
fi

if [ -z "${LUWS_CPATH:-}" ] && [ ! -f target/lua51/luws.so ]; then
  echo "=== building the module (target/lua51/luws.so is missing)"
  module lua51 native || exit 1
fi
apt_need valgrind

passed=0; failed=0; failures=()

# check NAME COMMAND...: runs it, shows its output, counts it as one check.
check() {
  local name=$1; shift
  echo "=== $name: $*"
  local start rc
  start=$(date +%s.%N)
  "$@" 2>&1
  rc=$?
  local took
  took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); echo "=== ok: $name ($took s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "=== FAIL: $name (status $rc, $took s)"
  fi
}

check "cycles ws:// x$n" "$LUWS_LUA" spec/leaks/cycles.lua "$n"
# The warm-up must reach the steady state of conns awaiting collection (~30, ~0.9 MB each
# over TLS), or the GC backlog reads as growth.
check "cycles wss:// x$tls_n" "$LUWS_LUA" spec/leaks/cycles.lua "$tls_n" --tls --warmup 200
if command -v valgrind >/dev/null 2>&1; then
  check "valgrind ws:// x$vg_n" spec/leaks/valgrind.sh "$vg_n"
  check "valgrind wss:// x$vg_tls_n" spec/leaks/valgrind.sh "$vg_tls_n" --tls
else
  echo "=== FAIL: valgrind is not installed (apt-get install valgrind)"
  failed=$((failed + 1)); failures+=("valgrind")
fi

[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
result "$passed" "$failed" leaks
[ "$failed" -eq 0 ]
