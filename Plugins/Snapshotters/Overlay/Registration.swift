import BerthCore

// Placeholder until the backend lands.
public let registration = Registration(
    type: .snapshotter, id: "overlayfs", requires: [],
    summary: "overlayfs snapshotter (not yet implemented)."
) { _ in
    throw PluginSkip("overlayfs snapshotter not implemented yet")
}
