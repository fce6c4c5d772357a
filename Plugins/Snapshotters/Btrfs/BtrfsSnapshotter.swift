#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import BerthSnapshotStorage
import Logging
import Foundation
import GRDB
import Synchronization

/// containerd's btrfs snapshotter (snapshots/btrfs): every snapshot is a subvolume under `<root>/active/<id>`,
/// `<root>/view/<id>` or `<root>/snapshots/<id>` (committed, read-only); children are btrfs snapshots of their
/// parent's subvolume, so prepare and commit cost the same whatever the layer size. Mounts are `btrfs` mounts of
/// the file system's device with `subvolid=<id>` (plus `ro` for views), exactly what containerd returns. Rows
/// (the shared storage layer) live in `<root>/metadata.db` or in the shared metadata database
/// (`SnapshotDatabase.shared`: off the btrfs, and joined to the metadata layer's transactions, so a Prepare or
/// Commit flushes one file instead of a file on the btrfs and the metadata file).
///
/// Crash safety: a subvolume is created inside the metadata transaction that names it (a failure deletes it
/// again), and subvolumes are deleted only after the transaction that forgets them committed, so the store never
/// names a missing subvolume; leftovers of an interrupted call are removed by `cleanup()`.
public final class BtrfsSnapshotter: JoinableSnapshotter, Closable {
    public let root: String
    /// The block device the root's file system is mounted from: the `Source` of every mount.
    public let device: String
    let store: SnapshotMetaStore
    let logger: Logger

    /// Opens (creating if needed) a snapshotter rooted at `root`. FailedPrecondition, with containerd's message,
    /// when `root` is not on btrfs: the plugin reports that as a skip.
    public init(
        root: String, database: SnapshotDatabase = .own, logger: Logger = Logger(label: "berth.snapshotter.btrfs")
    ) throws(BerthError) {
        try FileSystem.makeDirectories(root, mode: 0o700)
        if chmod(root, 0o700) != 0 { throw .internalError("chmod \(root): \(FileSystem.errnoMessage())") }
        let mount = try MountInfo.lookup(root)
        guard mount.fsType == "btrfs" else {
            throw .failedPrecondition(
                "path \(root) (\(mount.fsType)) must be a btrfs filesystem to be used with the btrfs snapshotter")
        }
        for kind in SnapshotKind.allCases {
            try FileSystem.makeDirectories(root + "/" + Self.directory(kind), mode: 0o755)
        }
        self.root = root
        self.device = mount.source
        self.logger = logger
        self.store = try SnapshotMetaStore(root: root, database: database)
    }

    /// The directory under the root holding snapshots of `kind` (containerd: the kind's name, `snapshots` for
    /// committed ones).
    static func directory(_ kind: SnapshotKind) -> String {
        switch kind {
        case .active: "active"
        case .view: "view"
        case .committed: "snapshots"
        }
    }

    func path(_ kind: SnapshotKind, _ id: String) -> String { root + "/" + Self.directory(kind) + "/" + id }

    public func stat(_ key: String) async throws(BerthError) -> SnapshotInfo {
        try await store.read { tx throws(BerthError) in try tx.getInfo(key).info }
    }

    public func update(_ info: SnapshotInfo, paths: [String]) async throws(BerthError) -> SnapshotInfo {
        try await store.write { tx throws(BerthError) in try tx.updateInfo(info, paths: paths) }
    }

    /// Committed snapshots report the usage recorded at commit; active ones are measured now (a walk of what
    /// differs from the parent), views report nothing of their own.
    public func usage(_ key: String) async throws(BerthError) -> SnapshotUsage {
        let (id, kind, stored, parentID) = try await store.read { tx throws(BerthError) in
            let (id, info, usage) = try tx.getInfo(key)
            let parentID = info.kind == .active ? try tx.getSnapshot(key).parentIDs.first : nil
            return (id, info.kind, usage, parentID)
        }
        guard kind == .active else { return stored }
        return try activeUsage(id: id, parentID: parentID)
    }

