#!/usr/bin/env bash
# Installs the Autobahn|Testsuite (wstest, Python 2.7 only) into spec/autobahn/venv.
#
#  * adds Debian bullseye (same mirror as bookworm) pinned at priority 100, so
#    nothing else is ever taken from it, and installs python2.7 + python2.7-dev
#  * installs virtualenv 20.21.1 (last release that creates 2.7 environments)
#    with Python 3's pip into venv/.tools (pip --target: works with PEP 668)
#  * creates the 2.7 virtualenv and installs the pinned requirements.txt
#
# Idempotent and quiet; returns in well under a second when already installed.
# Needs root (or sudo) only for the apt part. Env: AUTOBAHN_VENV to relocate.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${AUTOBAHN_VENV:-$HERE/venv}"
REQS="$HERE/requirements.txt"
STAMP="$VENV/.luws-installed"

log() { printf 'autobahn/install: %s\n' "$*" >&2; }

want_stamp() {
    # Contents of the stamp: the requirement pins plus the version of this script's logic.
    { echo "v1"; cat "$REQS"; } | sha256sum | cut -d' ' -f1
}

if [[ -x /usr/bin/python2.7 && -x "$VENV/bin/wstest" && -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" ]]; then
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "need root (or sudo) for apt-get"; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive PIP_ROOT_USER_ACTION=ignore

apt_quiet() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -qq -o=Dpkg::Use-Pty=0 "$@" >/dev/null; }

# ---------------------------------------------------------------- apt: python2.7
need_apt=()
PY27=/usr/bin/python2.7   # Debian's, not a pyenv/asdf shim
[[ -x $PY27 ]] || need_apt+=(python2.7)
[[ -f /usr/include/python2.7/Python.h ]] || need_apt+=(python2.7-dev)
if ! command -v gcc >/dev/null; then need_apt+=(gcc libc6-dev); fi
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)

if ((${#need_apt[@]})); then
    if ! apt-cache policy python2.7 2>/dev/null | grep -q 'bullseye'; then
        # Mirror the URI that serves bookworm (deb822 .sources or one-line .list).
        mirror=""
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            mirror=$(awk 'BEGIN{RS="";FS="\n"} /Suites:[^\n]*bookworm([ \t\n]|$)/ {
                        for(i=1;i<=NF;i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/,"",$i); split($i,a," "); print a[1]; exit } }' "$f")
            [[ -n $mirror ]] && break
        done
        if [[ -z $mirror ]]; then
            mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                     awk '$1=="deb" && $0 ~ / bookworm / { for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
        fi
        mirror=${mirror:-http://deb.debian.org/debian}
        log "adding bullseye from $mirror (pin priority 100)"
        keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        $SUDO tee /etc/apt/sources.list.d/luws-bullseye.sources >/dev/null <<SRC
Types: deb
URIs: $mirror
Suites: bullseye
Components: main
Signed-By: $keyring
SRC
        $SUDO tee /etc/apt/preferences.d/luws-bullseye >/dev/null <<'PREF'
# Only python2.7 (for the Autobahn testsuite) is installed from bullseye, explicitly.
Package: *
Pin: release n=bullseye
Pin-Priority: 100
PREF
        apt_quiet update
    fi
    log "apt-get install ${need_apt[*]}"
    py2=() other=()
    for p in "${need_apt[@]}"; do
        case $p in python2.7*) py2+=("$p") ;; *) other+=("$p") ;; esac
    done
    apt_install() {   # retry once after 'apt-get update' (stale or missing package lists)
        apt_quiet install -y --no-install-recommends "$@" 2>/dev/null ||
            { apt_quiet update && apt_quiet install -y --no-install-recommends "$@"; }
    }
    if ((${#other[@]})); then apt_install "${other[@]}"; fi
    if ((${#py2[@]})); then apt_install -t bullseye "${py2[@]}"; fi
fi

# ------------------------------------------------- virtualenv 20.21.1 (Python 3)
TOOLS="$VENV/.tools"
if [[ ! -f "$TOOLS/virtualenv/__init__.py" ]] ||
   ! PYTHONPATH="$TOOLS" python3 -c 'import virtualenv,sys; sys.exit(virtualenv.__version__!="20.21.1")' 2>/dev/null; then
    log "installing virtualenv 20.21.1 (python3 pip --target)"
    rm -rf "$TOOLS"
    python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
        --target "$TOOLS" "virtualenv==20.21.1"
fi

# ---------------------------------------------------------- the 2.7 environment
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2]!=(2,7))' 2>/dev/null; then
    log "creating Python 2.7 virtualenv in $VENV"
    PYTHONPATH="$TOOLS" python3 -m virtualenv -q -p "$PY27" "$VENV" >/dev/null
fi

log "installing autobahntestsuite into the 2.7 virtualenv"
export PYTHONWARNINGS=ignore
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-python-version-warning \
    -r "$REQS" 2>&1 | grep -v -E 'DEPRECATION|^\s*$' >&2 || true
"$VENV/bin/python" -c 'import autobahntestsuite, autobahn, twisted' 2>/dev/null ||
    { log "autobahntestsuite did not install"; exit 1; }
[[ -x "$VENV/bin/wstest" ]] || { log "wstest missing after install"; exit 1; }
want_stamp >"$STAMP"
log "done ($("$VENV/bin/wstest" --autobahnversion 2>/dev/null | head -1 || echo installed))"
