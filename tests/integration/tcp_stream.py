#!/usr/bin/env python3
"""Opens TCP connections to each ADDR:PORT in turn for SECONDS (bounded
also in count), each answered with "ok"; prints "attempts failures" and the
failed targets; SIGTERM ends it early with the same line.
Usage: tcp_stream.py SECONDS ADDR:PORT..."""
import signal
import socket
import sys
import time

seconds = float(sys.argv[1])
targets = []
for t in sys.argv[2:]:
    addr, port = t.rsplit(":", 1)
    targets.append((addr.strip("[]"), int(port)))
attempts = failures = 0
failed = set()
end = time.monotonic() + seconds


def stop(*_):
    global end
    end = 0


signal.signal(signal.SIGTERM, stop)
while time.monotonic() < end and attempts < 100000:
    for addr, port in targets:
        attempts += 1
        try:
            with socket.create_connection((addr, port), timeout=1.0) as s:
                s.settimeout(1.0)
                s.sendall(b"hi\n")
                if not s.recv(16).startswith(b"ok"):
                    raise OSError("no answer")
        except OSError:
            failures += 1
            failed.add(f"{addr}:{port}")
    time.sleep(0.005)
print(attempts, failures, " ".join(sorted(failed)))
