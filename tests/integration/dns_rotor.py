#!/usr/bin/env python3
"""A DNS server for soak tests: answers every A query with one address
that rotates through 198.51.100.0/24 and 203.0.113.0/24 (512 addresses),
TTL 1, and every other query with NOERROR and no data. Listens on
ADDR:53/udp; exits after SECONDS. Usage: dns_rotor.py ADDR SECONDS"""
import socket
import struct
import sys
import time

addr, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((addr, 53))
s.settimeout(0.5)
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    try:
        q, peer = s.recvfrom(4096)
    except socket.timeout:
        continue
    if len(q) < 17:
        continue
    # The question ends at the first zero label after the header.
    i = 12
    while i < len(q) and q[i] != 0:
        i += q[i] + 1
    if i + 5 > len(q):
        continue
    question = q[12:i + 5]
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    flags = 0x8180
    if qtype == 1:
        n += 1
        net = (198, 51, 100) if n % 2 else (203, 0, 113)
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 4) + bytes(net) + bytes([(n // 2) % 256])
        reply = q[:2] + struct.pack("!HHHHH", flags, 1, 1, 0, 0) + question + rr
    else:
        reply = q[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + question
    s.sendto(reply, peer)
