import BerthCore

// Placeholder until the backend lands.
public let registration = Registration(
    type: .snapshotter, id: "devmapper", requires: [],
    summary: "devmapper snapshotter (not yet implemented)."
) { _ in
    throw PluginSkip("devmapper snapshotter not implemented yet")
}
