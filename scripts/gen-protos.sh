#!/usr/bin/env bash
# Regenerates the Swift protobuf + gRPC code in Sources/BerthAPI from the .proto files in Protos/.
#
# Usage (from the repository root): scripts/gen-protos.sh
#
# The protoc plugins (protoc-gen-swift, protoc-gen-grpc-swift-2) are built from this package's own
# dependencies (versions pinned by Package.resolved) in a separate scratch path, so the generator
# always matches the SwiftProtobuf / GRPCProtobuf runtime we link against. protoc itself and the
# well-known types (google/protobuf/*.proto) come from the system packages.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS=.build-protoc-plugins
PROTOS=Protos
OUT=Sources/BerthAPI
# The messages berth-shim speaks go to their own module (SwiftProtobuf only), which BerthAPI re-exports.
SHIM_OUT=Sources/BerthShimAPI
SHIM_FILES="containerd_runtime_v2_task_shim containerd_types_mount containerd_types_task_task containerd_events_task
  containerd_services_ttrpc_events_v1_events containerd_runtime_v2_runc_options_oci"
WKT_INCLUDE=/usr/include

if ! command -v protoc >/dev/null 2>&1; then
  echo "error: protoc not found; install it with: apt-get install protobuf-compiler libprotobuf-dev" >&2
  exit 1
fi
if [ ! -f "$WKT_INCLUDE/google/protobuf/any.proto" ]; then
  echo "error: $WKT_INCLUDE/google/protobuf/*.proto not found; install it with: apt-get install protobuf-compiler libprotobuf-dev" >&2
  exit 1
fi

# --- 1. Build the plugins -------------------------------------------------------------------------
if swift build --scratch-path "$TOOLS" --product protoc-gen-swift &&
  swift build --scratch-path "$TOOLS" --product protoc-gen-grpc-swift-2; then
  BIN=$(swift build --scratch-path "$TOOLS" --show-bin-path)
else
  # The root manifest cannot be built as a whole while some of its targets are still missing
  # (SwiftPM validates every target's sources). Fall back to building both plugins from a copy of
  # the grpc-swift-protobuf checkout, pinned with our own Package.resolved; that package depends on
  # swift-protobuf and grpc-swift-2, so it provides both executables.
  echo "note: building the plugins from the root package failed; building them from the pinned checkouts instead" >&2
  swift package --scratch-path "$TOOLS" resolve
  STANDALONE=$TOOLS/standalone
  rm -rf "$STANDALONE/grpc-swift-protobuf"
  mkdir -p "$STANDALONE"
  cp -R "$TOOLS/checkouts/grpc-swift-protobuf" "$STANDALONE/grpc-swift-protobuf"
  cp Package.resolved "$STANDALONE/grpc-swift-protobuf/Package.resolved"
  swift build --package-path "$STANDALONE/grpc-swift-protobuf" --scratch-path "$STANDALONE/.build" \
    --product protoc-gen-swift
  swift build --package-path "$STANDALONE/grpc-swift-protobuf" --scratch-path "$STANDALONE/.build" \
    --product protoc-gen-grpc-swift-2
  BIN=$(swift build --package-path "$STANDALONE/grpc-swift-protobuf" --scratch-path "$STANDALONE/.build" \
    --show-bin-path)
fi

# --- 2. Generate -----------------------------------------------------------------------------------
find "$OUT" "$SHIM_OUT" -maxdepth 1 -type f \( -name '*.pb.swift' -o -name '*.grpc.swift' \) -delete

ALL_PROTOS=$(find "$PROTOS" -name '*.proto' | LC_ALL=C sort)
# gRPC code only for the files that declare a service (the plugin emits an empty file otherwise).
# shellcheck disable=SC2086
SERVICE_PROTOS=$(grep -l '^service ' $ALL_PROTOS | LC_ALL=C sort)

# Word splitting of the file lists below is intended (proto paths contain no spaces).
# shellcheck disable=SC2086
protoc -I "$PROTOS" -I "$WKT_INCLUDE" \
  --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" \
  --swift_out="$OUT" \
  --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  $ALL_PROTOS

# shellcheck disable=SC2086
protoc -I "$PROTOS" -I "$WKT_INCLUDE" \
  --plugin=protoc-gen-grpc-swift-2="$BIN/protoc-gen-grpc-swift-2" \
  --grpc-swift-2_out="$OUT" \
  --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores \
  $SERVICE_PROTOS

for f in $SHIM_FILES; do mv "$OUT/$f.pb.swift" "$SHIM_OUT/"; done

echo "generated $(find "$OUT" -maxdepth 1 -name '*.pb.swift' | wc -l) .pb.swift and" \
  "$(find "$OUT" -maxdepth 1 -name '*.grpc.swift' | wc -l) .grpc.swift files in $OUT"
