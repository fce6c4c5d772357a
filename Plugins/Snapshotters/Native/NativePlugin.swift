#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthSnapshotStorage

/// `[plugins."io.containerd.snapshotter.v1.native"]`: containerd's one option.
public struct NativeConfig: PluginConfig, Equatable {
    /// Root directory for the plugin; empty: `<root>/io.containerd.snapshotter.v1.native`.
    public var rootPath: String = ""

    public init() {}

    enum CodingKeys: String, CodingKey {
        case rootPath = "root_path"
    }
}

/// `io.containerd.snapshotter.v1.native`: works on any file system.
public let registration = Registration(
    type: .snapshotter, id: "native",
    summary: "native snapshotter: every snapshot a full copy of its parent, bind mounted.",
    config: NativeConfig.self
) { ic, config in
    let root = config.rootPath.isEmpty ? ic.root : config.rootPath
    ic.addPlatform(.host)
    ic.export("root", root)
    return try NativeSnapshotter.open(root: root, database: .shared(path: ic.properties.metadataDatabase, name: ic.id))
}

/// containerd's native snapshotter (`snapshots/native/native.go`): `<root>/snapshots/<id>` holds a snapshot's whole
/// tree; an active snapshot with a parent starts as a copy of the parent (`TreeCopy`). Mounts are `rbind` of the
/// snapshot's directory (`rw`), or of the parent's for a view (`ro`).
public enum NativeSnapshotter {
    public static func open(root: String, database: SnapshotDatabase = .own) throws(BerthError)
        -> DirectorySnapshotter
    {
        // containerd removes synchronously (no async option for native).
        try DirectorySnapshotter(root: root, backend: NativeBackend(), syncRemove: true, database: database)
    }
}

struct NativeBackend: SnapshotDirectoryBackend {
    func prepareSpare(_ directory: String) throws(BerthError) {
        guard chmod(directory, 0o755) == 0 else {
            throw .internalError("failed to chmod \(directory) to 0755: \(FileSystem.errnoMessage())")
        }
    }

    func populate(_ directory: String, snapshot: StoredSnapshot, snapshotDirectory: (String) -> String)
        throws(BerthError)
    {
        if snapshot.kind == .active, let parent = snapshot.parentIDs.first {
            do {
                try TreeCopy.copyDirectory(from: snapshotDirectory(parent), to: directory)
            } catch {
                throw BerthError(error.code, "copying of parent failed: \(error.message)")
            }
        }
    }

    func mounts(_ snapshot: StoredSnapshot, snapshotDirectory: (String) -> String) -> [Mount] {
        let view = snapshot.kind == .view
        let source = view && !snapshot.parentIDs.isEmpty ? snapshotDirectory(snapshot.parentIDs[0])
            : snapshotDirectory(snapshot.id)
        return [Mount(type: "bind", source: source, options: ["rbind", view ? "ro" : "rw"])]
    }

    func usageDirectory(_ snapshotDirectory: String) -> String { snapshotDirectory }

    func extraLabels(_ snapshotDirectory: String) -> [String: String]? { nil }
}
