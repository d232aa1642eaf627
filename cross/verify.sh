#!/usr/bin/env bash
# cross/verify.sh TARGET [--probe]
#   Checks cross/out/TARGET/luws.so (or probe.so) statically (ELF machine and
#   float ABI, DT_NEEDED, every undefined symbol resolvable in the target
#   userland, glibc version floor, size budget) and at run time: the target's
#   own Lua 5.1 under qemu-user (CPU model of the real boards; the Vera one has
#   no FPU) runs cross/verify.lua against a loopback echo server on the host.
source "$(dirname "$0")/lib.sh"
T="$1"; shift
MODE=luws; [ "${1:-}" = --probe ] && MODE=probe
target_vars "$T"
SO="$OUT/$T/$MODE.so"
[ -f "$SO" ] || { echo "no $SO: run cross/build.sh $T${MODE/luws/}" >&2; exit 2; }
RE="$GNU_TRIPLE-readelf"
fail=0; MODEL=""
log "verify $SO ($(stat -c %s "$SO") bytes)"

# --- static checks -------------------------------------------------------------
hdr="$($RE -h "$SO")"
machine="$(echo "$hdr" | sed -n 's/ *Machine: *//p')"; flags="$(echo "$hdr" | sed -n 's/ *Flags: *//p')"
echo "ELF: $machine; flags: $flags"
case "$T" in
  aarch64-*) CPU=cortex-a53; LUA="$SYSROOT/usr/bin/lua5.1"; LUALIB="$(ls "$SYSROOT"/usr/lib/*/liblua5.1.so.0)"
             [[ "$machine" == *AArch64* ]] || { echo "FAIL: not AArch64"; fail=1; } ;;
  armv7-*)   CPU=cortex-a7; LUA="$SYSROOT/usr/bin/lua5.1"; LUALIB="$(ls "$SYSROOT"/usr/lib/*/liblua5.1.so.0)"
             [[ "$flags" == *hard-float* ]] || { echo "FAIL: not hard-float EABI"; fail=1; } ;;
  mipsel-unknown-linux-gnu) CPU=24Kf; LUA="$SYSROOT/usr/bin/lua5.1"; LUALIB="$(ls "$SYSROOT"/usr/lib/*/liblua5.1.so.0)" ;;
  mipsel-unknown-linux-uclibc)
             CPU=24KEc; LUA="$SYSROOT/usr/bin/lua"; LUALIB="$LUA"; MODEL="$SYSROOT/vera-model"
             "$CROSS_DIR/check-softfloat.sh" "$SO" || fail=1
             size=$(stat -c %s "$SO"); limit=$((2*1024*1024))
             if [ "$size" -gt "$limit" ]; then echo "FAIL: $size bytes > 2 MiB budget"; fail=1; else echo "size: $size bytes <= 2 MiB budget"; fi ;;
esac
python3 "$CROSS_DIR/symcheck.py" "$SO" --sysroot "$SYSROOT" --lua "$LUALIB" --readelf "$RE" \
  ${GLIBC_FLOOR:+--floor "$GLIBC_FLOOR"} ${MODEL:+--model "$MODEL"} || fail=1

# --- run time --------------------------------------------------------------------
RUN=("$QEMU" -cpu "$CPU" -L "$SYSROOT" "$LUA")
echo "runtime: ${RUN[*]##*/work/}"
if [ "$MODE" = probe ]; then
  (cd "$CROSS_DIR" && timeout 120 "${RUN[@]}" verify-probe.lua "$OUT/$T" 2>/dev/null) || fail=1
else
  # the project's echo server (PyPI websockets), with the Python that has it
  PY="$(PATH="$ORIG_PATH" command -v python3)"
  start_peer "$PY" "$REPO_DIR/spec/servers/echo_server.py" ||
    { echo "FAIL: echo server did not start" >&2; exit 1; }
  echo "echo server: spec/servers/echo_server.py on 127.0.0.1:$PEER_PORT (pid $PEER_PID)"
  ECHO_PID=$PEER_PID; ECHO_PORT=$PEER_PORT; extra=(); peers=()
  # The target's TLS backend too: the same server over TLS with a certificate that names only
  # luws.test (pinned, or verified with ssl_servername), and microsocks when installed.
  tls=$(mktemp -d "${TMPDIR:-/tmp}/luws-verify-tls.XXXXXX")
  if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
       -subj /CN=luws.test -addext subjectAltName=DNS:luws.test \
       -keyout "$tls/key.pem" -out "$tls/cert.pem" >/dev/null 2>&1 &&
     start_peer "$PY" "$REPO_DIR/spec/servers/echo_server.py" --tls "$tls/cert.pem" "$tls/key.pem"; then
    peers+=("$PEER_PID")
    pin="sha256//$(openssl x509 -in "$tls/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der |
      openssl dgst -sha256 -binary | openssl enc -base64)"
    extra=("$PEER_PORT" "$pin" "$tls/cert.pem")
    if command -v microsocks >/dev/null && start_peer "$PY" "$REPO_DIR/spec/servers/real_proxy.py" microsocks; then
      peers+=("$PEER_PID"); extra+=("$PEER_PORT")
    fi
  fi
  (cd "$CROSS_DIR" && timeout 180 "${RUN[@]}" verify.lua "$OUT/$T" "$ECHO_PORT" "${extra[@]}") || fail=1
  for p in "${peers[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PEER_PID=$ECHO_PID; stop_peer
  rm -rf "$tls"
fi
if [ $fail = 0 ]; then log "VERIFIED $T ($MODE.so)"; else log "VERIFY FAILED $T ($MODE.so)"; fi
exit $fail
