#!/usr/bin/env python3
"""What a hostile pod does to get around fqdnd, for the integration tests.
  ask-again SERVER NAME COUNT: one UDP socket (one source port) asks NAME
      COUNT times; prints each answer's RCODE name, or "timeout"
  sink ADDR PORT FILE: receives UDP on ADDR:PORT, appends each sender to FILE
  send-from SRC DST PORT: three UDP datagrams from SRC (an address of this
      namespace) to DST:PORT
  forge IFACE ROUTER_MAC SERVER CLIENT NAME ADDR: asks SERVER for NAME from
      CLIENT (after a warm-up query from the same port), then sends over AF_PACKET (CAP_NET_RAW) to the router's MAC an
      answer in SERVER's name giving ADDR, to be forwarded back to CLIENT;
      prints the addresses of the answers that came back
  prime IFACE ROUTER_MAC SERVER CLIENT NAME: over AF_PACKET, a packet "from"
      SERVER:53 to CLIENT:P bounced off the router (so that conntrack there
      holds a flow whose reply direction is CLIENT:P -> SERVER:53), then a
      query for NAME from port P; prints its RCODE name, or "timeout"
  icmp-related DST CLIENT CLIENT_PORT DST_PORT MARKER: an ICMP port
      unreachable to DST (IPv4) that quotes a TCP segment DST:DST_PORT ->
      CLIENT:CLIENT_PORT, as if this namespace had refused it; MARKER follows
      the quoted header (conntrack ties such an error to CLIENT's flow)
  stray SRC DST PORT: a TCP RST, a FIN and a FIN+ACK from SRC to DST:PORT on a
      connection nobody has (what comes after a flow ended): conntrack calls
      them invalid
Every wait is bounded."""
import ipaddress
import random
import socket
import struct
import sys
import time

from dnswire import checksum, name_wire

RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def query(qid, name, qtype):
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name_wire(name) + struct.pack("!HH", qtype, 1)


def answer(qid, name, addr):
    ip = ipaddress.ip_address(addr)
    qtype = 1 if ip.version == 4 else 28
    msg = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + name_wire(name) + struct.pack("!HH", qtype, 1)
    return msg + b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(ip.packed)) + ip.packed


def ip_udp(src, dst, sport, dport, payload):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, len(udp))
        udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xffff) + udp[8:]
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), random.randrange(65536), 0x4000, 64, 17, 0,
                          s.packed, d.packed)
        hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
        return 0x0800, hdr + udp
    pseudo = s.packed + d.packed + struct.pack("!IxxxB", len(udp), 17)
    udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xffff) + udp[8:]
    return 0x86DD, struct.pack("!IHBB", 0x60000000, len(udp), 17, 64) + s.packed + d.packed + udp


