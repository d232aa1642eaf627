#!/usr/bin/env bash
# Every test of the project, in stages (the Makefile's targets), then a table of each stage's
# count and time and one summary line `N passed, N failed`. A stage records its count with
# `result` (tools/lib.sh) in the file $LUWS_RESULT that this sets for it; a stage that records
# nothing counts as one test, passed or failed by its exit status.
#   LUWS_STAGES="spec matrix" tools/test-all.sh     only those stages
# The cross stage's preparation (apt, the sysroots, the Vera userland's C builds: minutes of
# one core) runs at low priority beside the stages from $BESIDE_FROM on, which mostly wait on
# a peer or a tool and leave a core idle; the cross stage waits for it. The stages with the
# 50 ms host-stall bounds (spec, spec-rustls, matrix) come before, with nothing beside them.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT" || exit 2
stages=(${LUWS_STAGES:-deps lint unit spec spec-rustls matrix autobahn leaks bench-smoke luarocks cross-fast})
BESIDE_FROM=autobahn
mkdir -p target/results
total_p=0; total_f=0; failed_stages=(); rows=(); t_all=$(date +%s); prep_pid=""
for s in "${stages[@]}"; do
  if [ "$s" = "$BESIDE_FROM" ] && [[ " ${stages[*]} " == *" cross-fast "* ]]; then
    echo "=== beside: cross/prepare.sh --fast (log: target/results/cross-prepare.log)"
    # In a process group of its own, so that an interrupted run ends it with all it started.
    setsid nice -n 19 cross/prepare.sh --fast >target/results/cross-prepare.log 2>&1 &
    prep_pid=$!
    trap '[ -z "$prep_pid" ] || kill -- "-$prep_pid" 2>/dev/null' EXIT
  fi
  if [ "$s" = cross-fast ] && [ -n "$prep_pid" ]; then
    # A failed preparation is redone (and reported) by the stage itself.
    wait "$prep_pid" || { echo "=== cross/prepare.sh failed:"; tail -20 target/results/cross-prepare.log; }
    prep_pid=""
  fi
  echo "=== stage: $s"
  export LUWS_RESULT="$LUWS_ROOT/target/results/$s"
  rm -f "$LUWS_RESULT"
  start=$(date +%s)
  make --no-print-directory "$s"
  rc=$?
  took=$(( $(date +%s) - start ))
  if [ -s "$LUWS_RESULT" ]; then
    read -r p f < <(awk '{ p += $1; f += $2 } END { print p, f }' "$LUWS_RESULT")
  else
    p=$(( rc == 0 ? 1 : 0 )); f=$(( rc == 0 ? 0 : 1 ))
  fi
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  total_p=$((total_p + p)); total_f=$((total_f + f))
  [ "$rc" -eq 0 ] || failed_stages+=("$s")
  rows+=("$(printf '%-12s %4s %7s %7s %6s s' "$s" "$rc" "$p" "$f" "$took")")
  echo "=== stage $s: rc=$rc, $took s"
done
echo "=== stages ($(( ($(date +%s) - t_all) / 60 )) min $(( ($(date +%s) - t_all) % 60 )) s)"
printf '%-12s %4s %7s %7s %8s\n' stage rc passed failed time
printf '%s\n' "${rows[@]}"
[ ${#failed_stages[@]} -eq 0 ] || echo "failed stages: ${failed_stages[*]}"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ] && [ ${#failed_stages[@]} -eq 0 ]
