#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation
import GRDB
import Synchronization

/// What distinguishes one directory-per-snapshot backend (overlayfs, native) from another: how a new snapshot's
/// directory is filled, which mounts it yields, and where its own bytes are for usage.
public protocol SnapshotDirectoryBackend: Sendable {
    /// Makes what every new snapshot directory starts with, whatever its kind and parent (overlay: `fs`), in the
    /// empty directory `directory`. Runs ahead of need, outside any transaction (see `SpareDirectories`).
    func prepareSpare(_ directory: String) throws(BerthError)
    /// Fills the new snapshot directory `directory` (a spare, renamed to `snapshots/<id>` afterwards).
    /// `snapshotDirectory(id)` gives a parent's directory. Runs inside the write transaction.
    func populate(_ directory: String, snapshot: StoredSnapshot, snapshotDirectory: (String) -> String)
        throws(BerthError)
    /// The mounts of an active or view snapshot.
    func mounts(_ snapshot: StoredSnapshot, snapshotDirectory: (String) -> String) -> [Mount]
    /// The directory whose disk usage is the snapshot's own (containerd: `fs` for overlay, the whole dir for native).
    func usageDirectory(_ snapshotDirectory: String) -> String
    /// Labels added to every returned info (overlay's `upperdir_label`); nil when the backend adds none.
    func extraLabels(_ snapshotDirectory: String) -> [String: String]?
}

/// The snapshotter shared by directory-per-snapshot backends, containerd's overlay/native skeleton: rows in
/// `<root>/metadata.db` or the shared metadata database (`SnapshotDatabase`), data in `<root>/snapshots/<id>`.
/// A new snapshot is built in a spare directory (`spares/new-XXXXXX`, made ahead) and renamed to `snapshots/<id>`
/// inside the metadata transaction (the caller's, for the joined calls), so a crash leaves
/// either a recorded id with its directory or an unrecorded leftover that `cleanup()` deletes. Remove renames `<id>` to
/// `rm-<id>` inside the transaction (renamed back if the transaction fails) and deletes it after commit: at once with
/// `syncRemove`, else in the background.
public final class DirectorySnapshotter: JoinableSnapshotter, Closable {
    public let root: String
    public let store: SnapshotMetaStore
    let backend: any SnapshotDirectoryBackend
    let syncRemove: Bool
    let removals: AsyncStream<String>.Continuation
    let remover: Task<Void, Never>
    let closed = Mutex(false)
    let spares: SpareDirectories

    public init(
        root: String, backend: any SnapshotDirectoryBackend, syncRemove: Bool = false, database: SnapshotDatabase = .own
    ) throws(BerthError) {
        self.root = root
        self.backend = backend
        self.syncRemove = syncRemove
        try FileSystem.makeDirectories(root, mode: 0o700)
        if mkdir(root + "/snapshots", 0o700) != 0 && errno != EEXIST {
            throw .internalError("mkdir \(root)/snapshots: \(FileSystem.errnoMessage())")
        }
        store = try SnapshotMetaStore(root: root, database: database)
        try Self.recoverInterruptedRemovals(root + "/snapshots", store)
        spares = try SpareDirectories(directory: root + "/spares") { [backend] path throws(BerthError) in
            try backend.prepareSpare(path)
        }
        let (stream, continuation) = AsyncStream<String>.makeStream()
        removals = continuation
        remover = Task.detached {
            for await path in stream { try? SnapshotFiles.removeTree(path) }
        }
    }

    /// A crash between Remove's rename to `rm-<id>` and its commit leaves a recorded id without its directory:
    /// rename such directories back.
    static func recoverInterruptedRemovals(_ snapshots: String, _ store: SnapshotMetaStore) throws(BerthError) {
        let ids = try store.readNow { tx throws(BerthError) in try tx.idMap() }
        for name in try SnapshotFiles.entries(snapshots) where name.hasPrefix("rm-") {
            let id = String(name.dropFirst(3))
            let path = snapshots + "/" + id
            if ids[id] != nil && !FileSystem.exists(path) { _ = rename(snapshots + "/" + name, path) }
        }
    }

    public var snapshotsDirectory: String { root + "/snapshots" }
    public func snapshotDirectory(_ id: String) -> String { root + "/snapshots/" + id }

