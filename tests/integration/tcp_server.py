#!/usr/bin/env python3
"""Listens on the given TCP ports ("hold:PORT": keep each connection open
until the client closes it) on every IPv4 and IPv6 address and answers
each connection with "ok" (after reading a request, if one comes within
0.3 s, so that HTTP clients such as curl --http0.9 see it too); for
integration tests, inside a namespace."""
import selectors
import socket
import sys
import threading


def hold(conn):
    """Keeps the connection open until the client closes it (60 s at most)."""
    try:
        conn.settimeout(60)
        conn.recv(4096)
        conn.sendall(b"ok\n")
        while conn.recv(4096):
            pass
    except OSError:
        pass
    finally:
        conn.close()


def answer(conn):
    try:
        conn.settimeout(0.3)
        try:
            conn.recv(4096)
        except socket.timeout:
            pass
        conn.sendall(b"ok\n")
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1)
        while conn.recv(4096):
            pass
    except OSError:
        pass
    finally:
        conn.close()


sel = selectors.DefaultSelector()
handlers = {}
for arg in sys.argv[1:]:
    held = arg.startswith("hold:")
    port = int(arg.removeprefix("hold:"))
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(128)
    sel.register(s, selectors.EVENT_READ)
    handlers[s] = hold if held else answer
while True:
    for key, _ in sel.select():
        try:
            conn, _ = key.fileobj.accept()
        except OSError:
            continue
        threading.Thread(target=handlers[key.fileobj], args=(conn,), daemon=True).start()
