"""A real proxy for the proxy specs: Debian's tinyproxy (HTTP CONNECT) or microsocks (SOCKS5),
started on a free loopback port under the peers' contract (see peer.py).

  real_proxy.py tinyproxy [--auth USER:PASS] [--log FILE]
  real_proxy.py microsocks [--auth USER:PASS]

The proxy runs as a child that the kernel ends with this process (PR_SET_PDEATHSIG), so it
never outlives the test run however this wrapper exits.  tinyproxy logs at Info level to
--log, where "opening connection to HOST:PORT" shows which target it was asked for.
"""

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import peer

PR_SET_PDEATHSIG = 1


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def accepting(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def command(program, port, auth, log, workdir):
    if program == "microsocks":
        cmd = ["microsocks", "-i", "127.0.0.1", "-p", str(port)]
        if auth:
            user, password = auth.split(":", 1)
            cmd += ["-u", user, "-P", password]
        return cmd
    conf = os.path.join(workdir, "tinyproxy.conf")
    lines = [
        "Port %d" % port,
        "Listen 127.0.0.1",
        "Timeout 30",
        "MaxClients 64",
        "Allow 127.0.0.1",
        "LogLevel Info",
        'LogFile "%s"' % (log or os.devnull),
    ]
    if auth:
        user, password = auth.split(":", 1)
        lines.append("BasicAuth %s %s" % (user, password))
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return ["tinyproxy", "-d", "-c", conf]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("program", choices=["tinyproxy", "microsocks"])
    ap.add_argument("--auth")
    ap.add_argument("--log")
    a = ap.parse_args()
    peer.arm_startup_alarm()
    ppid = peer.on_signals_exit()
    workdir = tempfile.mkdtemp(prefix="luws-proxy-")
    for _ in range(20):  # a port another process takes meanwhile: try another
        port = free_port()
        child = subprocess.Popen(
            command(a.program, port, a.auth, a.log, workdir),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and child.poll() is None and not accepting(port):
            time.sleep(0.02)
        if child.poll() is None and accepting(port):
            break
        child.kill()
        child.wait()
    else:
        sys.exit("%s did not start" % a.program)
    # tinyproxy has read its configuration; nothing is left behind however this process ends.
    for name in os.listdir(workdir):
        os.unlink(os.path.join(workdir, name))
    os.rmdir(workdir)
    peer.announce(port, ppid)
    child.wait()


if __name__ == "__main__":
    main()
