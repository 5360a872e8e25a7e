#!/usr/bin/env python3
"""Hand-made DNS messages for tests.
  query SERVER SPORT ID NAME: sends an A query from SPORT, prints "ID SOURCE NAME" of each answer it gets until the one to
      its query (at most 8 s)
  answer SERVER CLIENT CPORT ID NAME ADDR: sends an answer in SERVER's name"""
import socket
import struct
import sys
import time

from dnswire import name_wire


def question(name):
    return name_wire(name) + struct.pack("!HH", 1, 1)

if sys.argv[1] == "query":
    server, sport, qid, name = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.sendto(struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question(name), (server, 53))
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg, _ = s.recvfrom(4096)
        except OSError:
            break
        labels, at = [], 12
        while at < len(msg) and msg[at]:
            labels.append(msg[at + 1:at + 1 + msg[at]].decode(errors="replace"))
            at += 1 + msg[at]
        got = struct.unpack("!H", msg[:2])[0]
        print(got, _[0], ".".join(labels), flush=True)
        if got == qid and _[0] == server and ".".join(labels) == name.rstrip("."):
            break  # the answer to the query; any other came before it
else:
    server, client, cport, qid, name, addr = sys.argv[2:8]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Another forger may have just closed the same address and port.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((server, 53))
    msg = struct.pack("!HHHHHH", int(qid), 0x8180, 1, 1, 0, 0) + question(name)
    msg += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(addr)
    s.sendto(msg, (client, int(cport)))
