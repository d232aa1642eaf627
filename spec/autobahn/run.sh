#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing server against the LuWS client spec/autobahn/client.lua,
# in two passes:
#   plain    agent luws:         cases 1-7, 9-11, no permessage-deflate offered
#   deflate  agent luws-deflate: cases 1-7, 9-13 with permessage_deflate = true (12.* and 13.*
#            are the compression cases; fuzzingserver.json keeps them from agent luws)
# The passes run at the same time, and the deflate pass in shards: each shard is a fuzzing
# server of its own (own port, own report dir) with a client of its own. The fuzzing server is
# single-threaded Python and its 12.* and 13.* cases are ~9 minutes of one core, so on one
# server they alone would take that long; two shards take half of it on two cores.
#
#   bash spec/autobahn/run.sh
#
# Env:
#   LUWS_SO          path to the built module (luws.so / libluws.so); default:
#                    target/lua51/luws.so (built if missing)
#   LUA              Lua interpreter (default lua5.1)
#   AUTOBAHN_PORT    the first server's port (default 9001); the others take the next ones
#                    (a port that is taken is replaced by a free one)
#   AUTOBAHN_CASES   JSON list overriding the config's "cases", e.g. '["1.*"]'
#   AUTOBAHN_CASE_TIMEOUT  per-case deadline in the client (seconds, default 60)
#   AUTOBAHN_PASSES  which passes (default "plain deflate")
#   AUTOBAHN_SHARDS  the deflate pass's shards but the first, each a comma-separated list of
#                    case patterns; the first shard has the cases none of them names. Default
#                    "12.5.*,13.*" (shard 1: 1.*-10.*, 12.1.*-12.4.*), the two about equally
#                    long by the cases' durations in the report (~4.5 min each on an idle
#                    machine); "" runs the pass on one server. More shards than cores gain
#                    nothing: each server keeps a core busy.
#
# Exit status 0 only if, in every pass run, every case's behavior is OK, NON-STRICT or
# INFORMATIONAL (so never FAILED, nor UNIMPLEMENTED: what 12.*/13.* say when compression was not
# negotiated) and no case is missing. Prints a table per case group with both passes side by
# side (each pass merged from its shards), and each pass's and shard's time.
# Reports: spec/autobahn/reports/<shard>/index.html and index.json (shards: plain, deflate-1,
# deflate-2, …), and spec/autobahn/reports/index.json, every shard's results in one file.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
START=$(date +%s)
LUA="${LUA:-lua5.1}"
PASSES="${AUTOBAHN_PASSES:-plain deflate}"
SHARDS="${AUTOBAHN_SHARDS-12.5.*,13.*}"
for p in $PASSES; do
    case $p in plain | deflate) ;; *) echo "autobahn: unknown pass '$p' (plain, deflate)"; exit 2 ;; esac
done
REPORTS="spec/autobahn/reports"   # relative to $ROOT, as the configs' "outdir"
say() { printf 'autobahn: %s\n' "$*"; }

# ------------------------------------------------------------------ install
bash "$HERE/install.sh"
VENV="${AUTOBAHN_VENV:-$HERE/venv}"

TMP="$(mktemp -d)"
PIDS=()   # fuzzing servers and clients, ended by cleanup
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
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

# ------------------------------------------------------------------- shards
# The testsuite's own case list (its CaseSet, as the server reads the config), split into one
# config per shard. Prints a line per shard: name pass agent port config cases first last.
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
"$VENV/bin/python" - "$HERE/fuzzingserver.json" "$TMP" "$REPORTS" "${AUTOBAHN_PORT:-9001}" \
    "${AUTOBAHN_CASES:-}" "$PASSES" "$SHARDS" >"$TMP/plan" <<'PY'
from __future__ import print_function
import json, re, socket, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
src, tmp, reports, port, cases, passes, words = sys.argv[1:8]
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
spec = json.load(open(src))
if cases:
    spec["cases"] = json.loads(cases)
listed = cs.parseSpecCases(spec)

def pattern(p):  # as the testsuite reads exclude-agent-cases
    return re.compile("^" + p.replace(".", r"\.").replace("*", ".*") + "$")

excluded = [(pattern(a), [pattern(c) for c in ps]) for a, ps in spec.get("exclude-agent-cases", {}).items()]

