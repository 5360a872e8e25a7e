#!/usr/bin/env python3
"""TCP peers for tests/systemd.sh, run inside its container. Every wait is
bounded.

  serve PORT...         echo back every byte, on every address, IPv4 and IPv6
  connect ADDR PORT [S] exit 0 if a connection is accepted and echoes a line
                        within S seconds (default 3), 1 otherwise
  hold ADDR PORT DIR    connect and echo a line (exit 1 if that fails), write
                        DIR/up; then, for each token written to DIR/ping,
                        send it, and write what came back (or ERR ...) to
                        DIR/pong; until DIR/stop appears or 900 s passed
"""
import os
import socket
import sys
import threading
import time


def echo(conn):
    try:
        conn.settimeout(900)
        while data := conn.recv(4096):
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def serve(ports):
    listeners = []
    for port in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", int(port)))
        s.listen(128)
        listeners.append(s)

    def accept(s):
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    for s in listeners[1:]:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    accept(listeners[0])


def exchange(s, token):
    """Sends TOKEN and a newline; returns the line that came back."""
    s.sendall(token.encode() + b"\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        got += chunk
    return got.decode().strip()


def connect(addr, port, seconds):
    try:
        with socket.create_connection((addr, int(port)), timeout=seconds) as s:
            s.settimeout(seconds)
            return 0 if exchange(s, "hi") == "hi" else 1
    except OSError:
        return 1


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def hold(addr, port, d):
    try:
        s = socket.create_connection((addr, int(port)), timeout=5)
        s.settimeout(5)
        if exchange(s, "hi") != "hi":
            return 1
    except OSError:
        return 1
    write(os.path.join(d, "up"), "up\n")
    ping, pong = os.path.join(d, "ping"), os.path.join(d, "pong")
    end = time.monotonic() + 900
    while time.monotonic() < end and not os.path.exists(os.path.join(d, "stop")):
        try:
            with open(ping) as f:
                token = f.read().strip()
            os.unlink(ping)
        except FileNotFoundError:
            time.sleep(0.1)
            continue
        try:
            write(pong, exchange(s, token) + "\n")
        except OSError as e:
            write(pong, f"ERR {e}\n")
    s.close()
    return 0


if __name__ == "__main__":
    verb, args = sys.argv[1], sys.argv[2:]
    if verb == "serve":
        serve(args)
    elif verb == "connect":
        sys.exit(connect(args[0], args[1], float(args[2]) if len(args) > 2 else 3.0))
    elif verb == "hold":
        sys.exit(hold(*args))
    else:
        sys.exit(f"unknown verb {verb}")
