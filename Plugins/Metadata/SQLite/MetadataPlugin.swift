import BerthCore

/// `[plugins."io.containerd.metadata.v1.bolt"]`. The id stays containerd's so existing configs and
/// `ctr plugins ls` read the same; the store behind it is SQLite (WAL), not bolt.
public struct MetadataConfig: PluginConfig, Equatable {
    /// `shared`: content is visible to every namespace that references it; `isolated`: only to the namespace
    /// that ingested it (containerd's policy, used by the content issue).
    public var contentSharingPolicy: String = "shared"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case contentSharingPolicy = "content_sharing_policy"
    }
}

public let registration = Registration(
    type: .metadata, id: "bolt", requires: [.type(.content), .type(.snapshotter), .type(.event)],
    summary: "Metadata store (SQLite in WAL mode under <root>/io.containerd.metadata.v1.bolt/meta.db).",
    config: MetadataConfig.self
) { ic, config in
    guard ["shared", "isolated"].contains(config.contentSharingPolicy) else {
        throw BerthError.invalidArgument(
            "content_sharing_policy must be \"shared\" or \"isolated\", not \"\(config.contentSharingPolicy)\"")
    }
    _ = try ic.makeRoot()
    let path = ic.properties.metadataDatabase
    // Every snapshotter that loaded, by id; skipped ones (btrfs off btrfs, devmapper here) are simply absent.
    let snapshotters = Dictionary(
        ic.all(.snapshotter, as: (any Snapshotter).self).map { ($0.id, $0.instance) }, uniquingKeysWith: { a, _ in a })
    let store = try MetadataStore(
        path: path, backend: try ic.single(.content, as: (any ContentStore).self),
        sharedContent: config.contentSharingPolicy == "shared", snapshotters: snapshotters)
    await store.seedSnapshotIDs()
    ic.export("path", path)
    return Metadata(store: store)
}
