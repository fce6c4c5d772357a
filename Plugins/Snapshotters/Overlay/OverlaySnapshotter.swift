#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthSnapshotStorage
import Foundation

/// containerd's overlay snapshotter (`snapshots/overlay/overlay.go`): `<root>/snapshots/<id>/fs` is a snapshot's
/// upper directory and `work` the overlay work directory of an active one with parents. Mounts: a bind mount of
/// `fs` without parents (read-only for a view), overlay of `upperdir` on the `lowerdir` chain (nearest parent
/// first) for an active snapshot, a read-only bind of the parent's `fs` for a view of one parent, a lowerdir-only
/// overlay for a view of several.
public enum OverlaySnapshotter {
    /// containerd's label naming a snapshot's upper directory (with `upperdir_label`).
    public static let upperdirLabel = "containerd.io/snapshot/overlay.upperdir"

    public static func open(
        root: String, config: OverlayConfig = OverlayConfig(), database: SnapshotDatabase = .own
    ) throws(BerthError) -> DirectorySnapshotter {
        var options = config.mountOptions
        // containerd turns the overlay index feature off where the kernel has it (unless configured).
        if FileSystem.exists("/sys/module/overlay/parameters/index"),
           !options.contains(where: { $0 == "index" || $0.hasPrefix("index=") })
        {
            options.insert("index=off", at: 0)
        }
        let backend = OverlayBackend(upperdirLabel: config.upperdirLabel, options: options)
        return try DirectorySnapshotter(root: root, backend: backend, syncRemove: config.syncRemove, database: database)
    }

    /// Why overlay cannot work with layers under `root`, or nil: root on overlay itself, or a test mount of two
    /// lowerdirs with upper and work dirs fails (containerd's `overlayutils.Supported`).
    public static func unsupportedReason(_ root: String) -> String? {
        if GNULibc.fileSystemType(root) == GNULibc.overlayMagic {
            return "\(root) is on an overlay file system, which cannot hold overlayfs upper directories"
        }
        let check: String
        do {
            check = try SnapshotFiles.makeTemporaryDirectory(in: root, prefix: "multiple-lowerdir-check")
        } catch {
            return "overlayfs check in \(root): \(error)"
        }
        defer { try? SnapshotFiles.removeTree(check) }
        for dir in ["lower1", "lower2", "upper", "work", "merged"] where mkdir(check + "/" + dir, 0o755) != 0 {
            return "overlayfs check: mkdir \(check)/\(dir): \(FileSystem.errnoMessage())"
        }
        let mount = Mount(
            type: "overlay", source: "overlay",
            options: ["lowerdir=\(check)/lower2:\(check)/lower1,upperdir=\(check)/upper,workdir=\(check)/work"])
        do {
            try Mounting.mount(mount, at: check + "/merged")
        } catch {
            return "overlayfs is not supported on \(root): failed to mount overlay: \(error.message)"
        }
        try? Mounting.unmountAll(check + "/merged", detach: true)
        return nil
    }
}

struct OverlayBackend: SnapshotDirectoryBackend {
    let upperdirLabel: Bool
    let options: [String]

    func prepareSpare(_ directory: String) throws(BerthError) {
        guard mkdir(directory + "/fs", 0o755) == 0 else {
            throw .internalError("mkdir \(directory)/fs: \(FileSystem.errnoMessage())")
        }
    }

    func populate(_ directory: String, snapshot: StoredSnapshot, snapshotDirectory: (String) -> String)
        throws(BerthError)
    {
        // Only an active snapshot with a parent is mounted as overlay; one without is a bind mount of `fs` and
        // needs no work directory (containerd makes one anyway: an inode less per layer unpack and prepare).
        if snapshot.kind == .active, !snapshot.parentIDs.isEmpty, mkdir(directory + "/work", 0o711) != 0 {
            throw .internalError("mkdir \(directory)/work: \(FileSystem.errnoMessage())")
        }
        // The upper directory's owner follows the nearest parent's, as containerd.
        if let parent = snapshot.parentIDs.first {
            var st = stat()
            let parentFS = snapshotDirectory(parent) + "/fs"
            guard lstat(parentFS, &st) == 0 else {
                throw .internalError("failed to stat parent \(parentFS): \(FileSystem.errnoMessage())")
            }
            guard lchown(directory + "/fs", st.st_uid, st.st_gid) == 0 else {
                throw .internalError("failed to chown \(directory)/fs: \(FileSystem.errnoMessage())")
            }
        }
    }

    func mounts(_ snapshot: StoredSnapshot, snapshotDirectory: (String) -> String) -> [Mount] {
        func upper(_ id: String) -> String { snapshotDirectory(id) + "/fs" }
        if snapshot.parentIDs.isEmpty {
            return [Mount(type: "bind", source: upper(snapshot.id),
                          options: [snapshot.kind == .view ? "ro" : "rw", "rbind"])]
        }
        var options: [String] = []
        if snapshot.kind == .active {
            options.append("workdir=" + snapshotDirectory(snapshot.id) + "/work")
            options.append("upperdir=" + upper(snapshot.id))
        } else if snapshot.parentIDs.count == 1 {
            return [Mount(type: "bind", source: upper(snapshot.parentIDs[0]), options: ["ro", "rbind"])]
        }
        options.append("lowerdir=" + snapshot.parentIDs.map(upper).joined(separator: ":"))
        return [Mount(type: "overlay", source: "overlay", options: self.options + options)]
    }

    func usageDirectory(_ snapshotDirectory: String) -> String { snapshotDirectory + "/fs" }

    func extraLabels(_ snapshotDirectory: String) -> [String: String]? {
        upperdirLabel ? [OverlaySnapshotter.upperdirLabel: snapshotDirectory + "/fs"] : nil
    }
}
