#!/usr/bin/env bash
# cross/prepare.sh [--fast] [TARGET...]
#   What the cross builds need before compiling, for these targets (default every one; --fast:
#   the CI subset): cross/install-deps.sh, then each target's sysroot (cross/sysroot.sh) or the
#   Vera userland (cross/uclibc.sh). Idempotent, as each of them is; cross/build.sh finds the
#   work done. tools/test-all.sh runs it beside stages that leave a core idle.
source "$(dirname "$0")/lib.sh"
targets=()
for a in "$@"; do
  case "$a" in --fast) targets=($FAST_TARGETS);; *) targets+=("$a");; esac
done
[ ${#targets[@]} -gt 0 ] || targets=($ALL_TARGETS)
"$CROSS_DIR/install-deps.sh"
for t in "${targets[@]}"; do
  target_vars "$t"
  if [ "$LIBC" = uclibc ]; then "$CROSS_DIR/uclibc.sh"; else "$CROSS_DIR/sysroot.sh" "$t"; fi
done
