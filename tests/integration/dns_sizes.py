#!/usr/bin/env python3
"""DNS of any size, for test-review-dns-path.sh; each command is bounded in time.
  serve SECONDS ADDR...         UDP and TCP port 53 on each ADDR: answers A for h<N>.* with
                                203.0.113.<N> and AAAA with 2001:db8:5::<N>, TTL 60, at once
  ask SERVER NAME TYPE SIZE [tcp]  one query of TYPE (A, AAAA) for NAME padded (EDNS padding
                                option) to SIZE bytes of DNS message; prints each address
                                answered; exit 0 when one came within 2 s
  burst SERVER COUNT TYPE       COUNT queries (h1.k8s.intra ... h<COUNT>.k8s.intra) from one
                                socket at once, then their answers for 3 s; prints how many came"""
import ipaddress
import select
import socket
import struct
import sys
import time

from dnswire import name_wire

TYPES = {"A": 1, "AAAA": 28}


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def query(qid, name, qtype, size=0):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1) + name_wire(name) + struct.pack("!HH", TYPES[qtype], 1)
    opt = b"\0" + struct.pack("!HHIH", 41, 4096, 0, 0)
    pad = max(0, size - len(q) - len(opt) - 4)
    if size:
        opt = b"\0" + struct.pack("!HHIH", 41, 4096, 0, 4 + pad) + struct.pack("!HH", 12, pad) + b"\0" * pad
    return q + opt


def parse_question(msg):
    i = 12
    labels = []
    while msg[i]:
        labels.append(msg[i + 1:i + 1 + msg[i]].decode())
        i += 1 + msg[i]
    qtype, _ = struct.unpack("!HH", msg[i + 1:i + 5])
    return ".".join(labels), qtype, msg[12:i + 5]


def answer(msg):
    name, qtype, question = parse_question(msg)
    first = name.split(".")[0]
    rdata = None
    if first.startswith("h") and first[1:].isdigit():
        n = int(first[1:])
        if qtype == 1 and n < 256:
            rdata = bytes([203, 0, 113, n])
        elif qtype == 28:
            rdata = ipaddress.IPv6Address("2001:db8:5::%x" % n).packed
    head = struct.pack("!HHHHHH", struct.unpack("!H", msg[:2])[0], 0x8180 if rdata else 0x8183, 1,
                       1 if rdata else 0, 0, 0)
    out = head + question
    if rdata:
        out += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rdata)) + rdata
    return out


def addresses(msg):
    _, _, question = parse_question(msg)
    i = 12 + len(question)
    (ancount,) = struct.unpack("!H", msg[6:8])
    out = []
    for _ in range(ancount):
        i += 2  # a pointer to the question's name
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[i:i + 10])
        i += 10
        if rtype == 1:
            out.append(socket.inet_ntop(socket.AF_INET, msg[i:i + rdlen]))
        elif rtype == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, msg[i:i + rdlen]))
        i += rdlen
    return out


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def serve(seconds, addrs):
    socks = []
    for a in addrs:
        u = socket.socket(family(a), socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: a burst must not overflow it
        u.bind((a, 53))
        t = socket.socket(family(a), socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((a, 53))
        t.listen(64)
        socks += [u, t]
    print("serving", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select(socks, [], [], 0.5)
        for s in ready:
            try:
                if s.type == socket.SOCK_DGRAM:
                    msg, peer = s.recvfrom(65535)
                    s.sendto(answer(msg), peer)
                else:
                    c, _ = s.accept()
                    c.settimeout(2)
                    with c:
                        (n,) = struct.unpack("!H", recv_exact(c, 2))
                        out = answer(recv_exact(c, n))
                        c.sendall(struct.pack("!H", len(out)) + out)
            except (OSError, IndexError, struct.error):
                pass


def ask(server, name, qtype, size, tcp):
    msg = query(0x4d2, name, qtype, size)
    try:
        if tcp:
            with socket.create_connection((server, 53), timeout=2) as s:
                s.sendall(struct.pack("!H", len(msg)) + msg)
                (n,) = struct.unpack("!H", recv_exact(s, 2))
                reply = recv_exact(s, n)
        else:
            s = socket.socket(family(server), socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(msg, (server, 53))
            reply, _ = s.recvfrom(65535)
    except OSError:
        return 1
    found = addresses(reply)
    for a in found:
        print(a)
    return 0 if found else 1


def burst(server, count, qtype):
    s = socket.socket(family(server), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
    for i in range(1, count + 1):
        s.sendto(query(i, "h%d.k8s.intra" % i, qtype), (server, 53))
    got = set()
    deadline = time.monotonic() + 3
    while len(got) < count and time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.2)
        if r:
            msg = s.recv(65535)
            if addresses(msg):
                got.add(struct.unpack("!H", msg[:2])[0])
    print(len(got))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(float(sys.argv[2]), sys.argv[3:])
    elif cmd == "ask":
        sys.exit(ask(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), len(sys.argv) > 6 and sys.argv[6] == "tcp"))
    elif cmd == "burst":
        burst(sys.argv[2], int(sys.argv[3]), sys.argv[4])
