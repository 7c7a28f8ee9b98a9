#!/usr/bin/env bash
# NodeGuard demo: a Kubernetes-shaped node in network namespaces that shows a
# filter-table DROP failing to close a NodePort, and `nodeguardctl block`
# closing it (remote and local clients, IPv4 and IPv6), repairing drift and
# staying closed while the daemon is down. Everything is removed at the end;
# the machine's own tables are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> building NodeGuard"
swift build 2>&1 | tail -1
bin=$(swift build --show-bin-path)
fixtures=Tests/IntegrationTests/Fixtures

id="ngdemo$RANDOM"
node="$id-node" pod="$id-pod" client="$id-cli"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for ns in "$node" "$pod" "$client"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
say()  { printf '\n\033[1m%s\033[0m\n' "$*"; }
run()  { printf '  $ %s\n' "$*"; }
probe() { # probe ORIGIN-NS PROTO HOST PORT -> prints answered/no answer
  if ip netns exec "$1" python3 "$fixtures/probe.py" "$2" "$3" "$4" --timeout 1 >/dev/null 2>&1; then echo open; else echo closed; fi
}
expect() { # expect WANT ORIGIN-NS PROTO HOST PORT LABEL
  local got; got=$(probe "$2" "$3" "$4" "$5")
  # An open port gets a second try: a first packet lost on a busy machine is not a closed port.
  if [ "$got" != "$1" ] && [ "$1" = open ]; then got=$(probe "$2" "$3" "$4" "$5"); fi
  if [ "$got" = "$1" ]; then mark="✔"; else mark="✘"; failures=$((failures + 1)); fi
  printf '  %s %-48s %s\n' "$mark" "$6" "$got"
}

say "Building a node: client -- node (kube-proxy nat) -- pod"
for ns in "$node" "$pod" "$client"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add "${id}c0" netns "$node" type veth peer name "${id}c1" netns "$client"
ip link add "${id}p0" netns "$node" type veth peer name "${id}p1" netns "$pod"
ip -n "$node" addr add 198.18.0.1/24 dev "${id}c0"; ip -n "$node" addr add 2001:db8:18::1/64 dev "${id}c0" nodad
ip -n "$node" addr add 198.19.0.1/24 dev "${id}p0"; ip -n "$node" addr add 2001:db8:19::1/64 dev "${id}p0" nodad
ip -n "$client" addr add 198.18.0.2/24 dev "${id}c1"; ip -n "$client" addr add 2001:db8:18::2/64 dev "${id}c1" nodad
ip -n "$pod" addr add 198.19.0.2/24 dev "${id}p1"; ip -n "$pod" addr add 2001:db8:19::2/64 dev "${id}p1" nodad
for l in "$node ${id}c0" "$node ${id}p0" "$client ${id}c1" "$pod ${id}p1"; do set -- $l; ip -n "$1" link set "$2" up; done
ip -n "$client" route add default via 198.18.0.1; ip -n "$client" -6 route add default via 2001:db8:18::1
ip -n "$pod" route add default via 198.19.0.1; ip -n "$pod" -6 route add default via 2001:db8:19::1
ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
sed 's/@POD@/198.19.0.2/' "$fixtures/kube-proxy-nat.rules" | ip netns exec "$node" iptables-legacy-restore
sed 's/@POD@/[2001:db8:19::2]/' "$fixtures/kube-proxy-nat.rules" | ip netns exec "$node" ip6tables-legacy-restore
ip netns exec "$pod" python3 "$fixtures/servers.py" pod tcp:8200 tcp:8300 udp:5300 > "$work/servers.out" &
pids+=($!); disown $!
for _ in $(seq 50); do grep -q ready "$work/servers.out" 2>/dev/null && break; sleep 0.1; done
echo "  kube-proxy exposes vault/vault-ui on NodePort 31002 and web/frontend on 31003 (DNAT to the pod)"

say "1. The vulnerable NodePort answers"
expect open "$client" tcp 198.18.0.1 31002 "remote client -> 198.18.0.1:31002"
expect open "$client" tcp 2001:db8:18::1 31002 "remote client -> [2001:db8:18::1]:31002"

say "2. The usual fix does NOT close it: kube-proxy DNATs before filter INPUT"
run "iptables -I INPUT -p tcp --dport 31002 -j DROP"
ip netns exec "$node" iptables-legacy -I INPUT -p tcp --dport 31002 -j DROP
expect open "$client" tcp 198.18.0.1 31002 "remote client -> 198.18.0.1:31002"
ip netns exec "$node" iptables-legacy -D INPUT -p tcp --dport 31002 -j DROP

say "3. NodeGuard closes it before DNAT"
echo '{"version": 1, "blocked": []}' > "$work/denylist.json"
ip netns exec "$node" "$bin/nodeguardd" --config "$work/denylist.json" --state-dir "$work/state" \
  --socket "$work/nodeguard.sock" 2> "$work/nodeguardd.log" &
pids+=($!); disown $!
for _ in $(seq 100); do "$bin/nodeguardctl" status --socket "$work/nodeguard.sock" >/dev/null 2>&1 && break; sleep 0.1; done
run "nodeguardctl block 31002 --reason 'vault UI CVE, ticket SEC-1234'"
"$bin/nodeguardctl" block 31002 --reason "vault UI CVE, ticket SEC-1234" --socket "$work/nodeguard.sock" | sed 's/^/  /'
expect closed "$client" tcp 198.18.0.1 31002 "remote client -> 198.18.0.1:31002"
expect closed "$client" tcp 2001:db8:18::1 31002 "remote client -> [2001:db8:18::1]:31002"
expect closed "$node" tcp 198.18.0.1 31002 "the node itself -> 198.18.0.1:31002"
expect closed "$node" tcp 2001:db8:18::1 31002 "the node itself -> [2001:db8:18::1]:31002"
expect open "$client" tcp 198.18.0.1 31003 "another NodePort (31003) still answers"
echo
run "iptables-legacy -t mangle -S"
ip netns exec "$node" iptables-legacy -t mangle -S | grep NODEGUARD | sed 's/^/  /'

echo
run "nodeguardctl explain 31002"
"$bin/nodeguardctl" explain 31002 --socket "$work/nodeguard.sock" | sed 's/^/  /'

say "4. Someone flushes NodeGuard's chain: repaired the moment their iptables releases the lock"
run "iptables -t mangle -F NODEGUARD-TCP"
ip netns exec "$node" iptables-legacy -w -t mangle -F NODEGUARD-TCP
sleep 0.1
expect closed "$client" tcp 198.18.0.1 31002 "remote client -> 198.18.0.1:31002"
grep "repaired drift" "$work/nodeguardd.log" | sed 's/^.*repaired/  repaired/' | head -3

say "5. The daemon dies: the port stays closed"
kill -9 "${pids[1]}"
expect closed "$client" tcp 198.18.0.1 31002 "remote client -> 198.18.0.1:31002"

echo
if [ "$failures" -eq 0 ]; then
  echo "Demo complete: every check behaved as shown. Namespaces removed."
else
  echo "Demo finished with $failures unexpected result(s)." >&2
  exit 1
fi
