#!/usr/bin/env bash
# cross/check-softfloat.sh FILE... — fail if a MIPS object/library/executable
# contains an FPU instruction or is marked hard-float (Vera CPUs have no FPU).
set -euo pipefail
rc=0
FPU_RE='\s(lwc1|swc1|ldc1|sdc1|lwxc1|swxc1|ldxc1|sdxc1|mtc1|mfc1|mthc1|mfhc1|ctc1|cfc1|bc1[ft]l?|(add|sub|mul|div|abs|neg|mov|sqrt|cvt\.[sdlw]|trunc\.[wl]|round\.[wl]|ceil\.[wl]|floor\.[wl]|c\.[a-z]+)\.[sdw])\s'
for f in "$@"; do
  n=$(mipsel-linux-gnu-objdump -d "$f" 2>/dev/null | grep -cE "$FPU_RE" || true)
  abi=$(mipsel-linux-gnu-readelf -A "$f" 2>/dev/null | grep -m1 'FP ABI' | sed 's/.*FP ABI: *//' || true)
  if [ "$n" != 0 ]; then echo "HARD-FLOAT: $f has $n FPU instructions" >&2; rc=1; fi
  case "$abi" in *[Hh]ard*|*[Dd]ouble*|*[Ss]ingle*|*64*) echo "HARD-FLOAT ABI: $f ($abi)" >&2; rc=1;; esac
done
[ $rc = 0 ] && echo "soft-float check: $# file(s), no FPU instructions"
exit $rc
