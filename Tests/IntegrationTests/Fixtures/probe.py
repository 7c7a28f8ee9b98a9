#!/usr/bin/env python3
"""One request to a server; exit 0 and print the answer if one came back.

Usage: probe.py tcp|udp HOST PORT [--timeout S] [--source-port P]
Exit 1 when no answer arrived in time (dropped), 2 when refused or unreachable.
"""
import argparse
import socket
import sys

parser = argparse.ArgumentParser()
parser.add_argument("protocol", choices=["tcp", "udp"])
parser.add_argument("host")
parser.add_argument("port", type=int)
parser.add_argument("--timeout", type=float, default=1.0)
parser.add_argument("--source-port", type=int, default=0)
args = parser.parse_args()

family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
kind = socket.SOCK_STREAM if args.protocol == "tcp" else socket.SOCK_DGRAM
s = socket.socket(family, kind)
s.settimeout(args.timeout)
if args.source_port:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", args.source_port))
try:
    if args.protocol == "tcp":
        s.connect((args.host, args.port))
        s.sendall(b"ping\n")
        data = s.recv(100)
    else:
        s.sendto(b"ping\n", (args.host, args.port))
        data, _ = s.recvfrom(100)
except socket.timeout:
    print("timeout", file=sys.stderr)
    sys.exit(1)
except OSError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
if not data:
    print("closed without an answer", file=sys.stderr)
    sys.exit(2)
print(data.decode().strip())
