#!/usr/bin/env bash
# cross/all.sh [--fast] [--probe] [TARGET...]
#   Builds and verifies every target (default) or the fast CI subset
#   (--fast: aarch64-unknown-linux-gnu and mipsel-unknown-linux-uclibc),
#   printing a timing table. --probe uses the throwaway crate in cross/probe.
#   Exit status 0 only if every target built and verified.
source "$(dirname "$0")/lib.sh"
targets=(); probe=""
for a in "$@"; do
  case "$a" in --fast) targets=($FAST_TARGETS);; --probe) probe=--probe;; *) targets+=("$a");; esac
done
[ ${#targets[@]} -gt 0 ] || targets=($ALL_TARGETS)
"$CROSS_DIR/install-deps.sh"
mkdir -p "$OUT"
summary=(); passed=0; failed=0; t_all=$(date +%s)
for t in "${targets[@]}"; do
  t0=$(date +%s); st=ok
  if "$CROSS_DIR/build.sh" "$t" $probe > "$OUT/build-$t.log" 2>&1; then
    t1=$(date +%s)
    "$CROSS_DIR/verify.sh" "$t" $probe 2>&1 | tee "$OUT/verify-$t.log" || st="VERIFY FAILED"
  else
    t1=$(date +%s); st="BUILD FAILED"; tail -30 "$OUT/build-$t.log"
  fi
  t2=$(date +%s)
  so="$OUT/$t/${probe:+probe}${probe:-luws}.so"; size=$( [ -f "$so" ] && stat -c %s "$so" || echo -)
  summary+=("$(printf '%-32s %-14s %9s bytes  build %4ss  verify %4ss' "$t" "$st" "$size" $((t1-t0)) $((t2-t1)))")
  if [ "$st" = ok ]; then passed=$((passed+1)); else failed=$((failed+1)); fi
done
echo; echo "== cross summary (logs in cross/out/) =="
printf '%s\n' "${summary[@]}"
echo "total $(( $(date +%s) - t_all ))s"
result "$passed" "$failed" cross
[ "$failed" = 0 ]
