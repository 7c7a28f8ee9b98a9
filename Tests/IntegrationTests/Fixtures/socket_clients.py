#!/usr/bin/env python3
"""Many clients of a control socket at once, for SocketAccessTests.

socket_clients.py SOCKET COUNT [--send TEXT] [--drip SECONDS] [--duration SECONDS]

Opens COUNT connections to SOCKET, sends TEXT on each once (default: nothing),
then with --drip sends one space on every connection still open every SECONDS,
for --duration seconds or until the daemon has closed them all. Prints one
JSON object: for each connection, when the daemon closed it (seconds after it
was opened, or null if still open) and the first line it answered (or null).
"""
import argparse
import json
import os
import selectors
import socket
import time

parser = argparse.ArgumentParser()
parser.add_argument("socket")
parser.add_argument("count", type=int)
parser.add_argument("--send", default="")
parser.add_argument("--drip", type=float, default=0)
parser.add_argument("--duration", type=float, default=5)
args = parser.parse_args()

selector = selectors.DefaultSelector()
clients = []
for i in range(args.count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(args.socket)
    opened = time.monotonic()
    client = {"socket": s, "opened": opened, "buffer": b"", "closed": None, "line": None}
    if args.send:
        try:
            s.sendall(args.send.encode())
        except OSError:
            pass  # refused before the request went out: the answer may still be there to read
    s.setblocking(False)
    selector.register(s, selectors.EVENT_READ, client)
    clients.append(client)

start = time.monotonic()
next_drip = start + args.drip if args.drip else None
while time.monotonic() - start < args.duration and any(c["closed"] is None for c in clients):
    timeout = 0.05
    for key, _ in selector.select(timeout):
        client = key.data
        try:
            data = client["socket"].recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if data:
            client["buffer"] += data
            if client["line"] is None and b"\n" in client["buffer"]:
                client["line"] = client["buffer"].split(b"\n", 1)[0].decode(errors="replace")
            continue
        client["closed"] = time.monotonic() - client["opened"]
        selector.unregister(client["socket"])
        client["socket"].close()
    if next_drip is not None and time.monotonic() >= next_drip:
        next_drip += args.drip
        for client in clients:
            if client["closed"] is None:
                try:
                    client["socket"].send(b" ")
                except OSError:
                    pass  # the read side sees the close

print(json.dumps([{"closedAfter": c["closed"], "line": c["line"]} for c in clients]))
os._exit(0)
