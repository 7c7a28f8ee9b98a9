#!/usr/bin/env bash
# Fuzzes the deny-list decoder and the control-request decoder with libFuzzer
# (-sanitize=fuzzer,address, built by SwiftPM in .build-fuzz) for SECONDS (default 60): any crash, hang,
# sanitizer report or failed round trip stops it with the input that did it.
# Usage: bash fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A build folder of its own: the sanitizers instrument NodeGuardControl and
# swift-system too, and must not mix with the ordinary build. SwiftPM's
# --sanitize=fuzzer links the harness with libFuzzer's main but, alone, left
# the Swift code without coverage (libFuzzer fuzzed blind); -Xswiftc
# -sanitize=fuzzer adds it.
swift build -c release --scratch-path .build-fuzz --product nodeguard-fuzz \
  --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address \
  -Xswiftc -DFUZZING -Xswiftc -parse-as-library 2>&1 | tail -3 >&2
fuzzer="$(swift build -c release --scratch-path .build-fuzz --show-bin-path)/nodeguard-fuzz"
mkdir -p "$work/corpus"
cp fuzz/seeds/* "$work/corpus/"
echo "==> fuzzing the deny-list and request decoders for ${seconds} s" >&2
# Crash inputs land in the work directory's artifacts, printed on failure.
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" 2> "$work/log" || {
  tail -40 "$work/log" >&2
  for artifact in "$work"/crash-* "$work"/timeout-* "$work"/oom-*; do
    [ -e "$artifact" ] && { echo "input that failed ($artifact):" >&2; od -c "$artifact" | head -20 >&2; }
  done
  exit 1
}
grep -E "^stat::number_of_executed_units|^Done" "$work/log" >&2 || tail -3 "$work/log" >&2
# A run without coverage feedback proves little: fail rather than pass blind.
grep -qE "INITED cov: [1-9]" "$work/log" || { echo "fuzz/run.sh: the harness reported no coverage; its instrumentation was lost" >&2; exit 1; }
