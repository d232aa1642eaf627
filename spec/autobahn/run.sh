#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing server (cases 1-7, 9-11; no
# permessage-deflate) against the LuWS client spec/autobahn/client.lua.
#
#   bash spec/autobahn/run.sh
#
# Env:
#   LUWS_SO          path to the built module (luws.so / libluws.so); default:
#                    target/lua51/luws.so (built if missing)
#   LUA              Lua interpreter (default lua5.1)
#   AUTOBAHN_PORT    port for the fuzzing server (default 9001, or a free one)
#   AUTOBAHN_CASES   JSON list overriding the config's "cases", e.g. '["1.*"]'
#   AUTOBAHN_CASE_TIMEOUT  per-case deadline in the client (seconds, default 60)
#
# Exit status 0 only if every case's behavior is OK, NON-STRICT or INFORMATIONAL.
# Reports: spec/autobahn/reports/clients/index.html (and index.json).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
START=$(date +%s)
LUA="${LUA:-lua5.1}"
AGENT=luws
OUTDIR="spec/autobahn/reports/clients"   # relative to $ROOT, as in fuzzingserver.json
say() { printf 'autobahn: %s\n' "$*"; }

# ------------------------------------------------------------------ install
bash "$HERE/install.sh"
VENV="${AUTOBAHN_VENV:-$HERE/venv}"

TMP="$(mktemp -d)"
WSTEST_PID=""
cleanup() {
    if [[ -n "$WSTEST_PID" ]] && kill -0 "$WSTEST_PID" 2>/dev/null; then
        kill "$WSTEST_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$WSTEST_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$WSTEST_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------- module
source "$ROOT/tools/lib.sh"
SO="${LUWS_SO:-$ROOT/target/lua51/luws.so}"
if [[ -z "${LUWS_SO:-}" && ! -f "$SO" ]]; then
    say "building the module (tools/lib.sh: module lua51 native)"
    module lua51 native
fi
[[ -f "$SO" ]] || { say "module not found: $SO"; exit 2; }
# The client loads a private snapshot: a rebuild or `cp` over the .so while it
# is mapped would crash the run with SIGBUS.
CDIR="$TMP/cpath"
mkdir -p "$CDIR"
cp "$SO" "$CDIR/luws.so"
export LUA_CPATH="$CDIR/?.so;;"
"$LUA" -e 'require "luws"' || { say "cannot load luws from $CDIR with $LUA"; exit 2; }

# ------------------------------------------------------------------- config
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT="${AUTOBAHN_PORT:-9001}"
if ! port_free "$PORT"; then
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
fi

CONFIG="$TMP/fuzzingserver.json"
python3 - "$HERE/fuzzingserver.json" "$CONFIG" "$PORT" "${AUTOBAHN_CASES:-}" <<'PY'
import json, sys
src, dst, port, cases = sys.argv[1:5]
spec = json.load(open(src))
spec["url"] = "ws://127.0.0.1:%s" % port
if cases:
    spec["cases"] = json.loads(cases)
json.dump(spec, open(dst, "w"), indent=2)
PY

# ------------------------------------------------------------ fuzzing server
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
LOG="$ROOT/spec/autobahn/reports/fuzzingserver.log"
# wstest_local.py: wstest with the listener bound to 127.0.0.1; -u 0: no web server.
"$VENV/bin/python" "$HERE/wstest_local.py" -m fuzzingserver -s "$CONFIG" -u 0 >"$LOG" 2>&1 &
WSTEST_PID=$!
for i in $(seq 150); do
    if ! kill -0 "$WSTEST_PID" 2>/dev/null; then
        say "fuzzing server exited early:"; tail -20 "$LOG"; exit 2
    fi
    port_free "$PORT" || break
    sleep 0.2
    if [[ $i -eq 150 ]]; then say "fuzzing server did not listen on $PORT within 30s"; tail -20 "$LOG"; exit 2; fi
done
say "fuzzing server pid $WSTEST_PID on 127.0.0.1:$PORT ($(grep -o 'will run [0-9]* test cases' "$LOG" || true))"

# -------------------------------------------------------------------- client
set +e
AUTOBAHN_AGENT="$AGENT" "$LUA" "$HERE/client.lua" "ws://127.0.0.1:$PORT"
CLIENT_RC=$?
set -e

# -------------------------------------------------------------------- report
EXPECTED=$(sed -n 's/.*will run \([0-9]*\) test cases.*/\1/p' "$LOG" | head -1)
python3 - "$OUTDIR/index.json" "$AGENT" "$CLIENT_RC" "$(( $(date +%s) - START ))" "${EXPECTED:-0}" <<'PY'
import json, os, sys, collections
path, agent, client_rc, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
expected = int(sys.argv[5])
ACCEPT = ("OK", "NON-STRICT", "INFORMATIONAL")
def key(c):
    return [int(x) for x in c.split(".")]
try:
    cases = json.load(open(path))[agent]
except (IOError, OSError, ValueError, KeyError) as e:
    print("autobahn: no report for agent %r in %s (%s); client exit %d" % (agent, path, e, client_rc))
    sys.exit(1)
counts = collections.Counter(v["behavior"] for v in cases.values())
order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
print("autobahn: %d cases: %s" % (len(cases), ", ".join(
    "%s %d" % (b, counts[b]) for b in order + sorted(set(counts) - set(order)))))
bad = sorted((c for c, v in cases.items() if v["behavior"] not in ACCEPT), key=key)
for c in bad:
    v = cases[c]
    print("  %-8s behavior=%-13s behaviorClose=%-13s closeCode=%s" % (
        c, v["behavior"], v.get("behaviorClose"), v.get("remoteCloseCode")))
missing = max(0, expected - len(cases))
if missing:
    print("autobahn: %d of the server's %d cases are missing from the report" % (missing, expected))
print("autobahn: wall time %ss; client exit %d" % (secs, client_rc))
ok = not bad and not missing and client_rc == 0 and cases
passed, failed = len(cases) - len(bad), len(bad) + missing
print("autobahn: %d passed, %d failed" % (passed, failed))
if os.environ.get("LUWS_RESULT"):  # the stage's count for tools/test-all.sh
    with open(os.environ["LUWS_RESULT"], "a") as f:
        f.write("%d %d autobahn\n" % (passed, failed))
sys.exit(0 if ok else 1)
PY
