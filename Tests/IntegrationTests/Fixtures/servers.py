#!/usr/bin/env python3
"""Pod-side servers for NodeGuard's integration tests.

Usage: servers.py NAME tcp:PORT ... udp:PORT ...
Each server answers every connection or datagram with "NAME:PORT\n", on IPv4
and IPv6 (dual-stack sockets). Prints "ready" once all are listening.
"""
import os
import socket
import sys
import threading


def dual_stack(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def serve_tcp(name, port):
    s = dual_stack(socket.SOCK_STREAM)
    s.bind(("::", port))
    s.listen(64)

    def answer(conn):
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(100)
                conn.sendall(f"{name}:{port}\n".encode())
            except OSError:
                pass

    def loop():
        while True:
            conn, _ = s.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def serve_udp(name, port):
    s = dual_stack(socket.SOCK_DGRAM)
    s.bind(("::", port))

    def loop():
        while True:
            _, peer = s.recvfrom(2048)
            s.sendto(f"{name}:{port}\n".encode(), peer)

    threading.Thread(target=loop, daemon=True).start()


def main():
    name = sys.argv[1]
    for spec in sys.argv[2:]:
        kind, port = spec.split(":")
        (serve_tcp if kind == "tcp" else serve_udp)(name, int(port))
    # One write, then stdout goes to /dev/null: the test closes its end of the
    # pipe as soon as it has read "ready", and print()'s separate write of the
    # newline into a closed pipe used to kill this process (BrokenPipeError)
    # now and then, leaving the pod refusing connections.
    os.write(1, b"ready\n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    threading.Event().wait()


if __name__ == "__main__":
    main()
