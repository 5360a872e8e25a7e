#!/usr/bin/env python3
"""Hostile DNS clients for test-dns-gate.sh; each exits within seconds.
  udp-answer SERVER NAME        an answer-shaped (QR=1) message asking NAME, to SERVER:53 over UDP
  tcp-answer SERVER NAME        the same over a TCP connection
  tcp-gap SRC SERVER NAME       raw TCP: the end of a query for NAME past a gap, then its start
  tcp-rst SRC SERVER NAME       raw TCP: the start of a query, an in-window RST, the rest
  tcp-urgent SRC SERVER NAME    raw TCP: an urgent byte (URG, pointer 1), then the query: the
                                server's stack takes the byte out, a reader that keeps it is off by one
  tcp-second-syn SRC SERVER NAME  raw TCP: after the handshake a second SYN 2 bytes earlier with 2
                                bytes of data (the server ignores it), then, once the server resent
                                its SYN-ACK, the query
  tcp-two SERVER NAME1 NAME2    two queries in one segment; prints "id rcode address..." per answer
  v6-ext SRC SERVER NAME COUNT  a UDP query over IPv6 behind COUNT destination options headers
  syn-flood SRC SERVER COUNT    raw TCP: COUNT SYNs to SERVER:53 from as many ports, never completed
  tcp-idle SERVER NAME GOFILE   a TCP connection to SERVER:53 made at once (its local port written
                                to GOFILE.port), the query for NAME sent on it once GOFILE exists
                                (within 30 s); prints "answer ADDRESS...", "closed", "reset" or "timeout"
  rst-sweep SRC SPORT DST DPORT STEP  raw IPv4: RSTs from SRC:SPORT (an address not this namespace's)
                                to DST:DPORT, blind: one every STEP sequence numbers over all 2**32, so
                                that some fall in the receiver's window (and pass conntrack's check)
  tcp-reopen SRC SERVER NAME SECRET HOW  raw TCP: queries for NAME and an empty message (the server
                                closes), the server's FIN acknowledged, ours never sent; then its
                                closed socket goes (HOW: "rst", an RST within its window but not at
                                its next byte; "wait", its FIN_WAIT2 timeout passes, fqdnd's stream
                                kept fresh) and the same SYN again opens a new connection, on which
                                a query for SECRET goes at the old sequence numbers
  tcp-cookie SRC SERVER SECRET  raw TCP: a SYN, and from the server's SYN-ACK (a SYN cookie: it keeps
                                no state) an ACK that is a valid cookie for an earlier ISN, carrying
                                a query for SECRET at sequence numbers before the SYN's
  tcp-cookie-inside SRC SERVER NAME SECRET  raw TCP: a SYN (the server answers with a cookie, keeping
                                no state); then a query for NAME whose additional record holds a framed
                                query for SECRET, with an ACK the cookie check refuses (so the server
                                opens nothing); then the same bytes from the hidden query on, with an
                                ACK that is a valid cookie there: a server reading from that point
  tcp-cookie-split SRC SERVER NAME SECRET GOFILE  raw TCP (the server under SYN cookies): four queries
                                for NAME and the start of a fifth whose additional record holds a
                                framed query for SECRET; the server's answers acknowledged but the
                                last, so that it sent more than the client; once GOFILE exists (the
                                server gave the connection up), the rest of the fifth with an ACK that
                                is a valid cookie at that point (the local port is in GOFILE.port)
  sniff SECONDS FILE            appends every frame this namespace receives to FILE (the server's
                                side: what reached it, whether its DNS server logs it or not)
Raw TCP needs the namespace's own RSTs dropped (its packets carry mark 7)."""
import os
import random
import select
import socket
import struct
import sys
import time

from dnswire import checksum, name_wire

MARK = 7


def message(qid, name, answer=False):
    flags = 0x8180 if answer else 0x0100
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + name_wire(name) + struct.pack("!HH", 1, 1)


