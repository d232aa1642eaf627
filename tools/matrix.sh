#!/usr/bin/env bash
# The Lua version matrix: the whole busted suite (tools/spec.sh) on each Lua version of the
# table in tools/lib.sh, each against its own build of the module.
#
#   tools/matrix.sh [lua51 lua52 …]   (default: every version of the table)
#
# First every module is built (and every interpreter the table builds), one after the other:
# cargo keeps both cores busy. Then the suites run MATRIX_JOBS at a time: a suite spends most
# of its time waiting on peers and deadlines (about 20 s of CPU in 2 minutes), so two at once
# take little longer than one. Specs named in MATRIX_SERIAL are left out of those runs and run
# afterwards, one version at a time, with nothing beside them.
#
# Modules are built where tools/lib.sh's `module` puts them (the versions other than 5.1
# share target/matrix/build); busted's TAP output goes to target/matrix/<ver>/busted.tap, the
# rest of tools/spec.sh's output to busted.log (busted-serial.* for the serial part).
# Env: BUSTED_ARGS (extra busted arguments, e.g. "--filter=wssend"), MATRIX_SKIP (versions
# to leave out), MATRIX_TLS (the TLS backend, default native), MATRIX_TIMEOUT (seconds one
# busted run may take, default 600), MATRIX_JOBS (suites at once, default 2), MATRIX_SERIAL
# (spec files run apart, after the others; default none).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LUWS_ROOT" || exit 2
versions=${*:-$LUA_VERSIONS}
# MATRIX_SKIP: versions another stage already ran (make test: Lua 5.1 is the spec stage's).
for skip in ${MATRIX_SKIP:-}; do versions=$(tr ' ' '\n' <<<"$versions" | grep -vx "$skip" | tr '\n' ' '); done
for v in $versions; do lua_vars "$v" >/dev/null || exit 2; done
tls=${MATRIX_TLS:-native}
jobs=${MATRIX_JOBS:-2}
serial=${MATRIX_SERIAL:-}
t_all=$(date +%s)

# busted --exclude-pattern takes a Lua pattern per file; the serial specs' names, escaped.
excludes=()
for f in $serial; do
  [ -f "$f" ] || { echo "MATRIX_SERIAL: no such spec file: $f" >&2; exit 2; }
  excludes+=("--exclude-pattern=$(basename "$f" .lua | sed 's/[^[:alnum:]_]/%&/g')")
done

# ----------------------------------------------------------------------------- builds
declare -A cpath build_s
built=()
for v in $versions; do
  dir="target/matrix/$v"
  mkdir -p "$dir"
  rm -f "$dir"/result "$dir"/busted*
  t0=$(date +%s)
  if lua_ensure "$v" && module "$v" "$tls"; then
    cpath[$v]="$MODULE_DIR/?.so"
    built+=("$v")
  else
    echo "0 1 busted ($v, $tls): build failed" >"$dir/result"
  fi
  build_s[$v]=$(($(date +%s) - t0))
  echo "== $v: built in ${build_s[$v]} s"
done

# ------------------------------------------------------------------------ busted runs
# run_suite V NAME [busted arguments…]: one busted run, TAP in target/matrix/V/NAME.tap, the
# rest in NAME.log, its count appended to the version's result.
run_suite() {
  local v=$1 name=$2
  shift 2
  # shellcheck disable=SC2086 # BUSTED_ARGS is a list of words
  LUWS_RESULT="target/matrix/$v/result" SPEC_TAP="target/matrix/$v/$name.tap" \
    SPEC_TIMEOUT=${MATRIX_TIMEOUT:-600} tools/spec.sh "$v" "${cpath[$v]}" ${BUSTED_ARGS:-} "$@" \
    >"target/matrix/$v/$name.log" 2>&1
}
declare -A pid_of start busted_s
finished() { # waits for one run to end; prints its version's output, indented
  local pid v
  wait -n -p pid
  v=${pid_of[$pid]}
  busted_s[$v]=$(($(date +%s) - start[$v]))
  echo "== $v: busted in ${busted_s[$v]} s"
  sed 's/^/    /' "target/matrix/$v/busted.log"
  running=$((running - 1))
}
t_runs=$(date +%s)
running=0
for v in "${built[@]}"; do
  [ "$running" -lt "$jobs" ] || finished
  start[$v]=$(date +%s)
  run_suite "$v" busted "${excludes[@]}" &
  pid_of[$!]=$v
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do finished; done
t_serial=$(date +%s)
if [ -n "$serial" ]; then
  for v in "${built[@]}"; do
    t0=$(date +%s)
    # shellcheck disable=SC2086 # the serial specs are a list of files
    run_suite "$v" busted-serial $serial
    echo "== $v: serial specs ($serial) in $(($(date +%s) - t0)) s"
    sed 's/^/    /' "target/matrix/$v/busted-serial.log"
  done
fi

# ---------------------------------------------------------------------------- summary
bad=0
summary=""
for v in $versions; do
  read -r pass fail < <(awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }' "target/matrix/$v/result")
  result "$pass" "$fail" "$v" >/dev/null
  [ "$fail" -eq 0 ] || bad=1
  summary="$summary$v: $pass passed, $fail failed; build ${build_s[$v]} s, busted ${busted_s[$v]:--} s\n"
done
now=$(date +%s)
echo "== matrix ($((now - t_all)) s: builds $((t_runs - t_all)) s, suites $jobs at a time" \
  "$((t_serial - t_runs)) s${serial:+, serial specs $((now - t_serial)) s})"
printf "%b" "$summary"
[ "$bad" -eq 0 ]
