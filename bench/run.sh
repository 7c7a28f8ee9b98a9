#!/usr/bin/env bash
# NodeGuard's benchmarks (issue 4's targets; results in BENCHMARKS.md):
#   - repair latency: a foreign rule inserted above NodeGuard's jump, and a flush of its chain,
#     made as iptables makes them (libiptc under /run/xtables.lock), until the rules are right
#     again; TRIALS trials each, p50/p90/p99;
#   - idle cost: CPU and peak RSS of nodeguardd over IDLE_SECONDS with 10 and with 2,768 blocked
#     ports, next to a kube-proxy nat table of 5,000 services (about 75,000 iptables-save lines);
#     the start-up peak (planning and the first commit) is reported on its own;
#   - watch cost: nodeguardd's CPU per kube-proxy nat change at 5,000 services, against
#     `iptables-legacy-save -t nat`, and what a status call costs after such a change.
#   - a hostile node (bench/hostile-node.sh): a flush repaired beside 20,000 foreign mangle rules,
#     a 100,000-rule nat table and 100 clients polling status, and the longest watchdog gap.
# Everything runs in a network namespace it creates and deletes; the machine's tables are not
# touched. Release binaries as the .deb ships them. Usage: sudo bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-200}
IDLE_SECONDS=${IDLE_SECONDS:-60}
NAT_CHANGES=${NAT_CHANGES:-30}
source bench/common.sh
bench_setup bench
python3 Tests/IntegrationTests/Fixtures/make-kube-proxy-nat.py --services 5000 > "$work/nat.rules"
ip netns exec "$ns" iptables-legacy-restore < "$work/nat.rules"
nat_lines=$(ip netns exec "$ns" iptables-legacy-save -t nat | wc -l)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

start_daemon() { # start_daemon PORTS
  python3 -c "import json,sys; n=int(sys.argv[1]); print(json.dumps({'version': 1, 'blocked': [{'port': p, 'protocol': 'tcp'} for p in range(30000, 30000 + n)]}))" "$1" > "$work/denylist.json"
  rm -rf "$work/state"
  ip netns exec "$ns" "$bin/nodeguardd" --config "$work/denylist.json" --state-dir "$work/state" \
    --socket "$work/sock" 2> "$work/daemon.log" &
  daemon=$!
  # metrics, not status: status reads the 5,000-service nat table (measured separately below).
  for _ in $(seq 200); do "$bin/nodeguardctl" metrics --socket "$work/sock" >/dev/null 2>&1 && return; sleep 0.05; done
  echo "nodeguardd did not start:" >&2; cat "$work/daemon.log" >&2; exit 1
}
stop_daemon() { kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=""; }

echo "## Machine"
echo
echo "- $(date -u +%Y-%m-%d), $(uname -sr), $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "- $(swift --version 2>&1 | head -1)"
echo "- kube-proxy-shaped nat table: 5,000 services, $nat_lines iptables-legacy-save lines"
echo

