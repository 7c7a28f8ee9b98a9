#!/usr/bin/env python3
"""Print a large kube-proxy (iptables mode) nat table for iptables-restore.

Imitates the *nat table that kube-proxy's iptables proxier
(pkg/proxy/iptables/proxier.go) writes on a node with many NodePort services,
in the same shape as the small fixture kube-proxy-nat.rules. Uses no
placeholders: every address is generated. Used to measure how NodeGuard
copes with a big table (iptables-legacy-save / libiptc reads).

Usage:
  make-kube-proxy-nat.py --services N [--family 4|6] [--first-nodeport 30000]
                         [--endpoints-per-service 2]

  --family 4 (default): feed to iptables-legacy-restore / iptables-nft-restore
  --family 6:           feed to ip6tables-legacy-restore / ip6tables-nft-restore

For each service i (namespace ns-<i // 100>, name svc-<i>, one port):
  KUBE-SERVICES   ClusterIP rule -> KUBE-SVC-<hash>
  KUBE-NODEPORTS  NodePort rule  -> KUBE-EXT-<hash>
  KUBE-EXT-<hash> masquerade mark, then KUBE-SVC-<hash>
  KUBE-SVC-<hash> masquerade off-cluster sources, then one KUBE-SEP-<hash> per
                  endpoint chosen with -m statistic --mode random
  KUBE-SEP-<hash> hairpin masquerade mark, DNAT to <pod>:8080
That is 7 + 4 * endpoints lines in iptables-save per service: with the default
of 2 endpoints, 5,000 services give about 75,000 lines.

Hashes are computed as kube-proxy does (servicePortChainName /
servicePortEndpointChainName): the first 16 characters of the base32 encoding
of sha256(servicePortName + protocol [+ endpoint]), so names are <= 25 chars.

NodePorts: service i gets port 30000 + (first-nodeport - 30000 + i) % 2768,
always inside 30000-32767. The first 2,768 services are tcp; the next lap
(services 2,768-5,535) is udp, the third (5,536-8,303) sctp, so every
(port, protocol) pair is unique and every service has exactly one NodePort.
More than 8,304 services is refused.

Addresses: ClusterIPs from 10.96.0.0/16 (fd00:10:96::/112), pod IPs from
10.244.0.0/16 (fd00:10:244::/64). Pod IPs are reused once the /16 is used up
(more than 65,000 endpoints in total); chain names stay unique because the
hash includes the service.
"""
import argparse
import base64
import hashlib
import ipaddress
import sys

NODEPORT_MIN = 30000
NODEPORT_MAX = 32767
NODEPORT_COUNT = NODEPORT_MAX - NODEPORT_MIN + 1  # 2768
PROTOCOLS = ["tcp", "udp", "sctp"]
# Per protocol: (port name, service port), so a udp service looks like DNS.
SERVICE_PORTS = {"tcp": ("http", 80), "udp": ("dns", 53), "sctp": ("sig", 9899)}
TARGET_PORT = 8080
MASQ_MARK = "0x4000/0x4000"


