#!/usr/bin/env python3
"""Binds an NFLOG group and holds it, as another program (ulogd) would.

Usage: nflog_bind.py GROUP SECONDS. Prints "bound" once it holds the group,
or the error and exits 1.
"""
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULNL_CFG_CMD_BIND = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def main():
    group, seconds = int(sys.argv[1]), float(sys.argv[2])
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    attr = struct.pack("=HHB3x", 4 + 1, NFULA_CFG_CMD, NFULNL_CFG_CMD_BIND)
    nfgen = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group))
    body = nfgen + attr
    hdr = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                      NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    s.send(hdr + body)
    reply = s.recv(4096)
    _, kind, _, _, _ = struct.unpack("=IHHII", reply[:16])
    if kind == NLMSG_ERROR:
        err = struct.unpack("=i", reply[16:20])[0]
        if err:
            print(f"bind failed: errno {-err}")
            return 1
    print("bound", flush=True)
    time.sleep(seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
