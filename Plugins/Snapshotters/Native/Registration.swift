import BerthCore

// Placeholder until the backend lands.
public let registration = Registration(
    type: .snapshotter, id: "native", requires: [],
    summary: "native snapshotter (not yet implemented)."
) { _ in
    throw PluginSkip("native snapshotter not implemented yet")
}