def port_proto_hash(text):
    """kube-proxy's portProtoHash: base32(sha256(text))[:16]."""
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def main():
    parser = argparse.ArgumentParser(description="Print a kube-proxy-shaped *nat table.")
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--family", type=int, choices=[4, 6], default=4)
    parser.add_argument("--first-nodeport", type=int, default=30000)
    parser.add_argument("--endpoints-per-service", type=int, default=2)
    args = parser.parse_args()

    if args.services < 0:
        parser.error("--services must be >= 0")
    if args.services > NODEPORT_COUNT * len(PROTOCOLS):
        parser.error(f"at most {NODEPORT_COUNT * len(PROTOCOLS)} services have a unique (port, protocol)")
    if not NODEPORT_MIN <= args.first_nodeport <= NODEPORT_MAX:
        parser.error(f"--first-nodeport must be in {NODEPORT_MIN}-{NODEPORT_MAX}")
    if args.endpoints_per_service < 1:
        parser.error("--endpoints-per-service must be >= 1")

    v6 = args.family == 6
    if v6:
        cluster_net = ipaddress.IPv6Network("fd00:10:96::/112")
        pod_net = ipaddress.IPv6Network("fd00:10:244::/64")
        host_len = 128
    else:
        cluster_net = ipaddress.IPv4Network("10.96.0.0/16")
        pod_net = ipaddress.IPv4Network("10.244.0.0/16")
        host_len = 32
    # Skip the first addresses as a real cluster would (.1 is "kubernetes", .10 DNS).
    cluster_first = 16
    cluster_room = 65536 - cluster_first - 1
    if args.services > cluster_room:
        parser.error(f"at most {cluster_room} services fit in {cluster_net}")
    pod_first = 2
    pod_room = 65000

    def cluster_ip(i):
        return cluster_net.network_address + cluster_first + i

    def pod_ip(n):
        return pod_net.network_address + pod_first + (n % pod_room)

    def ip_port(ip, port):
        return f"[{ip}]:{port}" if v6 else f"{ip}:{port}"

    chains = []  # declarations after the fixed ones
    rules = []   # every -A line except the final KUBE-SERVICES rule

    for i in range(args.services):
        proto = PROTOCOLS[i // NODEPORT_COUNT]
        nodeport = NODEPORT_MIN + (args.first_nodeport - NODEPORT_MIN + i) % NODEPORT_COUNT
        port_name, svc_port = SERVICE_PORTS[proto]
        namespace = f"ns-{i // 100}"
        svc_port_name = f"{namespace}/svc-{i}:{port_name}"
        svc_hash = port_proto_hash(svc_port_name + proto)
        svc_chain = "KUBE-SVC-" + svc_hash
        ext_chain = "KUBE-EXT-" + svc_hash
        cip = cluster_ip(i)
        endpoints = [pod_ip(i * args.endpoints_per_service + j) for j in range(args.endpoints_per_service)]
        sep_chains = [
            "KUBE-SEP-" + port_proto_hash(svc_port_name + proto + ip_port(ep, TARGET_PORT))
            for ep in endpoints
        ]

        chains += [svc_chain, ext_chain] + sep_chains
        rules.append(
            f'-A KUBE-SERVICES -d {cip}/{host_len} -p {proto} -m comment --comment "{svc_port_name} cluster IP" '
            f"-m {proto} --dport {svc_port} -j {svc_chain}"
        )
        rules.append(
            f'-A KUBE-NODEPORTS -p {proto} -m comment --comment "{svc_port_name}" '
            f"-m {proto} --dport {nodeport} -j {ext_chain}"
        )
        rules.append(
            f'-A {ext_chain} -m comment --comment "masquerade traffic for {svc_port_name} external destinations" '
            f"-j KUBE-MARK-MASQ"
        )
        rules.append(f"-A {ext_chain} -j {svc_chain}")
        rules.append(
            f"-A {svc_chain} ! -s {pod_net} -d {cip}/{host_len} -p {proto} "
            f'-m comment --comment "{svc_port_name} cluster IP" -m {proto} --dport {svc_port} -j KUBE-MARK-MASQ'
        )
        n = len(endpoints)
        for j, (ep, sep) in enumerate(zip(endpoints, sep_chains)):
            comment = f'-m comment --comment "{svc_port_name} -> {ip_port(ep, TARGET_PORT)}"'
            if j < n - 1:
                probability = f"{1.0 / (n - j):0.10f}"
                rules.append(f"-A {svc_chain} {comment} -m statistic --mode random --probability {probability} -j {sep}")
            else:
                rules.append(f"-A {svc_chain} {comment} -j {sep}")
        for ep, sep in zip(endpoints, sep_chains):
            rules.append(f'-A {sep} -s {ep}/{host_len} -m comment --comment "{svc_port_name}" -j KUBE-MARK-MASQ')
            rules.append(
                f'-A {sep} -p {proto} -m comment --comment "{svc_port_name}" -m {proto} '
                f"-j DNAT --to-destination {ip_port(ep, TARGET_PORT)}"
            )

    out = sys.stdout
    write = out.write
    write(f"# Generated by make-kube-proxy-nat.py --services {args.services} --family {args.family} "
          f"--first-nodeport {args.first_nodeport} --endpoints-per-service {args.endpoints_per_service}\n")
    write("*nat\n")
    for builtin in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"):
        write(f":{builtin} ACCEPT [0:0]\n")
    for fixed in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-PROXY-CANARY"):
        write(f":{fixed} - [0:0]\n")
    for chain in chains:
        write(f":{chain} - [0:0]\n")
    write('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n')
    write('-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n')
    write('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING\n')
    write(f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}\n")
    write(f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN\n")
    write("-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n")
    write('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
          "-j MASQUERADE --random-fully\n")
    for rule in rules:
        write(rule)
        write("\n")
    write('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule '
          'in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n')
    write("COMMIT\n")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        sys.exit(1)