def cases_of(agent):
    return [c for c in listed if not any(a.match(agent) and any(p.match(c) for p in ps) for a, ps in excluded)]

def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except socket.error:
        return False
    finally:
        s.close()

plan = []  # name, pass, agent, cases
if "plain" in passes.split():
    plan.append(("plain", "plain", "luws", cases_of("luws")))
if "deflate" in passes.split():
    rest, named, taken = cases_of("luws-deflate"), [], set()
    for word in words.split():
        mine = cs.parseSpecCases({"cases": word.split(",")})
        if not [c for c in mine if c in cs.CasesIndices]:
            sys.exit("autobahn: shard %s names no case of the testsuite" % word)
        mine = [c for c in rest if c in set(mine)]
        if taken & set(mine):
            sys.exit("autobahn: shard %s repeats cases of an earlier one" % word)
        taken |= set(mine)
        named.append(mine)
    shards = [s for s in [[c for c in rest if c not in taken]] + named if s]
    for i, s in enumerate(shards):
        plan.append(("deflate-%d" % (i + 1) if len(shards) > 1 else "deflate", "deflate", "luws-deflate", s))
port = int(port)
for name, pas, agent, mine in plan:
    while not free(port):
        port += 1
    shard = dict(spec, url="ws://127.0.0.1:%d" % port, outdir="./%s/%s" % (reports, name), cases=mine)
    config = "%s/%s.json" % (tmp, name)
    json.dump(shard, open(config, "w"), indent=2)
    print(name, pas, agent, port, config, len(mine), mine[0] if mine else "-", mine[-1] if mine else "-")
    port += 1