def framed(m):
    return struct.pack("!H", len(m)) + m


def hiding(name, secret):
    """A framed query for NAME whose additional record (NULL, root name) holds a framed query for
    SECRET, and where that hidden one begins."""
    hidden = framed(message(4243, secret))
    outer = message(4242, name)
    outer = outer[:10] + struct.pack("!H", 1) + outer[12:]  # ARCOUNT 1
    outer += b"\x00" + struct.pack("!HHIH", 10, 1, 0, len(hidden)) + hidden
    wire = framed(outer)
    return wire, len(wire) - len(hidden)


class RawTcp:
    """A TCP connection made by hand, so that sequence numbers are ours."""

    def __init__(self, src, dst, dport=53, complete=True, sport=None, isn=None):
        self.src, self.dst, self.dport = src, dst, dport
        self.sport = sport or random.randint(20000, 60000)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        self.isn = random.randint(1000, 2**31) if isn is None else isn
        self.seq = self.isn + 1
        self.send(self.isn, 0, 0x02, b"")
        self.ack = self.syn_ack(3)
        if self.ack is None:
            sys.exit("no SYN-ACK")
        if complete:
            self.send(self.seq, self.ack, 0x10, b"")

    def segments(self, timeout):
        """This connection's segments from the server within timeout: (seq, flags, payload)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            pkt = self.sock.recv(65535)
            ihl = (pkt[0] & 15) * 4
            sport, dport, seq, _, off, flags = struct.unpack("!HHIIBB", pkt[ihl:ihl + 14])
            if socket.inet_ntoa(pkt[12:16]) == self.dst and sport == self.dport and dport == self.sport:
                yield seq, flags, pkt[ihl + (off >> 4) * 4:]

    def syn_ack(self, timeout):
        """The server's SYN-ACK within timeout: the sequence number after it."""
        for seq, flags, _ in self.segments(timeout):
            if flags & 0x12 == 0x12:
                return (seq + 1) % 2**32
        return None

    def send(self, seq, ack, flags, data, urgent=0):
        hdr = struct.pack("!HHIIBBHHH", self.sport, self.dport, seq % 2**32, ack, 5 << 4, flags, 65535, 0, urgent)
        pseudo = socket.inet_aton(self.src) + socket.inet_aton(self.dst) + struct.pack("!BBH", 0, 6, len(hdr) + len(data))
        c = checksum(pseudo + hdr + data)
        self.sock.sendto(hdr[:16] + struct.pack("!H", c) + hdr[18:] + data, (self.dst, 0))

    def data(self, offset, data):
        self.send(self.seq + offset, self.ack, 0x18, data)

    def read_until_fin(self, timeout):
        """The server's bytes in order until its FIN (acknowledged as they come), or None."""
        got = b""
        for seq, flags, body in self.segments(timeout):
            if seq != self.ack:
                continue
            got += body
            self.ack = (self.ack + len(body) + (flags & 0x01)) % 2**32
            self.send(self.seq, self.ack, 0x10, b"")
            if flags & 0x01:
                return got
        return None


cmd = sys.argv[1]
if cmd == "udp-answer":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(message(4711, sys.argv[3], answer=True), (sys.argv[2], 53))
    try:
        s.recvfrom(4096)
    except OSError:
        pass
elif cmd == "tcp-answer":
    with socket.create_connection((sys.argv[2], 53), timeout=2) as s:
        s.sendall(framed(message(4712, sys.argv[3], answer=True)))
        try:
            s.recv(4096)
        except OSError:
            pass
elif cmd in ("tcp-gap", "tcp-rst"):
    src, server, name = sys.argv[2:5]
    c = RawTcp(src, server)
    q = framed(message(4713, name))
    if cmd == "tcp-gap":
        c.data(6, q[6:])   # past a gap: fqdnd has not seen bytes 0-5
        time.sleep(0.3)
        c.data(0, q[:6])
    else:
        c.data(0, q[:4])   # length and id
        time.sleep(0.3)
        c.send(c.seq + 4 + 1000, c.ack, 0x04, b"")  # in the window, not exact: the server ignores it
        time.sleep(0.3)
        c.data(4, q[4:])   # flags first: read as a length, a stream out of step reads garbage
    time.sleep(1)
