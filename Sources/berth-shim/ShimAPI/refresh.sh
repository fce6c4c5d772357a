#!/usr/bin/env bash
# BerthShimAPI: the shim's own copy of the generated messages it speaks (shim task API, task events, event
# forwarding, runc options). A separate module so berth-shim links SwiftProtobuf alone, without BerthAPI's
# gRPC services (GRPCCore, Foundation): that keeps the shim small. The files are copies of Sources/BerthAPI's
# (scripts/gen-protos.sh); run this after regenerating them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
for f in containerd_runtime_v2_task_shim containerd_types_mount containerd_types_task_task containerd_events_task \
  containerd_services_ttrpc_events_v1_events containerd_runtime_v2_runc_options_oci; do
  cp ../../BerthAPI/$f.pb.swift .
done
