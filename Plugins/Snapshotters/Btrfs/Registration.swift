import BerthCore

// Placeholder until the backend lands.
public let registration = Registration(
    type: .snapshotter, id: "btrfs", requires: [],
    summary: "btrfs snapshotter (not yet implemented)."
) { _ in
    throw PluginSkip("btrfs snapshotter not implemented yet")
}