    func activeUsage(id: String, parentID: String?) throws(BerthError) -> SnapshotUsage {
        let dir = path(.active, id)
        if let parentID { return try DiskUsage.diff(lower: path(.committed, parentID), upper: dir) }
        return try DiskUsage.of(dir)
    }

    public func mounts(_ key: String) async throws(BerthError) -> [Mount] {
        let snapshot = try await store.read { tx throws(BerthError) in try tx.getSnapshot(key) }
        guard snapshot.kind != .committed else {
            throw .failedPrecondition("snapshot \(key) is committed: only active and view snapshots have mounts")
        }
        return try mounts(path(snapshot.kind, snapshot.id), snapshot.kind)
    }

    func mounts(_ dir: String, _ kind: SnapshotKind) throws(BerthError) -> [Mount] {
        var options = ["subvolid=\(try Subvolume.id(dir))"]
        if kind != .active { options.append("ro") }
        return [Mount(type: "btrfs", source: device, options: options)]
    }

    public func prepare(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await makeSnapshot(.active, key: key, parent: parent, labels: labels)
    }

    public func view(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await makeSnapshot(.view, key: key, parent: parent, labels: labels)
    }

    private func makeSnapshot(_ kind: SnapshotKind, key: String, parent: String, labels: [String: String])
        async throws(BerthError) -> [Mount]
    {
        let created = Box<String?>(nil)
        do throws(BerthError) {
            let target = try await store.write { tx throws(BerthError) in
                try self.createRows(tx, kind: kind, key: key, parent: parent, labels: labels, created: created)
            }
            return try mounts(target, kind)
        } catch {
            // The transaction rolled back (or the mounts could not be read): drop what this call created.
            if let target = created.get() { deleteQuietly(target) }
            throw error
        }
    }

    /// The body of a create's transaction: records the snapshot and makes its subvolume (noted in `created`).
    private func createRows(
        _ tx: SnapshotTransaction, kind: SnapshotKind, key: String, parent: String, labels: [String: String],
        created: Box<String?>
    ) throws(BerthError) -> String {
        let snapshot = try tx.createSnapshot(kind: kind, key: key, parent: parent, labels: labels)
        let target = path(kind, snapshot.id)
        // Ids of rolled-back transactions are handed out again: a prepare killed after creating its subvolume
        // left this one, which nothing names.
        if Subvolume.isSubvolume(target) { try Subvolume.delete(target) }
        if let parentID = snapshot.parentIDs.first {
            try Subvolume.snapshot(from: path(.committed, parentID), to: target, readOnly: kind == .view)
            created.set(target)
        } else {
            try Subvolume.create(target)
            created.set(target)
            if kind == .view { try Subvolume.setReadOnly(target) }
        }
        return target
    }

    /// The active snapshot's id and parent id, FailedPrecondition when `key` is not active.
    private func activeSnapshot(_ tx: SnapshotTransaction, _ key: String) throws(BerthError)
        -> (id: String, parentID: String?)
    {
        let snapshot = try tx.getSnapshot(key)
        guard snapshot.kind == .active else {
            throw .failedPrecondition("snapshot \(key) is not active, it is \(snapshot.kind.description.lowercased())")
        }
        return (snapshot.id, snapshot.parentIDs.first)
    }

    public func commit(_ name: String, key: String, labels: [String: String]) async throws(BerthError) {
        let (id, parentID) = try await store.read { tx throws(BerthError) in try self.activeSnapshot(tx, key) }
        let usage = try activeUsage(id: id, parentID: parentID)
        let created = Box(false)
        do throws(BerthError) {
            try await store.write { tx throws(BerthError) in
                try self.commitRows(tx, id: id, name: name, key: key, usage: usage, labels: labels, created: created)
            }
        } catch {
            if created.get() { deleteQuietly(path(.committed, id)) }
            throw error
        }
        deleteQuietly(path(.active, id))
    }

