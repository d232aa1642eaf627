#!/usr/bin/env bash
# Runs spec/leaks/cycles.lua under valgrind memcheck. The verdict is valgrind's own exit code:
# any memcheck error (invalid read, uninitialised value) or any block definitely lost fails
# the run (--error-exitcode), unless spec/leaks/valgrind.supp suppresses it: findings outside
# luws (the interpreter, libc, OpenSSL) that are not ours to fix go there, each with the
# reason. Prints valgrind's leak and error summary; on a finding, its records.
#
# Usage: spec/leaks/valgrind.sh [N] [cycles.lua options...]   (from any directory)
#   N defaults to 200 cycles per phase; e.g. spec/leaks/valgrind.sh 3 --tls
# Env: LUWS_LUA (default lua5.1), VALGRIND_LOG (keep the full log at this path).
set -u
cd "$(dirname "$0")/../.."
n=${1:-200}
[ $# -gt 0 ] && shift
lua=${LUWS_LUA:-lua5.1}
if ! command -v valgrind >/dev/null 2>&1; then
  echo "valgrind: not installed (apt-get install valgrind)" >&2
  exit 2
fi
log=${VALGRIND_LOG:-$(mktemp "${TMPDIR:-/tmp}/luws-valgrind.XXXXXX")}
found=99 # valgrind's exit status when it found something
# The Lua process only (its test server children run natively). RSS is meaningless under
# valgrind, so only the descriptor check of cycles.lua stays strict.
valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite,possible --num-callers=40 --error-exitcode=$found \
  --suppressions=spec/leaks/valgrind.supp --log-file="$log" \
  "$lua" spec/leaks/cycles.lua "$n" --warmup 2 --rss-limit 10000000 --quiet "$@"
status=$?
grep -E '^==[0-9]+== +((definitely|indirectly|possibly) lost|ERROR SUMMARY):' "$log" |
  sed 's/^==[0-9]*== *//'
case $status in
  0) [ -n "${VALGRIND_LOG:-}" ] || rm -f "$log" ;;
  "$found")
    # Each record: its first line up to the blank "==PID== " line that ends it.
    sed -n '/definitely lost in loss record\|^==[0-9]*== [A-Z][a-z]* \(read\|write\)\|^==[0-9]*== Conditional\|^==[0-9]*== Use of uninit/,/^==[0-9]*== $/p' \
      "$log" | head -120
    echo "valgrind found memcheck errors or definitely lost blocks (log: $log)" ;;
  *) echo "cycles.lua under valgrind failed (status $status; log: $log)" ;;
esac
[ "$status" -eq 0 ]
