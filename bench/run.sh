#!/usr/bin/env bash
# Side-by-side benchmark: Berth (release build) against Debian's containerd 1.6 on the same machine, same run.
# Usage: bench/run.sh [ROUNDS] [backbone|content|snapshots|images|tasks]   (make bench builds the release binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import grpc' 2>/dev/null || pip install -q grpcio
BIN="${BERTH_BIN_DIR:-$(swift build -c release --show-bin-path)}"
if [ "${2:-}" = images ] || [ "${2:-}" = tasks ]; then
  exec python3 "bench/$2/bench.py" --berth-bin "$BIN" --rounds "${1:-5}"
fi
if [ "${2:-}" = snapshots ]; then
  exec python3 bench/snapshots/bench.py --berth-bin "$BIN" --rounds "${1:-6}" ${BENCH_BTRFS:+--btrfs}
fi
python3 bench/bench.py --berth-bin "$BIN" --rounds "${1:-10}" ${2:+--only "$2"}
[ -n "${2:-}" ] || python3 bench/snapshots/bench.py --berth-bin "$BIN" --rounds 6 ${BENCH_BTRFS:+--btrfs}
