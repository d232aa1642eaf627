# Python 2.7 launcher for wstest that binds the fuzzing server's WebSocket
# listener to 127.0.0.1 (upstream listenWS binds to all interfaces and the
# spec file has no setting for it). Use with `-u 0` to disable the embedded
# web server (which would also listen on all interfaces, port 8080).
# Usage: venv/bin/python wstest_local.py -m fuzzingserver -s CONFIG -u 0
import sys

from autobahntestsuite import wstest  # must come first: installs the reactor
from autobahntestsuite import fuzzing

_listenWS = fuzzing.listenWS


def listenWS(factory, contextFactory=None, backlog=50, interface="127.0.0.1"):
    return _listenWS(factory, contextFactory, backlog, interface or "127.0.0.1")


fuzzing.listenWS = listenWS

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    wstest.run()
