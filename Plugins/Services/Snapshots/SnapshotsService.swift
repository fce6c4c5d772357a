import BerthCore

// Placeholder until the service lands.
public let registration = Registration(
    type: .grpc, id: "snapshots", requires: [.type(.metadata)],
    summary: "containerd.services.snapshots.v1.Snapshots (not yet implemented)."
) { _ in
    throw PluginSkip("snapshots service not implemented yet")
}