    private func decorated(_ info: SnapshotInfo, id: String) -> SnapshotInfo {
        guard let extra = backend.extraLabels(snapshotDirectory(id)) else { return info }
        var info = info
        info.labels.merge(extra) { _, new in new }
        return info
    }

    public func stat(_ key: String) async throws(BerthError) -> SnapshotInfo {
        let (id, info, _) = try store.readNow { tx throws(BerthError) in try tx.getInfo(key) }
        return decorated(info, id: id)
    }

    public func update(_ info: SnapshotInfo, paths: [String]) async throws(BerthError) -> SnapshotInfo {
        let (id, updated) = try await store.write { tx throws(BerthError) in
            let updated = try tx.updateInfo(info, paths: paths)
            return (try tx.getInfo(info.name).id, updated)
        }
        return decorated(updated, id: id)
    }

    public func usage(_ key: String) async throws(BerthError) -> SnapshotUsage {
        let (id, info, usage) = try store.readNow { tx throws(BerthError) in try tx.getInfo(key) }
        guard info.kind == .active else { return usage }
        return try SnapshotFiles.diskUsage(backend.usageDirectory(snapshotDirectory(id)))
    }

    public func mounts(_ key: String) async throws(BerthError) -> [Mount] {
        let snapshot = try store.readNow { tx throws(BerthError) in try tx.getSnapshot(key) }
        guard snapshot.kind != .committed else {
            throw .failedPrecondition("requested snapshot \(key) not active or view")
        }
        return backend.mounts(snapshot, snapshotDirectory: snapshotDirectory)
    }

    public func prepare(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await create(.active, key: key, parent: parent, labels: labels)
    }

    public func view(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await create(.view, key: key, parent: parent, labels: labels)
    }

    /// Paths a transaction closure made, so the caller can undo them when the transaction fails.
    final class Made: Sendable {
        let paths = Mutex<[String]>([])
        func add(_ path: String) { paths.withLock { $0.append(path) } }
        func drop(_ path: String) { paths.withLock { $0.removeAll { $0 == path } } }
        var all: [String] { paths.withLock { $0 } }
    }

    private func create(_ kind: SnapshotKind, key: String, parent: String, labels: [String: String])
        async throws(BerthError) -> [Mount]
    {
        let made = Made()
        defer { spares.refill() }
        do throws(BerthError) {
            let snapshot = try await store.write { tx throws(BerthError) in
                try self.createRows(tx, kind: kind, key: key, parent: parent, labels: labels, made: made)
            }
            return backend.mounts(snapshot, snapshotDirectory: snapshotDirectory)
        } catch {
            for path in made.all { try? SnapshotFiles.removeTree(path) }
            throw error
        }
    }

    /// The body of a create's transaction: records the snapshot and renames a filled spare to its directory.
    private func createRows(
        _ tx: SnapshotTransaction, kind: SnapshotKind, key: String, parent: String, labels: [String: String], made: Made
    ) throws(BerthError) -> StoredSnapshot {
        let temporary = try spares.take()
        made.add(temporary)
        let snapshot = try tx.createSnapshot(kind: kind, key: key, parent: parent, labels: labels)
        try backend.populate(temporary, snapshot: snapshot, snapshotDirectory: snapshotDirectory)
        let path = snapshotDirectory(snapshot.id)
        // The id is new in this transaction, so a directory by its name is a leftover of a transaction a crash
        // rolled back (SQLite then hands out the same id again): it belongs to no snapshot.
        if FileSystem.exists(path) { try SnapshotFiles.removeTree(path) }
        guard rename(temporary, path) == 0 else {
            throw .internalError("rename \(temporary) to \(path): \(FileSystem.errnoMessage())")
        }
        made.drop(temporary)
        made.add(path)
        return snapshot
    }

    public func commit(_ name: String, key: String, labels: [String: String]) async throws(BerthError) {
        try await store.write { tx throws(BerthError) in
            try self.commitRows(tx, name: name, key: key, labels: labels)
        }
    }

    // MARK: JoinableSnapshotter

    public var sharedDatabasePath: String? { store.isShared ? store.path : nil }

