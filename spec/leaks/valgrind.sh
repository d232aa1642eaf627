#!/usr/bin/env bash
# Runs spec/leaks/cycles.lua under valgrind memcheck and reports what is attributable to the
# luws module: "definitely lost" bytes (and, for information, "possibly lost") in leak records
# whose stack passes through luws.so, and memcheck errors (invalid reads, uninitialised values)
# with a luws.so frame. Everything else (Debian's lua5.1, libc, OpenSSL's one-time state) is
# ignored. Exit status 1 when the module lost any byte definitely or had any memcheck error.
#
# Usage: spec/leaks/valgrind.sh [N] [cycles.lua options...]   (from any directory)
#        spec/leaks/valgrind.sh --parse LOG                   (summarise an existing log)
#   N defaults to 200 cycles per phase; e.g. spec/leaks/valgrind.sh 3 --tls
# Env: LUWS_LUA (default lua5.1), VALGRIND_LOG (keep the full log at this path).
set -u
[ "${1:-}" = "--parse" ] && set -- --parse "$(readlink -f "$2")"
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--parse" ]; then # only summarise an existing log (to check this script)
  log=$2
  VALGRIND_LOG=$log
  status=0
else
  n=${1:-200}
  [ $# -gt 0 ] && shift
  lua=${LUWS_LUA:-lua5.1}
  if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind: not installed (apt-get install valgrind)" >&2
    exit 2
  fi
  log=${VALGRIND_LOG:-$(mktemp "${TMPDIR:-/tmp}/luws-valgrind.XXXXXX")}
  # The Lua process only (its test server children run natively). RSS is meaningless under
  # valgrind, so only the descriptor check of cycles.lua stays strict.
  valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite,possible --num-callers=40 --log-file="$log" \
    "$lua" spec/leaks/cycles.lua "$n" --warmup 2 --rss-limit 10000000 --quiet "$@"
  status=$?
fi

# Leak records: "==PID== 120 (64 direct, 56 indirect) bytes in 1 blocks are definitely lost in
# loss record 3 of 9", then the stack, then a bare "==PID== " line.
summary=$(awk '
  /^==[0-9]+== HEAP SUMMARY/ { heap = 1 }
  /^==[0-9]+== [0-9,]+ .*bytes in [0-9,]+ blocks are (definitely|possibly) lost/ {
    rec = 1; mod = 0
    kind = ($0 ~ /definitely/) ? "definite" : "possible"
    bytes = $2; gsub(",", "", bytes)
    blocks = $0; sub(/.* bytes in /, "", blocks); sub(/ blocks.*/, "", blocks); gsub(",", "", blocks)
    next
  }
  !heap && /^==[0-9]+== [A-Z]/ && !/Memcheck|Copyright|Using Valgrind|Command:|Parent PID/ {
    err = 1; errmod = 0; next
  }
  /luws\.so|libluws/ { if (rec) mod = 1; if (err) errmod = 1 }
  /^==[0-9]+== $/ {
    if (rec && mod) { b[kind] += bytes; k[kind] += blocks }
    if (err && errmod) errors++
    rec = 0; err = 0
  }
  /ERROR SUMMARY/ { total = $4 }
  END {
    printf "definitely lost in luws: %d bytes in %d blocks\n", b["definite"], k["definite"]
    printf "possibly lost in luws: %d bytes in %d blocks (informational)\n", b["possible"], k["possible"]
    printf "memcheck errors with a luws frame: %d (all errors: %s)\n", errors, total
    printf "RESULT %d %d\n", b["definite"], errors
  }' "$log")
echo "$summary" | grep -v '^RESULT'
grep -E "^==[0-9]+== +(definitely|indirectly|possibly) lost:" "$log" | sed 's/^==[0-9]*== */whole process: /'
read -r _ lost errors <<<"$(echo "$summary" | grep '^RESULT')"
[ -n "${VALGRIND_LOG:-}" ] || rm -f "$log"
if [ "$status" -ne 0 ]; then
  echo "cycles.lua under valgrind failed (status $status)"
  exit 1
fi
[ "$lost" -eq 0 ] && [ "$errors" -eq 0 ]
