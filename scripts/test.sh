#!/usr/bin/env bash
# Runs NodeGuard's whole test suite: unit tests, and as root the integration
# tests against the real kernel in network namespaces they create and remove.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> building"
swift build --build-tests
# The systemd tests install the real package into a booted Debian container.
echo "==> building the package and the container root file system"
bash packaging/deb/build-deb.sh
NODEGUARD_DEB=$(ls -t "$PWD"/dist/nodeguard_*.deb | head -1)
NODEGUARD_ROOTFS=$(bash scripts/systemd-rootfs.sh "$NODEGUARD_DEB")
export NODEGUARD_DEB NODEGUARD_ROOTFS
echo "==> testing"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# All tests are XCTest; without Swift Testing's empty run the XCTest summary closes the output.
# A hung test must fail the run, not hold CI until its limit.
timeout --kill-after=30s 45m swift test --skip-build --disable-swift-testing 2>&1 | tee "$log" || status=$?
# XCTest: "Executed 171 tests, with 0 failures ..." or "..., with 13 tests skipped and 0 failures ...".
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with .*[0-9]+ failures?" "$log" | tail -1 || true)
if [ -z "$summary" ]; then
  echo "no test summary found" >&2
  exit 1
fi
executed=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
# Count failed test cases, not failed assertions (XCTest's "failures").
failed=$(grep -cE "^Test Case '.*' failed" "$log" || true)
skipped=0
if [[ $summary =~ ([0-9]+)\ tests?\ skipped ]]; then skipped=${BASH_REMATCH[1]}; fi
echo "$((executed - failed - skipped)) passed, $failed failed, $skipped skipped"
# A bounded fuzz run of the two decoders of untrusted input (the long run is in BENCHMARKS.md).
bash fuzz/run.sh "${NODEGUARD_FUZZ_SECONDS:-60}" || status=1
exit "$status"
