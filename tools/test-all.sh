#!/usr/bin/env bash
# Every test of the project, in stages, with one summary line at the end. Each stage's own
# `N passed, N failed` line is added up; a stage without one counts as one test.
# Stages are defined in the Makefile; this only sequences them and sums the results.
set -uo pipefail
cd "$(dirname "$0")/.."
stages=(${LUWS_STAGES:-deps lint unit spec spec-rustls autobahn leaks bench-smoke matrix luarocks cross-fast})
total_p=0; total_f=0; failed_stages=()
for s in "${stages[@]}"; do
  echo "=== stage: $s"
  log=$(mktemp)
  start=$(date +%s)
  make --no-print-directory "$s" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # Sum every "N passed, N failed" (busted, autobahn) or "N passed; N failed" (cargo) line.
  counts=$(grep -oE '(^|[^0-9])[0-9]+ passed[,;] [0-9]+ failed' "$log" | sed -E 's/^[^0-9]*([0-9]+) passed[,;] ([0-9]+) failed/\1 \2/' \
    | awk '{p+=$1; f+=$2; n++} END {if (n) print p, f}')
  if [ -n "$counts" ]; then
    p=${counts% *}; f=${counts#* }
  else
    p=$(( rc == 0 ? 1 : 0 )); f=$(( rc == 0 ? 0 : 1 ))
  fi
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  total_p=$((total_p + p)); total_f=$((total_f + f))
  [ "$rc" -eq 0 ] || failed_stages+=("$s")
  echo "=== stage $s: rc=$rc, $p passed, $f failed, $(( $(date +%s) - start )) s"
  rm -f "$log"
done
[ ${#failed_stages[@]} -eq 0 ] || echo "failed stages: ${failed_stages[*]}"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ] && [ ${#failed_stages[@]} -eq 0 ]
