#!/usr/bin/env bash
# The work NodeGuard does at its deny-list limits (issue 14, item 6; results in BENCHMARKS.md):
# how long nodeguardd holds the xtables lock (as long as that, kube-proxy's next iptables-restore
# waits), the total time and the daemon's peak RSS for
#   - start-up with a list at the limits (ENTRIES entries, SOURCES allowFrom sources, PER_ENTRY in
#     each entry that has any, all IPv4 so that one family's table holds every source);
#   - a `block` of one entry with PER_ENTRY sources that brings the list to the limits;
#   - a foreign rule inserted into that entry's chain (forcing a diff of it);
#   - a foreign rule inserted into, and a flush of, the largest NodeGuard chain;
#   - every NodeGuard chain flushed at once (the whole table to rewrite).
# The lock is a private file (XTABLES_LOCKFILE), so no other program's holds are counted.
# Everything runs in a network namespace it creates and deletes; the machine's tables are not touched.
# Usage: sudo bash bench/limits.sh   (TRIALS, ENTRIES, SOURCES, PER_ENTRY; BIN_DIR to time other binaries;
# DAEMON_NICE=-10 to run nodeguardd ahead of other work on a busy machine)
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-10}
source bench/common.sh
bench_setup limits
# The limits the binaries enforce, unless overridden (to time other candidates with a patched build).
limits=$("$bin/nodeguard-bench" limits 2>/dev/null || echo '{"entries":8192,"sourcesPerEntry":64,"sources":8192}')
ENTRIES=${ENTRIES:-$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['entries'])" "$limits")}
SOURCES=${SOURCES:-$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['sources'])" "$limits")}
PER_ENTRY=${PER_ENTRY:-$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['sourcesPerEntry'])" "$limits")}

export XTABLES_LOCKFILE="$work/xtables.lock"

# The list at the limits, less the one entry the block adds: entries with sources first (tcp
# 30000 up, so 16 of them share each leaf chain), then plain ones (tcp, udp, sctp from 30000 up).
python3 - "$ENTRIES" "$SOURCES" "$PER_ENTRY" "$work" <<'PY'
import json, sys
entries, sources, per_entry, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sourced = sources // per_entry
keys = [(p, proto) for proto in ("tcp", "udp", "sctp") for p in range(30000, 65536)]
blocked, k = [], 0
for i, (port, proto) in enumerate(keys[:entries]):
    entry = {"port": port, "protocol": proto}
    if i < sourced:
        entry["allowFrom"] = []
        for _ in range(per_entry):
            entry["allowFrom"].append(f"10.{k >> 16}.{(k >> 8) & 255}.{k & 255}/32")
            k += 1
    blocked.append(entry)
block = blocked.pop(sourced - 1 if sourced else len(blocked) - 1)
json.dump({"version": 1, "blocked": blocked}, open(f"{work}/denylist.json", "w"))
json.dump(block, open(f"{work}/entry.json", "w"))
print(block["port"], file=open(f"{work}/port", "w"))
PY
port=$(cat "$work/port")

t0=$(date +%s%N)
ip netns exec "$ns" nice -n "${DAEMON_NICE:-0}" "$bin/nodeguardd" --config "$work/denylist.json" --state-dir "$work/state" \
  --socket "$work/sock" 2> "$work/daemon.log" &
daemon=$!
disown "$daemon"   # no "Killed" notice when the clean-up ends it
# Ready when it serves the socket (a `metrics` or `status` answer at these sizes is itself slow to read).
for _ in $(seq 3000); do grep -q "serving nodeguardctl" "$work/daemon.log" && break; sleep 0.01; done
t1=$(date +%s%N)
grep -q "serving nodeguardctl" "$work/daemon.log" || { echo "nodeguardd did not start:" >&2; cat "$work/daemon.log" >&2; exit 1; }
startup_ms=$(( (t1 - t0) / 1000000 ))
startup_rss=$(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$daemon/status")
sleep 2

load=$(cut -d' ' -f1-3 /proc/loadavg)
run() { ip netns exec "$ns" "$bin/nodeguard-bench" lock-hold --pid "$daemon" --trials "$TRIALS" "$@"; }
block=$(run --action block --socket "$work/sock" --entry "$(cat "$work/entry.json")")
rules4=$(ip netns exec "$ns" iptables-legacy-save -t mangle | grep -c '^-A NODEGUARD' || true)
rules6=$(ip netns exec "$ns" ip6tables-legacy-save -t mangle | grep -c '^-A NODEGUARD' || true)
entry_chain=$(run --action foreign-rule --chain "port:$port")
largest_insert=$(run --action foreign-rule --chain largest)
largest_flush=$(run --action flush --chain largest)
all_flush=$(run --action flush --chain all --trials "$(( TRIALS < 5 ? TRIALS : 5 ))")

echo "## Limits: lock hold, time and memory at the limits"
echo
echo "- $(date -u +%Y-%m-%d), $(uname -sr), $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average $load (other work inflates the holds)"
echo "- the list: $ENTRIES entries (tcp, udp and sctp ports from 30000), $SOURCES IPv4 allowFrom sources, $PER_ENTRY in each of $(( SOURCES / PER_ENTRY )) entries; NodeGuard rules: $rules4 IPv4, $rules6 IPv6"
echo "- start-up (plan, first commit of both families, until the socket answers): $startup_ms ms, peak RSS $startup_rss"
echo
echo "| change (trials) | rules in the chain | lock holds | longest hold: median / max (ms) | all holds, median (ms) | until repaired or answered: median / max (ms) | peak RSS |"
echo "|---|---|---|---|---|---|---|"
python3 - "$block" "$entry_chain" "$largest_insert" "$largest_flush" "$all_flush" "$PER_ENTRY" <<'PY'
import json, sys
names = [f"`block` of one entry with {sys.argv[6]} sources (then unblock, but for the last)",
         "a foreign rule in that entry's chain", "a foreign rule in the largest chain",
         "the largest chain flushed", "every NodeGuard chain flushed"]
for name, text in zip(names, sys.argv[1:6]):
    r = json.loads(text)
    rules = "-" if r["action"] == "block" else str(r["chain_rules"])
    print(f"| {name} ({r['trials']}) | {rules} | {r['holds_per_trial']} | {r['max_hold_median_ms']} / {r['max_hold_max_ms']} | "
          f"{r['sum_hold_median_ms']} | {r['total_median_ms']} / {r['total_max_ms']} | {r['peak_rss_mb']} MB |")
    if r["action"] == "block":
        unblock = r["unblock_max_hold_ms"]
print()
print(f"- `unblock` of that entry: longest hold {unblock:.2f} ms")
PY
