// The messages berth-shim speaks (shim task API, task events, event forwarding, mounts, runc options) live in
// BerthShimAPI so the shim links SwiftProtobuf alone; BerthAPI re-exports them, so every other module sees one API.
@_exported import BerthShimAPI