echo "## Idle cost and repair latency"
echo
echo "| blocked ports | idle CPU (${IDLE_SECONDS} s) | peak RSS, idle (${IDLE_SECONDS} s) | peak RSS, start-up | RSS / peak after one \`status\` | repair: rule above jump p50 / p90 / p99 / max (ms) | repair: chain flushed p50 / p90 / p99 / max (ms) |"
echo "|---|---|---|---|---|---|---|"
for ports in 10 2768; do
  start_daemon "$ports"
  sleep 5
  startup=$(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$daemon/status")
  # From here the peak is the idle window's own (proc(5): clear_refs 5 resets VmHWM).
  echo 5 > "/proc/$daemon/clear_refs"
  t0=$(ticks "$daemon"); sleep "$IDLE_SECONDS"; t1=$(ticks "$daemon")
  cpu=$(python3 -c "print(f'{($t1 - $t0) / $hz / $IDLE_SECONDS * 100:.2f}%')")
  rss=$(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$daemon/status")
  "$bin/nodeguardctl" status --socket "$work/sock" >/dev/null || true
  after=$(awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} END {printf "%.1f / %.1f MB", r/1024, h/1024}' "/proc/$daemon/status")
  insert=$(ip netns exec "$ns" "$bin/nodeguard-bench" repair --kind insert --trials "$TRIALS")
  flush=$(ip netns exec "$ns" "$bin/nodeguard-bench" repair --kind flush --trials "$TRIALS")
  fmt() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(f\"{r['p50_ms']} / {r['p90_ms']} / {r['p99_ms']} / {r['max_ms']}\" + (f\" ({r['timeouts']} timeouts)\" if r['timeouts'] else ''))" "$1"; }
  echo "| $ports | $cpu | $rss | $startup | $after | $(fmt "$insert") | $(fmt "$flush") |"
  stop_daemon
done
echo

echo "## Block latency: nodeguardctl block against the manual way (median of ${BLOCK_TRIALS:-40})"
echo
start_daemon 10
python3 - "$ns" "$bin/nodeguardctl" "$work/sock" "$work" "${BLOCK_TRIALS:-40}" <<'PY'
import statistics, subprocess, sys, time
ns, ctl, sock, work, trials = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def run(*args):
    subprocess.run(list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def nsrun(*args): run("ip", "netns", "exec", ns, *args)
ours, manual = [], []
for i in range(trials):
    port = str(31000 + i)
    t = time.monotonic(); run(ctl, "block", port, "--socket", sock); ours.append(time.monotonic() - t)
    # The manual equivalent: both hooks, both families, in mangle before DNAT, then saved for reboots.
    t = time.monotonic()
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        for chain in ("PREROUTING", "OUTPUT"):
            nsrun(tool, "-w", "-t", "mangle", "-I", chain, "-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL",
                  "-m", "conntrack", "--ctdir", "ORIGINAL", "--dport", str(32000 + i), "-j", "DROP")
    with open(f"{work}/rules.v4", "w") as f4, open(f"{work}/rules.v6", "w") as f6:
        subprocess.run(["ip", "netns", "exec", ns, "iptables-legacy-save"], stdout=f4, check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip6tables-legacy-save"], stdout=f6, check=True)
        f4.flush(); f6.flush()
        import os; os.fsync(f4.fileno()); os.fsync(f6.fileno())
    manual.append(time.monotonic() - t)
o, m = statistics.median(ours) * 1000, statistics.median(manual) * 1000
print(f"- `nodeguardctl block PORT` (IPv4 + IPv6 committed, state file fsynced, audit record): median {o:.1f} ms, p90 {sorted(ours)[int(len(ours)*0.9)]*1000:.1f} ms")
print(f"- manual: 4 x `iptables-legacy -w -t mangle -I` (PREROUTING and OUTPUT, both families) + `iptables-legacy-save` and `ip6tables-legacy-save` to files, fsynced: median {m:.1f} ms")
print(f"- ratio NodeGuard / manual: {o / m:.2f} (target: at most 1)")
PY
stop_daemon
echo

echo "## Per-packet cost: requests to an unblocked NodePort with 0 and 2,768 blocked ports"
echo
# A client and a pod beside the node; NodePort 29999/tcp (outside the blocked 30000-32767) DNATs to the pod.
ip netns add "$ns-cli"; ip netns add "$ns-pod"
extra_cleanup() { ip netns pids "$ns-pod" 2>/dev/null | xargs -r kill -9; ip netns del "$ns-cli" 2>/dev/null || true; ip netns del "$ns-pod" 2>/dev/null || true; }
trap 'extra_cleanup; bench_cleanup' EXIT
ip link add "${ns}c0" netns "$ns" type veth peer name "${ns}c1" netns "$ns-cli"
ip link add "${ns}p0" netns "$ns" type veth peer name "${ns}p1" netns "$ns-pod"
ip -n "$ns" addr add 198.18.0.1/24 dev "${ns}c0"; ip -n "$ns" addr add 198.19.0.1/24 dev "${ns}p0"
ip -n "$ns-cli" addr add 198.18.0.2/24 dev "${ns}c1"; ip -n "$ns-pod" addr add 198.19.0.2/24 dev "${ns}p1"
for l in "$ns ${ns}c0" "$ns ${ns}p0" "$ns-cli ${ns}c1" "$ns-pod ${ns}p1" "$ns-cli lo" "$ns-pod lo"; do set -- $l; ip -n "$1" link set "$2" up; done
ip -n "$ns-cli" route add default via 198.18.0.1; ip -n "$ns-pod" route add default via 198.19.0.1
ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
# Tens of thousands of short connections: reuse TIME_WAIT ports rather than run out of them.
ip netns exec "$ns-cli" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65000"
ip netns exec "$ns" iptables-legacy -w -t nat -I KUBE-NODEPORTS -p tcp --dport 29999 -j DNAT --to-destination 198.19.0.2:8200
ip netns exec "$ns-pod" python3 Tests/IntegrationTests/Fixtures/servers.py pod tcp:8200 > "$work/servers.out" 2>&1 &
disown $!
for _ in $(seq 50); do grep -q ready "$work/servers.out" 2>/dev/null && break; sleep 0.1; done
rate() { # requests per second over 5 s, one connection per request
  ip netns exec "$ns-cli" python3 - <<'PY'
import socket, time
end, count = time.monotonic() + 5, 0
while time.monotonic() < end:
    with socket.create_connection(("198.18.0.1", 29999), timeout=2) as s:
        s.sendall(b"x"); s.recv(64)
    count += 1
print(count / 5)
PY
}
declare -A rates
for round in 1 2 3 4 5; do
  for ports in 0 2768; do
    start_daemon "$ports"
    rates[$ports]+="$(rate) "
    stop_daemon
  done
done
python3 - "${rates[0]}" "${rates[2768]}" <<'PY'
import statistics, sys
zero, full = [float(x) for x in sys.argv[1].split()], [float(x) for x in sys.argv[2].split()]
z, f = statistics.median(zero), statistics.median(full)
print(f"- 0 blocked ports: {z:.0f} requests/s; 2,768 blocked ports: {f:.0f} requests/s (medians of 5 rounds of 5 s, alternating; each request a new TCP connection from the client namespace)")
print(f"- ratio: {f / z:.3f} (target: at least 0.95)")
PY
echo

echo "## Watch cost per kube-proxy nat change (5,000 services)"
echo
start_daemon 10
sleep 5
sep=$(grep -m1 -- '-A KUBE-SEP-.*DNAT' "$work/nat.rules")
chain=$(echo "$sep" | awk '{print $2}')
rule=$(echo "$sep" | cut -d' ' -f3-)
t0=$(ticks "$daemon"); s0=$(date +%s%N)
for i in $(seq "$NAT_CHANGES"); do
  # kube-proxy moving one endpoint: same-size edit of a DNAT, under the xtables lock.
  moved=$(echo "$rule" | sed -E "s/--to-destination [0-9.]+:/--to-destination 10.245.$((i % 250)).$((i % 200 + 1)):/")
  ip netns exec "$ns" iptables-legacy -w -t nat -R "$chain" 2 $moved
  sleep 1
done
t1=$(ticks "$daemon"); s1=$(date +%s%N)
busy=$(python3 -c "print(($t1 - $t0) / $hz * 1000)")
elapsed=$(python3 -c "print(($s1 - $s0) / 1e9)")
save_ms=$(python3 - "$ns" <<'PY'
import subprocess, sys, time
times = []
for _ in range(5):
    t = time.monotonic()
    subprocess.run(["ip", "netns", "exec", sys.argv[1], "iptables-legacy-save", "-t", "nat"], stdout=subprocess.DEVNULL, check=True)
    times.append((time.monotonic() - t) * 1000)
print(f"{sorted(times)[2]:.1f}")
PY
)
nat=$(ip netns exec "$ns" "$bin/nodeguard-bench" nat-read --repeats 5)
stop_daemon
python3 - "$busy" "$elapsed" "$NAT_CHANGES" "$save_ms" "$nat" <<'PY'
import json, sys
busy, elapsed, changes, save = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
nat = json.loads(sys.argv[5])
per_change = busy / changes
print(f"- nodeguardd's CPU while kube-proxy changed the nat table {changes} times in {elapsed:.0f} s: "
      f"{busy:.0f} ms in all, at most {per_change:.1f} ms per change (idle ticks included; CPU ticks are 10 ms)")
print(f"- `iptables-legacy-save -t nat` (median of 5): {save:.1f} ms; nodeguardd per change / save: {per_change / save * 100:.1f}%")
print(f"- the daemon never reads the nat table while idle; a status or explain after a change pays "
      f"the fingerprint ({nat['fingerprint_median_ms']} ms) and one full read ({nat['full_read_median_ms']} ms, "
      f"{nat['nodeports']} NodePorts with endpoints); unchanged, only the fingerprint")
PY

echo
echo "## Hostile node: 20,000 foreign mangle rules, about 100,000 nat rules, 100 clients polling status"
echo
bash bench/hostile-node.sh
