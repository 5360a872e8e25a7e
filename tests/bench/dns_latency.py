#!/usr/bin/env python3
"""Latency of DNS over UDP at a fixed, low rate, as a client sees it.

Usage: dns_latency.py SERVER NAMEFILE QPS SECONDS

One query at a time, paced to QPS, each name of NAMEFILE ("name TYPE" per
line, as dnsperf reads it) once in order. Prints the round trip's p50, p90,
p99 and p99.9 in microseconds, how many were answered and how many timed
out (after 1 s). A lost or late query never stalls the pacing for more than
its timeout; the run ends after SECONDS or at the end of the file.

SLOW_US=N also prints a line "slow SENT RTT NAME" for each answer that took
over N us, SENT in seconds of CLOCK_MONOTONIC (the clock of
`perf record -k CLOCK_MONOTONIC`), to find what ran meanwhile.
"""
import os
import socket
import struct
import sys
import time

TYPES = {"A": 1, "AAAA": 28}


def query(qid, name, qtype):
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)


def main():
    server, namefile, qps, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    names = []
    with open(namefile) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                names.append((parts[0], TYPES[parts[1]]))
    sock = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((server, 53))
    sock.settimeout(1.0)
    interval = 1.0 / qps
    slow_ns = int(os.environ.get("SLOW_US", "0")) * 1000
    rtts, lost, slow = [], 0, []
    start = time.perf_counter()
    next_send = start
    for i, (name, qtype) in enumerate(names):
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if next_send > now:
            time.sleep(next_send - now)
        next_send += interval
        qid = (i * 7919 + os.getpid()) & 0xFFFF
        sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        sock.send(query(qid, name, qtype))
        try:
            while True:
                reply = sock.recv(4096)
                if len(reply) >= 2 and struct.unpack("!H", reply[:2])[0] == qid:
                    break
        except socket.timeout:
            lost += 1
            continue
        took = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - sent
        rtts.append(took / 1000.0)
        if slow_ns and took > slow_ns:
            slow.append((sent, took, name))
    rtts.sort()

    def pct(p):
        return rtts[min(len(rtts) - 1, int(len(rtts) * p))] if rtts else float("nan")

    print(f"answered {len(rtts)} lost {lost} p50 {pct(0.50):.0f} p90 {pct(0.90):.0f} "
          f"p99 {pct(0.99):.0f} p99.9 {pct(0.999):.0f} us")
    for sent, took, name in slow:
        print(f"slow {sent / 1e9:.6f} {took / 1000:.0f} {name}")


if __name__ == "__main__":
    main()
