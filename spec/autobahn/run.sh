#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing server against the LuWS client spec/autobahn/client.lua,
# in two passes on one server (so one report holds both agents):
#   plain    agent luws:         cases 1-7, 9-11, no permessage-deflate offered
#   deflate  agent luws-deflate: cases 1-7, 9-13 with permessage_deflate = true (12.* and 13.*
#            are the compression cases; fuzzingserver.json keeps them from agent luws)
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
#   AUTOBAHN_PASSES  which passes, in order (default "plain deflate")
#
# Exit status 0 only if, in every pass run, every case's behavior is OK, NON-STRICT or
# INFORMATIONAL (so never FAILED, nor UNIMPLEMENTED: what 12.*/13.* say when compression was not
# negotiated) and no case is missing. Prints a table per case group with both passes side by
# side, and each pass's time.
# Reports: spec/autobahn/reports/clients/index.html (and index.json).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
START=$(date +%s)
LUA="${LUA:-lua5.1}"
PASSES="${AUTOBAHN_PASSES:-plain deflate}"
agent_of() { case $1 in plain) echo luws ;; deflate) echo luws-deflate ;; *) return 1 ;; esac; }
for p in $PASSES; do agent_of "$p" >/dev/null || { echo "autobahn: unknown pass '$p' (plain, deflate)"; exit 2; }; done
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
PASS_ARGS=()
for p in $PASSES; do
    agent=$(agent_of "$p")
    deflate=""; [[ $p == deflate ]] && deflate=1
    say "pass $p: agent $agent"
    t0=$(date +%s)
    set +e
    AUTOBAHN_AGENT="$agent" AUTOBAHN_DEFLATE="$deflate" "$LUA" "$HERE/client.lua" "ws://127.0.0.1:$PORT"
    rc=$?
    set -e
    secs=$(( $(date +%s) - t0 ))
    say "pass $p: client exit $rc, ${secs}s"
    PASS_ARGS+=("$p:$agent:$rc:$secs")
done

# -------------------------------------------------------------------- report
python3 - "$OUTDIR/index.json" "$LOG" "$CONFIG" "$(( $(date +%s) - START ))" "${PASS_ARGS[@]}" <<'PY'
import ast, collections, json, os, re, sys
path, log, config, total_secs = sys.argv[1:5]
passes = [a.split(":") for a in sys.argv[5:]]  # pass, agent, client rc, seconds
ACCEPT = ("OK", "NON-STRICT", "INFORMATIONAL")
ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
SHORT = {"OK": "OK", "NON-STRICT": "NS", "INFORMATIONAL": "INFO", "UNIMPLEMENTED": "UNIMPL", "FAILED": "FAILED"}

def key(c):
    return [int(x) for x in c.split(".")]

def pattern(p):  # as the testsuite reads its spec's patterns
    return re.compile("^" + p.replace(".", r"\.").replace("*", ".*") + "$")

# The server's case list (its log), less what exclude-agent-cases keeps from an agent.
listed = []
for line in open(log):
    if line.startswith("Cases = "):
        listed = ast.literal_eval(line[len("Cases = "):].strip())
        break
spec = json.load(open(config))
excluded = [(pattern(a), [pattern(c) for c in cs])
            for a, cs in spec.get("exclude-agent-cases", {}).items()]

def expected(agent):
    return [c for c in listed
            if not any(a.match(agent) and any(p.match(c) for p in cs) for a, cs in excluded)]

try:
    report = json.load(open(path))
except (IOError, OSError, ValueError) as e:
    report = {}
    print("autobahn: no report in %s (%s)" % (path, e))

ok, results, lines = True, [], []
for name, agent, rc, secs in passes:
    cases = report.get(agent, {})
    counts = collections.defaultdict(collections.Counter)
    for c, v in cases.items():
        counts[c.split(".")[0]][v["behavior"]] += 1
        counts["all"][v["behavior"]] += 1
    bad = sorted((c for c, v in cases.items() if v["behavior"] not in ACCEPT), key=key)
    missing = sorted(set(expected(agent)) - set(cases), key=key)
    pass_ok = bool(cases) and not bad and not missing and rc == "0"
    ok = ok and pass_ok
    results.append((name, agent, int(rc), secs, counts, bad, missing, cases, pass_ok))

# One row per case group, a block of columns per pass.
groups = sorted({g for r in results for g in r[4] if g != "all"}, key=int) + ["all"]
cols = [SHORT[b] for b in ORDER]
width = len(" ".join("%6s" % c for c in cols))
print("autobahn: behaviors per case group")
print("  %-6s" % "" + "".join(" | %-*s" % (width, "%s (%s)" % (r[1], r[0])) for r in results))
print("  %-6s" % "group" + "".join(" | " + " ".join("%6s" % c for c in cols) for _ in results))
for g in groups:
    row = "  %-6s" % (g + (".*" if g != "all" else ""))
    for r in results:
        cnt = r[4].get(g, collections.Counter())
        row += " | " + (" ".join("%6d" % cnt[b] for b in ORDER) if cnt else "%*s" % (width, "-"))
    print(row)
print("  %-6s" % "time" + "".join(" | %-*s" % (width, "%ss" % r[3]) for r in results))
for name, agent, rc, secs, counts, bad, missing, cases, pass_ok in results:
    other = sorted(set(b for g in counts.values() for b in g) - set(ORDER))
    if other:
        print("autobahn: %s: other behaviors %s" % (agent, ", ".join(other)))
    for c in bad[:40]:
        v = cases[c]
        print("  %-13s %-8s behavior=%-13s behaviorClose=%-13s closeCode=%s" % (
            agent, c, v["behavior"], v.get("behaviorClose"), v.get("remoteCloseCode")))
    if len(bad) > 40:
        print("  %-13s ... %d more" % (agent, len(bad) - 40))
    if missing:
        print("autobahn: %s: %d of the server's %d cases are missing from the report: %s" % (
            agent, len(missing), len(expected(agent)), " ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")))
    passed = len(cases) - len(bad)
    failed = len(bad) + len(missing) + (0 if cases or missing else 1)
    print("autobahn: pass %s (%s): %d passed, %d failed in %ss; client exit %d" % (
        name, agent, passed, failed, secs, rc))
    if os.environ.get("LUWS_RESULT"):  # the stage's count for tools/test-all.sh
        with open(os.environ["LUWS_RESULT"], "a") as f:
            f.write("%d %d autobahn %s\n" % (passed, failed, name))
print("autobahn: wall time %ss" % total_secs)
sys.exit(0 if ok and results else 1)
PY
