"""A proxy that misbehaves in one way, for the proxy specs' error paths (peer contract: peer.py).

  bad_proxy.py MODE
    stall        read the request, never answer
    close        read the request, hang up
    garbage      answer what no proxy protocol says
    flood        answer an endless HTTP header (never CRLF CRLF)
    refuse       HTTP: 403 Forbidden with a body
    socks-noauth SOCKS5: accept none of the offered methods
    socks-reply N  SOCKS5: accept no-auth, then fail CONNECT with reply code N
"""

import socket
import sys
import time

import peer


def handle(mode, arg, sock):
    try:
        sock.recv(4096)
        if mode == "stall":
            time.sleep(3600)
        elif mode == "close":
            pass
        elif mode == "garbage":
            sock.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            time.sleep(1)
        elif mode == "flood":
            chunk = b"X-Filler: " + b"x" * 1000 + b"\r\n"
            sock.sendall(b"HTTP/1.1 200 OK\r\n")
            while True:
                sock.sendall(chunk)
        elif mode == "refuse":
            body = b"<html>no</html>"
            sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(1)
        elif mode == "socks-noauth":
            sock.sendall(b"\x05\xff")
            time.sleep(1)
        elif mode == "socks-reply":
            sock.sendall(b"\x05\x00")
            sock.recv(4096)
            sock.sendall(bytes([5, int(arg), 0, 1, 0, 0, 0, 0, 0, 0]))
            time.sleep(1)
    except OSError:
        pass
    finally:
        sock.close()


def main():
    mode = sys.argv[1]
    arg = sys.argv[2] if len(sys.argv) > 2 else None
    peer.arm_startup_alarm()
    peer.serve_forever(lambda s: handle(mode, arg, s))


if __name__ == "__main__":
    main()
