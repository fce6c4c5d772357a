#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthSnapshotStorage

/// `[plugins."io.containerd.snapshotter.v1.overlayfs"]`, containerd's options.
public struct OverlayConfig: PluginConfig, Equatable {
    /// Root directory for the plugin; empty: `<root>/io.containerd.snapshotter.v1.overlayfs`.
    public var rootPath: String = ""
    /// Add `containerd.io/snapshot/overlay.upperdir` (the snapshot's upper directory) to every returned info.
    public var upperdirLabel: Bool = false
    /// Delete a removed snapshot's directory before Remove returns (default: in the background).
    public var syncRemove: Bool = false
    /// Extra options for overlay mounts (not for bind mounts).
    public var mountOptions: [String] = []

    public init() {}

    enum CodingKeys: String, CodingKey {
        case rootPath = "root_path"
        case upperdirLabel = "upperdir_label"
        case syncRemove = "sync_remove"
        case mountOptions = "mount_options"
    }
}

/// `io.containerd.snapshotter.v1.overlayfs`, skipped (with the reason) when its root cannot hold overlay layers.
public let registration = Registration(
    type: .snapshotter, id: "overlayfs",
    summary: "overlayfs snapshotter: one upper directory per snapshot, overlay mounts of the parent chain.",
    config: OverlayConfig.self
) { ic, config in
    let root = config.rootPath.isEmpty ? ic.root : config.rootPath
    try FileSystem.makeDirectories(root, mode: 0o700)
    if let reason = OverlaySnapshotter.unsupportedReason(root) { throw PluginSkip(reason) }
    ic.addPlatform(.host)
    ic.export("root", root)
    return try OverlaySnapshotter.open(
        root: root, config: config, database: .shared(path: ic.properties.metadataDatabase, name: ic.id))
}
