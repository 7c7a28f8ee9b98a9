# Shared by the benchmark scripts (sourced, after `cd` to the repository):
# the root check, the release binaries (built once; BIN_DIR reuses them), and a
# network namespace and work folder of the script's own, removed on exit with
# the daemon ($daemon) and every process listed in $pids.
# Usage: bench_setup NAME   (sets bin, ns, work, pids, daemon)
bench_setup() {
  [ "$(id -u)" = 0 ] || { echo "bench/$1: needs root (network namespaces)" >&2; exit 1; }
  if [ -z "${BIN_DIR:-}" ]; then
    echo "==> building release binaries" >&2
    swift build -c release --static-swift-stdlib 2>&1 | tail -1 >&2
    BIN_DIR=$(swift build -c release --static-swift-stdlib --show-bin-path)
  fi
  export BIN_DIR
  bin=$BIN_DIR
  ns="ng$1$RANDOM"
  work=$(mktemp -d)
  pids=()
  daemon=""
  trap bench_cleanup EXIT
  ip netns add "$ns"
  ip -n "$ns" link set lo up
}

bench_cleanup() {
  [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
