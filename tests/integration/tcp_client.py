#!/usr/bin/env python3
"""Exit 0 when a TCP connection to ADDR PORT is accepted and answers "ok"
within the timeout (default 1 s), 1 otherwise."""
import socket
import sys

addr, port = sys.argv[1], int(sys.argv[2])
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
try:
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"hi\n")
        sys.exit(0 if s.recv(16).startswith(b"ok") else 1)
except OSError:
    sys.exit(1)
