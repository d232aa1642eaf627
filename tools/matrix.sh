#!/usr/bin/env bash
# The Lua version matrix: the whole busted suite (tools/spec.sh) on each Lua version of the
# table in tools/lib.sh, each against its own build of the module.
#
#   tools/matrix.sh [lua51 lua52 …]   (default: every version of the table)
#
# Modules are built where tools/lib.sh's `module` puts them (the versions other than 5.1
# share target/matrix/build); busted's TAP output goes to target/matrix/<ver>/busted.tap.
# Env: BUSTED_ARGS (extra busted arguments, e.g. "--filter=wssend"), MATRIX_SKIP (versions
# to leave out), MATRIX_TLS (the TLS
# backend, default native), MATRIX_TIMEOUT (seconds one busted run may take, default 600).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT" || exit 2
versions=${*:-$LUA_VERSIONS}
# MATRIX_SKIP: versions another stage already ran (make test: Lua 5.1 is the spec stage's).
for skip in ${MATRIX_SKIP:-}; do versions=$(tr ' ' '\n' <<<"$versions" | grep -vx "$skip" | tr '\n' ' '); done
for v in $versions; do lua_vars "$v" >/dev/null || exit 2; done

summary=""
bad=0
t_all=$(date +%s)
for v in $versions; do
  dir="target/matrix/$v"
  mkdir -p "$dir"
  rm -f "$dir/result"
  t0=$(date +%s)
  echo "== $v"
  # shellcheck disable=SC2086 # BUSTED_ARGS is a list of words
  LUWS_RESULT="$dir/result" SPEC_TAP="$dir/busted.tap" SPEC_TIMEOUT=${MATRIX_TIMEOUT:-600} \
    tools/spec.sh --module "$v" "${MATRIX_TLS:-native}" ${BUSTED_ARGS:-} 2>&1 | sed 's/^/    /'
  read -r pass fail note <"$dir/result"
  result "$pass" "$fail" "$v" >/dev/null
  [ "$fail" -eq 0 ] || bad=1
  line="$v: $pass passed, $fail failed, $(($(date +%s) - t0)) s; $note"
  summary="$summary$line\n"
  echo "$line"
done
echo "== matrix ($(($(date +%s) - t_all)) s)"
printf "%b" "$summary"
[ "$bad" -eq 0 ]