def parse_addresses(msg):
    """The A/AAAA data of an answer (names skipped, compression allowed)."""
    def skip(off):
        while off < len(msg):
            n = msg[off]
            if n == 0:
                return off + 1
            if n & 0xc0 == 0xc0:
                return off + 2
            off += 1 + n
        return off
    qd, an = struct.unpack("!HH", msg[4:8])
    off = 12
    for _ in range(qd):
        off = skip(off) + 4
    out = []
    for _ in range(an):
        off = skip(off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if rtype in (1, 28):
            out.append(str(ipaddress.ip_address(msg[off:off + rdlen])))
        off += rdlen
    return out


def ask_again(server, name, count):
    s = socket.socket(family(server), socket.SOCK_DGRAM)
    s.settimeout(2)
    for i in range(count):
        qid = random.randrange(65536)
        s.sendto(query(qid, name, 1), (server, 53))
        deadline = time.monotonic() + 2
        got = "timeout"
        while time.monotonic() < deadline:
            try:
                msg, _ = s.recvfrom(4096)
            except OSError:
                break
            if len(msg) >= 4 and struct.unpack("!H", msg[:2])[0] == qid:
                got = RCODES.get(msg[3] & 0xf, str(msg[3] & 0xf))
                break
        print(got, flush=True)


def sink(addr, port, path):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    s.settimeout(1)
    end = time.monotonic() + 600
    while time.monotonic() < end:
        try:
            _, peer = s.recvfrom(4096)
        except OSError:
            continue
        with open(path, "a") as f:
            f.write(peer[0] + "\n")


def send_from(src, dst, port):
    s = socket.socket(family(dst), socket.SOCK_DGRAM)
    s.bind((src, 0))
    for _ in range(3):
        s.sendto(b"spoofed", (dst, int(port)))
        time.sleep(0.05)


def forge(iface, router_mac, server, client, name, addr):
    s = socket.socket(family(server), socket.SOCK_DGRAM)
    s.bind((client, 0))
    s.settimeout(0.2)
    cport = s.getsockname()[1]
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    mine = raw.getsockname()[4]
    dst_mac = bytes.fromhex(router_mac.replace(":", ""))
    qtype = 1 if ipaddress.ip_address(addr).version == 4 else 28
    # A warm-up query first, so that the flow is in conntrack (confirmed)
    # when the forged answer comes: then it is taken as the server's reply.
    s.sendto(query(random.randrange(65536), name, qtype), (server, 53))
    time.sleep(0.3)
    qid = random.randrange(65536)
    s.sendto(query(qid, name, qtype), (server, 53))
    ethertype, packet = ip_udp(server, client, 53, cport, answer(qid, name, addr))
    frame = dst_mac + mine + struct.pack("!H", ethertype) + packet
    got = []
    for _ in range(3):
        raw.send(frame)
        time.sleep(0.02)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            msg, _ = s.recvfrom(4096)
        except OSError:
            continue
        got.extend(parse_addresses(msg))
    print(" ".join(got) if got else "none", flush=True)


def prime(iface, router_mac, server, client, name):
    s = socket.socket(family(server), socket.SOCK_DGRAM)
    s.bind((client, 0))
    s.settimeout(2)
    cport = s.getsockname()[1]
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    ethertype, packet = ip_udp(server, client, 53, cport, answer(1, name, "203.0.113.9"))
    raw.send(bytes.fromhex(router_mac.replace(":", "")) + raw.getsockname()[4] + struct.pack("!H", ethertype) + packet)
    time.sleep(0.3)
    qid = random.randrange(65536)
    s.sendto(query(qid, name, 1), (server, 53))
    got = "timeout"
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            msg, _ = s.recvfrom(4096)
        except OSError:
            break
        if len(msg) >= 4 and struct.unpack("!H", msg[:2])[0] == qid:
            got = RCODES.get(msg[3] & 0xf, str(msg[3] & 0xf))
            break
    print(got, flush=True)


def icmp_related(dst, client, client_port, dst_port, marker):
    inner_tcp = struct.pack("!HHI", int(dst_port), int(client_port), random.getrandbits(32))
    inner_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 40, 0, 0, 64, 6, 0,
                           socket.inet_aton(dst), socket.inet_aton(client))
    inner_ip = inner_ip[:10] + struct.pack("!H", checksum(inner_ip)) + inner_ip[12:]
    body = inner_ip + inner_tcp + marker.encode()
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + body
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    for _ in range(3):
        s.sendto(icmp, (dst, 0))


def stray(src, dst, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    for sport, flags in ((41000, 0x04), (41001, 0x01), (41002, 0x11)):
        hdr = struct.pack("!HHIIBBHHH", sport, int(port), random.getrandbits(32), random.getrandbits(32), 5 << 4,
                          flags, 1000, 0, 0)
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
        s.sendto(hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:], (dst, 0))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ask-again":
        ask_again(args[0], args[1], int(args[2]))
    elif cmd == "sink":
        sink(*args)
    elif cmd == "send-from":
        send_from(*args)
    elif cmd == "forge":
        forge(*args)
    elif cmd == "prime":
        prime(*args)
    elif cmd == "stray":
        stray(*args)
    elif cmd == "icmp-related":
        icmp_related(*args)
    else:
        sys.exit("unknown command " + cmd)