elif cmd == "tcp-urgent":
    src, server, name = sys.argv[2:5]
    c = RawTcp(src, server)
    c.send(c.seq, c.ack, 0x18 | 0x20, b"\x01" + framed(message(4714, name)), urgent=1)
    time.sleep(1)
elif cmd == "tcp-second-syn":
    src, server, name = sys.argv[2:5]
    c = RawTcp(src, server, complete=False)
    c.send(c.isn - 2, 0, 0x02, b"\x10\x00")  # out of the server's window: it ignores it
    c.syn_ack(4)                              # the server resends its SYN-ACK (about 1 s)
    c.send(c.seq, c.ack, 0x18, framed(message(4715, name)))  # completes the handshake with the query
    time.sleep(1)
elif cmd == "tcp-two":
    server, first, second = sys.argv[2:5]
    with socket.create_connection((server, 53), timeout=3) as s:
        s.sendall(framed(message(1, first)) + framed(message(2, second)))
        buf = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                m, buf = buf[2:2 + n], buf[2 + n:]
                qid, flags = struct.unpack("!HH", m[:4])
                addrs = [socket.inet_ntoa(m[i + 10:i + 14]) for i in range(len(m) - 13)
                         if m[i:i + 4] == b"\x00\x01\x00\x01" and m[i + 8:i + 10] == b"\x00\x04"]
                print(qid, flags & 15, *addrs)
            try:
                chunk = s.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
elif cmd == "v6-ext":
    src, dst, name, count = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    payload = message(4714, name)
    sport = random.randint(20000, 60000)
    udp = struct.pack("!HHHH", sport, 53, 8 + len(payload), 0) + payload
    pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) \
        + struct.pack("!IxxxB", len(udp), 17)
    udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    ext = b""
    for i in range(count):  # destination options, each padded (PadN) to 8 bytes
        ext += bytes([60 if i + 1 < count else 17, 0, 1, 4, 0, 0, 0, 0])
    body = ext + udp
    ip = struct.pack("!IHBB", 6 << 28, len(body), 60 if count else 17, 64) \
        + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ip + body, (dst, 0))
    time.sleep(0.5)
elif cmd == "syn-flood":
    src, server, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    for i, sport in enumerate(random.sample(range(1024, 65535), count)):
        hdr = struct.pack("!HHIIBBHHH", sport, 53, random.getrandbits(32), 0, 5 << 4, 0x02, 65535, 0, 0)
        pseudo = socket.inet_aton(src) + socket.inet_aton(server) + struct.pack("!BBH", 0, 6, len(hdr))
        s.sendto(hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:], (server, 0))
        if i % 500 == 499:
            time.sleep(0.02)  # within the queue's length
elif cmd == "tcp-idle":
    server, name, go = sys.argv[2:5]
    with socket.create_connection((server, 53), timeout=3) as s:
        with open(go + ".port.tmp", "w") as f:
            f.write(str(s.getsockname()[1]))
        os.rename(go + ".port.tmp", go + ".port")
        deadline = time.monotonic() + 30
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            s.sendall(framed(message(4716, name)))
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(4096)
                if not chunk:
                    sys.exit(print("closed"))
                buf += chunk
        except ConnectionResetError:
            sys.exit(print("reset"))
        except socket.timeout:
            sys.exit(print("timeout"))
        m = buf[2:]
        print("answer", *[socket.inet_ntoa(m[i + 10:i + 14]) for i in range(len(m) - 13)
                          if m[i:i + 4] == b"\x00\x01\x00\x01" and m[i + 8:i + 10] == b"\x00\x04"])
