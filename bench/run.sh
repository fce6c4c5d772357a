#!/usr/bin/env bash
# Side-by-side benchmark: Berth (release build) against Debian's containerd 1.6 on the same machine, same run.
# Usage: bench/run.sh [ROUNDS] [backbone|content]   (make bench builds the release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import grpc' 2>/dev/null || pip install -q grpcio
exec python3 bench/bench.py --berth-bin "$(swift build -c release --show-bin-path)" --rounds "${1:-10}" ${2:+--only "$2"}
