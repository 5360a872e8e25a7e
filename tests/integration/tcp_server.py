#!/usr/bin/env python3
"""Listens on the given TCP ports on every IPv4 and IPv6 address and answers
each connection with "ok"; for integration tests, inside a namespace."""
import selectors
import socket
import sys

sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(128)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        try:
            conn, _ = key.fileobj.accept()
            conn.sendall(b"ok\n")
            conn.close()
        except OSError:
            pass