elif cmd == "rst-sweep":
    src, sport, dst, dport, step = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # the IP header is ours
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
    start = random.getrandbits(32)
    for i in range((2**32 + step - 1) // step):
        hdr = struct.pack("!HHIIBBHHH", sport, dport, (start + i * step) % 2**32, 0, 5 << 4, 0x04, 0, 0, 0)
        s.sendto(head + hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:], (dst, 0))
elif cmd == "tcp-reopen":
    src, server, name, secret, how = sys.argv[2:7]
    c = RawTcp(src, server)
    sent = framed(message(1, name)) + framed(message(2, name)) + framed(message(3, name)) + b"\x00\x00"
    c.data(0, sent)
    c.seq += len(sent)
    if c.read_until_fin(3) is None:
        sys.exit("the server did not close")
    if how == "rst":
        time.sleep(0.3)
        c.send(c.seq + 1000, 0, 0x04, b"")
    else:
        end = time.monotonic() + float(how.split(":")[1])  # wait:SECONDS, past the server's fin timeout
        while time.monotonic() < end:
            time.sleep(min(1, end - time.monotonic()))
    time.sleep(0.3)
    try:
        again = RawTcp(src, server, complete=True, sport=c.sport, isn=c.isn)
    except SystemExit:
        sys.exit(print("the SYN again got no SYN-ACK"))
    again.data(0, framed(message(4242, secret)))
    print("the SYN again was answered; query sent")
    time.sleep(1)
elif cmd == "tcp-cookie":
    src, server, secret = sys.argv[2:5]
    c = RawTcp(src, server, complete=False)
    # The cookie checks ack - 1 - cookie == seq - 1 - isn: the same shift of
    # both is a valid cookie for the ISN shifted so.
    shift = 100000
    c.send(c.seq - shift, (c.ack - shift) % 2**32, 0x18, framed(message(4242, secret)))
    time.sleep(1)
elif cmd == "tcp-cookie-inside":
    src, server, name, secret = sys.argv[2:6]
    c = RawTcp(src, server, complete=False)
    wire, k = hiding(name, secret)
    c.send(c.seq, (c.ack + 5000) % 2**32, 0x18, wire)
    time.sleep(0.5)
    c.send(c.seq + k, (c.ack + k) % 2**32, 0x18, wire[k:])
    time.sleep(1)
elif cmd == "tcp-cookie-split":
    src, server, name, secret, go = sys.argv[2:7]
    wire, k = hiding(name, secret)
    first = b"".join(framed(message(10 + i, name)) for i in range(4)) + wire[:k]
    c = RawTcp(src, server)
    with open(go + ".port", "w") as f:
        f.write(str(c.sport))
    c.data(0, first)
    server_isn = (c.ack - 1) % 2**32
    expected = 4 * (len(framed(message(10, name))) + 16)  # each answer: the query and one A record
    got = 0
    for seq, flags, body in c.segments(3):
        if body and seq == (server_isn + 1 + got) % 2**32:
            got += len(body)
            if got >= expected:
                break  # the last answer left unacknowledged: the server resends it until it gives up
            c.send(c.seq + len(first), (server_isn + 1 + got) % 2**32, 0x10, b"")
    if got < expected or expected <= len(first):
        sys.exit("the server sent %d bytes of %d, the client %d" % (got, expected, len(first)))
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.1)
    split = len(first)
    c.send(c.seq + split, (server_isn + 1 + split) % 2**32, 0x18, wire[k:])
    time.sleep(1)
elif cmd == "sniff":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
    s.settimeout(0.2)
    end = time.monotonic() + float(sys.argv[2])
    with open(sys.argv[3], "ab", buffering=0) as out:
        while time.monotonic() < end:
            try:
                frame, addr = s.recvfrom(65535)
            except OSError:
                continue
            if addr[2] != socket.PACKET_OUTGOING:
                out.write(frame)
else:
    sys.exit(__doc__)
