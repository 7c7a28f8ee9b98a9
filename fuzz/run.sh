#!/usr/bin/env bash
# Fuzzes the deny-list decoder and the control-request decoder with libFuzzer
# (swiftc -sanitize=fuzzer,address) for SECONDS (default 60): any crash, hang,
# sanitizer report or failed round trip stops it with the input that did it.
# Usage: bash fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name NodeGuardFuzz -package-name NodeGuard \
  Sources/NodeGuardControl/*/*.swift fuzz/FuzzDecoders.swift \
  -o "$work/fuzz-decoders" 2>&1 | grep -v "Cannot export local symbol" >&2 || true
mkdir -p "$work/corpus"
cp fuzz/seeds/* "$work/corpus/"
echo "==> fuzzing the deny-list and request decoders for ${seconds} s" >&2
# Crash inputs land in the work directory's artifacts, printed on failure.
"$work/fuzz-decoders" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" 2> "$work/log" || {
  tail -40 "$work/log" >&2
  for artifact in "$work"/crash-* "$work"/timeout-* "$work"/oom-*; do
    [ -e "$artifact" ] && { echo "input that failed ($artifact):" >&2; od -c "$artifact" | head -20 >&2; }
  done
  exit 1
}
grep -E "^stat::number_of_executed_units|^Done" "$work/log" >&2 || tail -3 "$work/log" >&2
