#!/usr/bin/env bash
# Runs the busted suite with one Lua interpreter against one built module and ends with the
# plain summary line `N passed, N failed`. Usage: tools/spec.sh [lua5.1] [cpath-pattern] [specs…]
set -uo pipefail
lua=${1:-lua5.1}
export LUWS_CPATH=${2:-./target/lua51/?.so}
shift 2 2>/dev/null || shift $#
out=$(mktemp)
"$lua" /usr/bin/busted -o TAP "$@" 2>&1 | tee "$out" | grep -v '^ok ' || true
passed=$(grep -c '^ok ' "$out" || true)
failed=$(grep -c '^not ok ' "$out" || true)
errors=$(grep -c '^# Error\|^not ok.*error' "$out" || true)
total=$(grep -m1 -o '^1\.\.[0-9]*' "$out" | cut -c4- || true)
rm -f "$out"
echo "busted ($lua): $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] && [ "${total:-0}" -eq "$passed" ]
