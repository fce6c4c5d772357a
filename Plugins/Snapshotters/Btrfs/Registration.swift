import BerthCore

/// `[plugins."io.containerd.snapshotter.v1.btrfs"]`, containerd's keys.
public struct BtrfsConfig: PluginConfig, Equatable {
    /// Where the snapshotter keeps its subvolumes and metadata; empty means the plugin's own root directory.
    /// It must be on a btrfs file system (a mount point or any directory below one).
    public var rootPath: String = ""

    public init() {}

    enum CodingKeys: String, CodingKey {
        case rootPath = "root_path"
    }
}

/// `io.containerd.snapshotter.v1.btrfs`: skipped, with containerd's reason, unless its root is on btrfs.
public let registration = Registration(
    type: .snapshotter, id: "btrfs",
    summary: "btrfs snapshotter: subvolumes and read-only snapshots under root_path (must be on btrfs).",
    config: BtrfsConfig.self
) { ic, config in
    let root = config.rootPath.isEmpty ? ic.root : config.rootPath
    ic.export("root", root)
    do throws(BerthError) {
        return try BtrfsSnapshotter(
            root: root, database: .shared(path: ic.properties.metadataDatabase, name: ic.id), logger: ic.logger)
    } catch where error.code == .failedPrecondition {
        throw PluginSkip(error.message)
    }
}