    /// The body of a commit's transaction: the row becomes committed and a read-only snapshot of the active
    /// subvolume is taken under `snapshots/` (noted in `created`); the active subvolume goes after the commit.
    private func commitRows(
        _ tx: SnapshotTransaction, id: String, name: String, key: String, usage: SnapshotUsage,
        labels: [String: String], created: Box<Bool>
    ) throws(BerthError) {
        let committedID = try tx.commitActive(key: key, name: name, usage: usage, labels: labels)
        guard committedID == id else { throw BerthError(.aborted, "snapshot \(key) changed during commit") }
        let target = path(.committed, id)
        // A commit killed after its snapshot but before the transaction left this behind: redo it.
        if Subvolume.isSubvolume(target) { try Subvolume.delete(target) }
        try Subvolume.snapshot(from: path(.active, id), to: target, readOnly: true)
        created.set(true)
    }

    // MARK: JoinableSnapshotter

    public var sharedDatabasePath: String? { store.isShared ? store.path : nil }

    public func create(in db: Database, kind: SnapshotKind, key: String, parent: String, labels: [String: String])
        throws(BerthError) -> (mounts: [Mount], change: JoinedChange)
    {
        let created = Box<String?>(nil)
        do throws(BerthError) {
            let target = try createRows(
                store.transaction(db), kind: kind, key: key, parent: parent, labels: labels, created: created)
            let change = JoinedChange { committed in if !committed { self.deleteQuietly(target) } }
            return (try mounts(target, kind), change)
        } catch {
            if let target = created.get() { deleteQuietly(target) }
            throw error
        }
    }

    public func commit(in db: Database, name: String, key: String, labels: [String: String]) throws(BerthError)
        -> JoinedChange
    {
        let tx = store.transaction(db)
        let (id, parentID) = try activeSnapshot(tx, key)
        let usage = try activeUsage(id: id, parentID: parentID)
        let created = Box(false)
        do throws(BerthError) {
            try commitRows(tx, id: id, name: name, key: key, usage: usage, labels: labels, created: created)
        } catch {
            if created.get() { deleteQuietly(path(.committed, id)) }
            throw error
        }
        return JoinedChange { committed in
            self.deleteQuietly(committed ? self.path(.active, id) : self.path(.committed, id))
        }
    }

    public func remove(_ key: String) async throws(BerthError) {
        let (id, kind) = try await store.write { tx throws(BerthError) in try tx.remove(key) }
        deleteQuietly(path(kind, id))
    }

    public func walk(_ filter: Filter) async throws(BerthError) -> [SnapshotInfo] {
        try await store.read { tx throws(BerthError) in try tx.walk(filter) }
    }

    /// Deletes subvolumes the store does not name (left by a removal whose delete failed, or by a killed
    /// prepare or commit), like containerd's cleanup of orphaned snapshot directories. Runs inside a write
    /// transaction so no prepare or commit is half way through creating a subvolume meanwhile.
    public func cleanup() async throws(BerthError) {
        try await store.write { tx throws(BerthError) in
            var known: Set<String> = []
            for (_, key) in try tx.idMap() {
                let snapshot = try tx.getSnapshot(key)
                known.insert(Self.directory(snapshot.kind) + "/" + snapshot.id)
            }
            for kind in SnapshotKind.allCases {
                let dir = Self.directory(kind)
                for name in Self.list(self.root + "/" + dir) where !known.contains(dir + "/" + name) {
                    let orphan = self.root + "/" + dir + "/" + name
                    guard Subvolume.isSubvolume(orphan) else { continue }
                    self.logger.debug("removing orphaned subvolume", metadata: ["path": "\(orphan)"])
                    do throws(BerthError) {
                        try Subvolume.delete(orphan)
                    } catch where error.code == .notFound {
                        // Deleted meanwhile by the remove or commit that left it.
                    }
                }
            }
        }
    }

    static func list(_ dir: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    }

    public func close() async {
        store.close()
    }

    private func deleteQuietly(_ path: String) {
        do throws(BerthError) {
            try Subvolume.delete(path)
        } catch {
            logger.warning("failed to delete subvolume", metadata: ["subvolume": "\(path)", "error": "\(error)"])
        }
    }
}

/// A value shared with a `@Sendable` transaction closure (to learn what it created before it failed).
final class Box<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func get() -> Value { value.withLock { $0 } }
    func set(_ newValue: Value) { value.withLock { $0 = newValue } }
}
