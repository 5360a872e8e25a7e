#!/usr/bin/env python3
"""Sends COUNT A queries for s<i % NAMES>.soak.k8s.intra to SERVER:53 with at
most 64 outstanding (each waits 1 s at most), and prints "answers sent
seconds" at the end. At PROGRESS answers (if given) it runs once the command
in the environment variable ON_PROGRESS. Usage: dns_load.py SERVER COUNT
NAMES [PROGRESS]"""
import os
import random
import socket
import struct
import subprocess
import sys
import time

server, count, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
progress = int(sys.argv[4]) if len(sys.argv) > 4 else -1
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.connect((server, 53))
s.setblocking(False)


def query(qid, i):
    name = b"".join(bytes([len(l)]) + l for l in f"s{i % names}.soak.k8s.intra".encode().split(b"."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + b"\0" + struct.pack("!HH", 1, 1)


outstanding = {}  # id -> deadline
sent = answers = 0
start = time.monotonic()
deadline = start + max(60.0, count / 200.0)  # bounded in time, whatever happens
ids = list(range(65536))
random.shuffle(ids)
while (sent < count or outstanding) and time.monotonic() < deadline:
    now = time.monotonic()
    while sent < count and len(outstanding) < 64:
        qid = ids[sent % 65536]
        if qid in outstanding:
            break
        s.send(query(qid, sent))
        outstanding[qid] = now + 1.0
        sent += 1
    try:
        while True:
            r = s.recv(4096)
            qid = struct.unpack("!H", r[:2])[0]
            if outstanding.pop(qid, None) is not None:
                answers += 1
                if answers == progress and os.environ.get("ON_PROGRESS"):
                    subprocess.run(os.environ["ON_PROGRESS"], shell=True)
    except BlockingIOError:
        pass
    for qid in [q for q, d in outstanding.items() if d < now]:
        del outstanding[qid]
    time.sleep(0.0005)
print(answers, sent, round(time.monotonic() - start, 1))