PY
mapfile -t PLAN <"$TMP/plan"
[[ ${#PLAN[@]} -gt 0 ]] || { say "no cases to run"; exit 2; }

# ------------------------------------------------------------ fuzzing servers
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for line in "${PLAN[@]}"; do
    read -r name _ _ port config n first last <<<"$line"
    mkdir -p "$REPORTS/$name"
    log="$REPORTS/$name/fuzzingserver.log"
    # wstest_local.py: wstest with the listener bound to 127.0.0.1; -u 0: no web server.
    "$VENV/bin/python" "$HERE/wstest_local.py" -m fuzzingserver -s "$config" -u 0 >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "fuzzing server $name exited early:"; tail -20 "$log"; exit 2
        fi
        port_free "$port" || break
        sleep 0.2
        if [[ $i -eq 150 ]]; then say "fuzzing server $name did not listen on $port within 30s"; tail -20 "$log"; exit 2; fi
    done
    say "shard $name: fuzzing server pid $pid on 127.0.0.1:$port, $n cases ($first to $last)"
done

# ------------------------------------------------------------------- clients
# Each shard's client at once; its lines prefixed with the shard, its exit status and time
# in $TMP/<shard>.rc.
for line in "${PLAN[@]}"; do
    read -r name pass agent port _ <<<"$line"
    deflate=""; [[ $pass == deflate ]] && deflate=1
    (
        t0=$(date +%s)
        set +e
        AUTOBAHN_AGENT="$agent" AUTOBAHN_DEFLATE="$deflate" "$LUA" "$HERE/client.lua" "ws://127.0.0.1:$port" 2>&1 |
            sed -u "s/^/[$name] /"
        echo "${PIPESTATUS[0]} $(( $(date +%s) - t0 ))" >"$TMP/$name.rc"
    ) &
    PIDS+=("$!")
done
wait "${PIDS[@]: -${#PLAN[@]}}" || true

# -------------------------------------------------------------------- report
SHARD_ARGS=()
for line in "${PLAN[@]}"; do
    read -r name pass agent _ config _ <<<"$line"
    read -r rc secs <"$TMP/$name.rc" 2>/dev/null || { rc=1; secs=0; }
    say "shard $name: client exit $rc, ${secs}s"
    SHARD_ARGS+=("$name:$pass:$agent:$config:$rc:$secs")
done
python3 - "$REPORTS" "$(( $(date +%s) - START ))" "${SHARD_ARGS[@]}" <<'PY'
import ast, collections, json, os, re, sys
reports, total_secs = sys.argv[1:3]
shards = [a.split(":") for a in sys.argv[3:]]  # name, pass, agent, config, client rc, seconds
ACCEPT = ("OK", "NON-STRICT", "INFORMATIONAL")
ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
SHORT = {"OK": "OK", "NON-STRICT": "NS", "INFORMATIONAL": "INFO", "UNIMPLEMENTED": "UNIMPL", "FAILED": "FAILED"}

def key(c):
    return [int(x) for x in c.split(".")]

def pattern(p):  # as the testsuite reads its spec's patterns
    return re.compile("^" + p.replace(".", r"\.").replace("*", ".*") + "$")

def expected(log, config, agent):
    """The server's case list (its log), less what exclude-agent-cases keeps from an agent."""
    listed = []
    for line in open(log):
        if line.startswith("Cases = "):
            listed = ast.literal_eval(line[len("Cases = "):].strip())
            break
    spec = json.load(open(config))
    excluded = [(pattern(a), [pattern(c) for c in cs])
                for a, cs in spec.get("exclude-agent-cases", {}).items()]
    return [c for c in listed
            if not any(a.match(agent) and any(p.match(c) for p in cs) for a, cs in excluded)]

# Each pass merged from its shards; every shard's results also in one index.json whose
# reportfile entries are relative to the reports dir.
passes, merged = collections.OrderedDict(), {}
for name, pas, agent, config, rc, secs in shards:
    p = passes.setdefault(pas, {"agent": agent, "cases": {}, "expected": set(), "rc": [], "secs": []})
    path = os.path.join(reports, name, "index.json")
    try:
        report = json.load(open(path))
    except (IOError, OSError, ValueError) as e:
        report = {}
        print("autobahn: shard %s: no report in %s (%s)" % (name, path, e))
    for c, v in report.get(agent, {}).items():
        p["cases"][c] = v
        merged.setdefault(agent, {})[c] = dict(v, reportfile=name + "/" + v.get("reportfile", ""))
    p["expected"] |= set(expected(os.path.join(reports, name, "fuzzingserver.log"), config, agent))
    p["rc"].append(int(rc))
    p["secs"].append(int(secs))
with open(os.path.join(reports, "index.json"), "w") as f:
    json.dump(merged, f, indent=2, sort_keys=True)

ok, results = True, []
for pas, p in passes.items():
    cases = p["cases"]
    counts = collections.defaultdict(collections.Counter)
    for c, v in cases.items():
        counts[c.split(".")[0]][v["behavior"]] += 1
        counts["all"][v["behavior"]] += 1
    bad = sorted((c for c, v in cases.items() if v["behavior"] not in ACCEPT), key=key)
    missing = sorted(p["expected"] - set(cases), key=key)
    rc = max(p["rc"])
    pass_ok = bool(cases) and not bad and not missing and rc == 0
    ok = ok and pass_ok
    results.append((pas, p["agent"], rc, p["secs"], counts, bad, missing, cases, len(p["expected"])))

def took(secs):  # the shards ran at the same time: the pass took as long as the longest
    return "%ss" % max(secs) + (" (shards %s)" % " ".join("%ss" % s for s in secs) if len(secs) > 1 else "")

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
print("  %-6s" % "time" + "".join(" | %-*s" % (width, took(r[3])) for r in results))
for name, agent, rc, secs, counts, bad, missing, cases, n_expected in results:
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
        print("autobahn: %s: %d of the servers' %d cases are missing from the reports: %s" % (
            agent, len(missing), n_expected, " ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")))
    passed = len(cases) - len(bad)
    failed = len(bad) + len(missing) + (0 if cases or missing else 1)
    print("autobahn: pass %s (%s): %d passed, %d failed in %s; client exit %d" % (
        name, agent, passed, failed, took(secs), rc))
    if os.environ.get("LUWS_RESULT"):  # the stage's count for tools/test-all.sh
        with open(os.environ["LUWS_RESULT"], "a") as f:
            f.write("%d %d autobahn %s\n" % (passed, failed, name))
print("autobahn: reports: %s (all shards: %s/index.json)" % (
    " ".join("%s/%s/index.html" % (reports, s[0]) for s in shards), reports))
print("autobahn: wall time %ss" % total_secs)
sys.exit(0 if ok and results else 1)
PY
