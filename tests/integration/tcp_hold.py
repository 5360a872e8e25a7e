#!/usr/bin/env python3
"""Opens a TCP connection to ADDR PORT, reads "ok", and keeps it open for
SECONDS (or until killed). Exit 1 if it could not connect."""
import socket
import sys
import time

addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    s = socket.create_connection((addr, port), timeout=2)
    s.sendall(b"hi\n")
    s.settimeout(2)
    if not s.recv(16).startswith(b"ok"):
        sys.exit(1)
except OSError:
    sys.exit(1)
print("connected", flush=True)
time.sleep(seconds)
s.close()
