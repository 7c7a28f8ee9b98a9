#!/usr/bin/env bash
# Runs NodeGuard's whole test suite: unit tests, and as root the integration
# tests against the real kernel in network namespaces they create and remove.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "==> building"
swift build --build-tests
echo "==> testing"
swift test --skip-build