    public func create(in db: Database, kind: SnapshotKind, key: String, parent: String, labels: [String: String])
        throws(BerthError) -> (mounts: [Mount], change: JoinedChange)
    {
        let made = Made()
        let undo: @Sendable () -> Void = { [spares] in
            for path in made.all { try? SnapshotFiles.removeTree(path) }
            spares.refill()
        }
        do throws(BerthError) {
            let snapshot = try createRows(
                store.transaction(db), kind: kind, key: key, parent: parent, labels: labels, made: made)
            let change = JoinedChange { [spares] committed in committed ? spares.refill() : undo() }
            return (backend.mounts(snapshot, snapshotDirectory: snapshotDirectory), change)
        } catch {
            undo()
            throw error
        }
    }

    public func commit(in db: Database, name: String, key: String, labels: [String: String]) throws(BerthError)
        -> JoinedChange
    {
        try commitRows(store.transaction(db), name: name, key: key, labels: labels)
        return .none
    }

    /// The body of a commit's transaction: measures the active snapshot's own files; the id (so the directory)
    /// stays, the row becomes committed.
    private func commitRows(_ tx: SnapshotTransaction, name: String, key: String, labels: [String: String])
        throws(BerthError)
    {
        let (id, info, _) = try tx.getInfo(key)
        guard info.kind == .active else { throw .failedPrecondition("snapshot \(key) is not active") }
        let usage = try SnapshotFiles.diskUsage(backend.usageDirectory(snapshotDirectory(id)))
        do throws(BerthError) {
            try tx.commitActive(key: key, name: name, usage: usage, labels: labels)
        } catch {
            throw BerthError(error.code, "failed to commit snapshot \(key): \(error.message)")
        }
    }

    public func remove(_ key: String) async throws(BerthError) {
        let made = Made()
        let renamed: String?
        do throws(BerthError) {
            renamed = try await store.write { tx throws(BerthError) in
                let id: String
                do throws(BerthError) {
                    id = try tx.remove(key).id
                } catch {
                    throw BerthError(error.code, "failed to remove snapshot \(key): \(error.message)")
                }
                let path = self.snapshotDirectory(id)
                let removal = self.snapshotDirectory("rm-" + id)
                guard rename(path, removal) == 0 else {
                    if errno == ENOENT { return nil }
                    throw .internalError("rename \(path) to \(removal): \(FileSystem.errnoMessage())")
                }
                made.add(path)
                return removal
            }
        } catch {
            // The rows are back: so must the directory be.
            for path in made.all {
                let id = String(path.split(separator: "/").last ?? "")
                _ = rename(snapshotDirectory("rm-" + id), path)
            }
            throw error
        }
        guard let renamed else { return }
        if syncRemove || closed.withLock({ $0 }) {
            try? SnapshotFiles.removeTree(renamed)
        } else {
            removals.yield(renamed)
        }
    }

    public func walk(_ filter: Filter) async throws(BerthError) -> [SnapshotInfo] {
        let probe = backend.extraLabels(snapshotDirectory("0"))
        return try await store.read { tx throws(BerthError) in
            let infos = try tx.walk(filter)
            guard probe != nil else { return infos }
            var out: [SnapshotInfo] = []
            for info in infos {
                out.append(self.decorated(info, id: try tx.getInfo(info.name).id))
            }
            return out
        }
    }

    /// Deletes every directory under `snapshots/` that no recorded snapshot owns (`new-*` of interrupted
    /// creations, `rm-*` of removals, directories of rows rolled back by a crash).
    public func cleanup() async throws(BerthError) {
        let snapshotsDirectory = self.snapshotsDirectory
        let leftovers = try await store.write { tx throws(BerthError) in
            let ids = try tx.idMap()
            return try SnapshotFiles.entries(snapshotsDirectory).filter { ids[$0] == nil }
        }
        for name in leftovers { try SnapshotFiles.removeTree(snapshotsDirectory + "/" + name) }
    }

    /// Waits for background removals, then closes the metadata store. A second call does nothing.
    public func close() async {
        let first = closed.withLock { wasClosed in
            defer { wasClosed = true }
            return !wasClosed
        }
        guard first else { return }
        removals.finish()
        await remover.value
        spares.close()
        store.close()
    }
}
