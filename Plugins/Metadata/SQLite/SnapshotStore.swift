import BerthCore
import BerthSnapshotStorage
import Foundation
import GRDB
import Synchronization

/// The namespaced snapshotters (containerd's metadata/snapshot.go): one proxy per backend. Keys, parents, kinds,
/// labels and times live in the metadata database per namespace and snapshotter; the backend only sees keys
/// `<namespace>/<id>/<key>`, so namespaces never collide, and only `containerd.io/snapshot/` labels.
public struct SnapshotsView: SnapshotterProvider {
    let store: MetadataStore

    public var snapshotterNames: [String] { store.snapshotters.keys.sorted() }

    public func snapshotter(_ name: String) throws(BerthError) -> any Snapshotter {
        guard let backend = store.snapshotters[name] else { throw .invalidArgument("snapshotter not loaded: \(name)") }
        return NamespacedSnapshotter(store: store, name: name, backend: backend)
    }
}

/// One metadata row of the `snapshots` table.
struct SnapshotRow: Sendable {
    var id: Int64
    var key: String
    var backendKey: String
    var parent: String
    var kind: SnapshotKind
    var createdAt: Date
    var updatedAt: Date

    static let columns = "id, key, backend_key, parent, kind, created_at, updated_at"

    init(_ row: Row) {
        id = row[0]
        key = row[1]
        backendKey = row[2]
        parent = row[3]
        kind = SnapshotKind(rawValue: row[4]) ?? .active
        createdAt = Date(timeIntervalSince1970: row[5])
        updatedAt = Date(timeIntervalSince1970: row[6])
    }

    func info(labels: [String: String]) -> SnapshotInfo {
        SnapshotInfo(kind: kind, name: key, parent: parent, labels: labels, createdAt: createdAt, updatedAt: updatedAt)
    }
}

/// What GC and the proxies share about snapshot rows.
enum SnapshotRows {
    static func find(_ db: Database, _ namespace: String, _ snapshotter: String, _ key: String) throws -> SnapshotRow? {
        try Row.fetchOne(
            db, cachedSQL: "SELECT \(SnapshotRow.columns) FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
            arguments: [namespace, snapshotter, key]
        ).map(SnapshotRow.init)
    }

    static func labels(_ db: Database, _ id: Int64) throws -> [String: String] {
        var labels: [String: String] = [:]
        let rows = try Row.fetchCursor(db, cachedSQL: "SELECT key, value FROM snapshot_labels WHERE snapshot = ?", arguments: [id])
        while let row = try rows.next() { labels[row[0]] = row[1] as String }
        return labels
    }

    static func insertLabels(_ db: Database, _ id: Int64, _ labels: [String: String]) throws {
        for (key, value) in labels where !value.isEmpty {
            try db.run(
                sql: "INSERT OR REPLACE INTO snapshot_labels (snapshot, key, value) VALUES (?, ?, ?)",
                arguments: [id, key, value])
        }
    }

    static func notFound(_ key: String) -> BerthError { .notFound("snapshot \(key) does not exist") }

    /// The labels a backend sees: only the inherited `containerd.io/snapshot/` ones, as containerd filters them.
    static func inherited(_ labels: [String: String]) -> [String: String] {
        labels.filter { $0.key.hasPrefix(SnapshotLabels.inheritedPrefix) }
    }
}

/// The next snapshot id (the `<id>` of backend keys; allocated in memory, never below any id in use) and the
/// backend keys of operations between their backend call and their database row, which GC must keep.
final class SnapshotState: Sendable {
    struct Values {
        var next: Int64 = 1
        var inflight: [String: Int] = [:]
    }

    let values = Mutex(Values())
}

extension MetadataStore {
    /// Allocates a snapshot id for `key` and marks its backend key (and `also`) as in flight, so GC does not
    /// sweep them before their rows are written. Returns the id, the backend key, and every key to release.
    nonisolated func beginSnapshotOperation(namespace: String, key: String, also: [String] = [])
        -> (id: Int64, backendKey: String, inflight: [String])
    {
        snapshotState.values.withLock { values in
            let id = values.next
            values.next += 1
            let keys = ["\(namespace)/\(id)/\(key)"] + also
            for key in keys { values.inflight[key, default: 0] += 1 }
            return (id, keys[0], keys)
        }
    }

    nonisolated func endSnapshotOperation(_ keys: [String]) {
        snapshotState.values.withLock { values in
            for key in keys {
                let count = (values.inflight[key] ?? 1) - 1
                values.inflight[key] = count > 0 ? count : nil
            }
        }
    }

    nonisolated var inflightSnapshots: [String: Int] { snapshotState.values.withLock { $0.inflight } }

    /// A read on the caller's thread: short lookups skip the hop to GRDB's reader queue. Each statement reads the
    /// latest commit on its own (no enclosing transaction, whose BEGIN, COMMIT and `query_only` toggles cost more
    /// than a lookup): fine for the checks before a write, which the write repeats, and for `stat`, whose row and
    /// labels may at worst come from two consecutive commits.
    nonisolated func readNow<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
        try BerthError.storing("metadata") { try pool.unsafeRead(body) }
    }

    /// Raises the id counter past every id a backend still holds (after a crash a backend may hold a snapshot
    /// whose row was never written). Backend keys look like `<namespace>/<id>/<key>`.
    func seedSnapshotIDs() async {
        var highest: Int64 = 0
        for backend in snapshotters.values {
            guard let infos = try? await backend.walk(.all) else { continue }
            for info in infos {
                let parts = info.name.split(separator: "/", maxSplits: 2)
                if parts.count == 3, let id = Int64(parts[1]) { highest = max(highest, id) }
            }
        }
        snapshotState.values.withLock { $0.next = max($0.next, highest + 1) }
    }
}

/// One backend seen through a namespace (from `RequestContext`). A snapshot created under a lease
/// (`containerd-lease`) is added to it as resource `snapshots/<snapshotter>`.
struct NamespacedSnapshotter: Snapshotter {
    let store: MetadataStore
    let name: String
    let backend: any Snapshotter

    var leaseType: String { "snapshots/\(name)" }

    /// Runs a backend call with its keys marked in flight, releasing them however it ends.
    func inflight<T>(_ keys: [String], _ body: () async throws(BerthError) -> T) async throws(BerthError) -> T {
        do {
            let result = try await body()
            store.endSnapshotOperation(keys)
            return result
        } catch {
            store.endSnapshotOperation(keys)
            throw error
        }
    }

    /// The row of `key` in the request's namespace, or NotFound.
    func resolve(_ key: String) async throws(BerthError) -> SnapshotRow {
        let namespace = try RequestContext.requireNamespace()
        let name = self.name
        return try store.readNow { db in
            guard let row = try SnapshotRows.find(db, namespace, name, key) else { throw SnapshotRows.notFound(key) }
            return row
        }
    }

    func stat(_ key: String) async throws(BerthError) -> SnapshotInfo {
        let namespace = try RequestContext.requireNamespace()
        let name = self.name
        return try store.readNow { db in
            guard let row = try SnapshotRows.find(db, namespace, name, key) else { throw SnapshotRows.notFound(key) }
            return row.info(labels: try SnapshotRows.labels(db, row.id))
        }
    }

    func update(_ info: SnapshotInfo, paths: [String]) async throws(BerthError) -> SnapshotInfo {
        let namespace = try RequestContext.requireNamespace()
        guard !info.name.isEmpty else { throw .invalidArgument("snapshot name must not be empty") }
        for path in paths where path != "labels" && !path.hasPrefix("labels.") {
            throw .invalidArgument("cannot update \"\(path)\" field on snapshot \"\(info.name)\"")
        }
        try Labels.validate(info.labels)
        let name = self.name
        let (updated, backendKey, oldLabels) = try await store.write { db in
            guard let row = try SnapshotRows.find(db, namespace, name, info.name) else {
                throw SnapshotRows.notFound(info.name)
            }
            let old = try SnapshotRows.labels(db, row.id)
            var labels = old
            if paths.isEmpty { labels = info.labels }
            for path in paths {
                if path == "labels" {
                    labels = info.labels
                } else {
                    let key = String(path.dropFirst("labels.".count))
                    labels[key] = info.labels[key]
                }
            }
            labels = labels.filter { !$0.value.isEmpty }
            try Labels.validate(labels)
            let now = Date()
            try db.run(sql: "DELETE FROM snapshot_labels WHERE snapshot = ?", arguments: [row.id])
            try SnapshotRows.insertLabels(db, row.id, labels)
            try db.run(
                sql: "UPDATE snapshots SET updated_at = ? WHERE id = ?", arguments: [now.timeIntervalSince1970, row.id])
            var updated = row
            updated.updatedAt = now
            return (updated.info(labels: labels), row.backendKey, old)
        }
        // The backend keeps only inherited labels: tell it when those change.
        let before = SnapshotRows.inherited(oldLabels)
        let after = SnapshotRows.inherited(updated.labels)
        if before != after {
            _ = try? await backend.update(
                SnapshotInfo(kind: updated.kind, name: backendKey, labels: after), paths: ["labels"])
        }
        store.mutated(deletion: false)
        return updated
    }

    func usage(_ key: String) async throws(BerthError) -> SnapshotUsage {
        try await backend.usage(try await resolve(key).backendKey)
    }

    func mounts(_ key: String) async throws(BerthError) -> [Mount] {
        try await backend.mounts(try await resolve(key).backendKey)
    }

    func prepare(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await create(key, parent: parent, labels: labels, kind: .active)
    }

    func view(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await create(key, parent: parent, labels: labels, kind: .view)
    }

    /// The backend as a `JoinableSnapshotter` whose rows are in this metadata database, or nil.
    var joined: (any JoinableSnapshotter)? {
        guard let joinable = backend as? any JoinableSnapshotter, joinable.sharedDatabasePath == store.path else {
            return nil
        }
        return joinable
    }

    /// Checks in a read, creates the backend snapshot, then records the row (and lease resource) in one write.
    func create(_ key: String, parent: String, labels: [String: String], kind: SnapshotKind) async throws(BerthError)
        -> [Mount]
    {
        let namespace = try RequestContext.requireNamespace()
        guard !key.isEmpty else { throw .invalidArgument("snapshot key must not be empty") }
        try Labels.validate(labels)
        if let joined {
            return try await createJoined(joined, key, parent: parent, labels: labels, kind: kind, namespace: namespace)
        }
        let (name, lease) = (self.name, RequestContext.lease)
        let backendParent = try store.readNow { db in
            try Self.check(db, namespace, name, key: key, parent: parent, lease: lease)
        }
        let (id, bkey, keys) = store.beginSnapshotOperation(namespace: namespace, key: key)
        let inherited = SnapshotRows.inherited(labels)
        return try await inflight(keys) { () throws(BerthError) -> [Mount] in
            let mounts = kind == .view
                ? try await backend.view(bkey, parent: backendParent, labels: inherited)
                : try await backend.prepare(bkey, parent: backendParent, labels: inherited)
            do throws(BerthError) {
                try await store.write { db in
                    // The read's check again: the key may have been taken since.
                    try Self.checkFree(db, namespace, name, key: key, lease: nil)
                    try Self.insert(
                        db, namespace, name, id: id, key: key, backendKey: bkey, parent: parent, kind: kind,
                        labels: labels, lease: lease)
                }
            } catch {
                try? await backend.remove(bkey)
                throw error
            }
            store.mutated(deletion: false)
            return mounts
        }
    }

    /// `create` with a joined backend: the checks, the backend's snapshot and the rows in one write transaction.
    func createJoined(
        _ joined: any JoinableSnapshotter, _ key: String, parent: String, labels: [String: String], kind: SnapshotKind,
        namespace: String
    ) async throws(BerthError) -> [Mount] {
        let (name, lease) = (self.name, RequestContext.lease)
        let (id, bkey, keys) = store.beginSnapshotOperation(namespace: namespace, key: key)
        let inherited = SnapshotRows.inherited(labels)
        return try await inflight(keys) { () throws(BerthError) -> [Mount] in
            let change = Mutex<JoinedChange?>(nil)
            do throws(BerthError) {
                let mounts = try await store.write { db in
                    let backendParent = try Self.check(db, namespace, name, key: key, parent: parent, lease: lease)
                    let (mounts, made) = try joined.create(
                        in: db, kind: kind, key: bkey, parent: backendParent, labels: inherited)
                    change.withLock { $0 = made }
                    try Self.insert(
                        db, namespace, name, id: id, key: key, backendKey: bkey, parent: parent, kind: kind,
                        labels: labels, lease: lease)
                    return mounts
                }
                change.withLock { $0 }?.settle(committed: true)
                store.mutated(deletion: false)
                return mounts
            } catch {
                change.withLock { $0 }?.settle(committed: false)
                throw error
            }
        }
    }

    /// The checks before a create: `key` is free, the lease exists, the parent exists. Returns the parent's
    /// backend key ("" without parent).
    static func check(
        _ db: Database, _ namespace: String, _ name: String, key: String, parent: String, lease: String?
    ) throws -> String {
        try checkFree(db, namespace, name, key: key, lease: lease)
        guard !parent.isEmpty else { return "" }
        guard let row = try SnapshotRows.find(db, namespace, name, parent) else {
            throw BerthError.notFound("parent snapshot \(parent) does not exist")
        }
        return row.backendKey
    }

    /// The write half of a create, once `key` is known free in this transaction: the row, its labels and the lease
    /// resource.
    static func insert(
        _ db: Database, _ namespace: String, _ name: String, id: Int64, key: String, backendKey: String,
        parent: String, kind: SnapshotKind, labels: [String: String], lease: String?
    ) throws {
        let now = Date().timeIntervalSince1970
        try ensureNamespace(db, namespace, now: now)
        try db.run(
            sql: """
                INSERT INTO snapshots (id, namespace, snapshotter, key, backend_key, parent, kind, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [id, namespace, name, key, backendKey, parent, kind.rawValue, now, now])
        try SnapshotRows.insertLabels(db, id, labels)
        if let lease {
            try LeaseView.addLeaseResource(db, namespace, lease, LeaseResource(id: key, type: "snapshots/\(name)"))
        }
    }

    func commit(_ committed: String, key: String, labels: [String: String]) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        guard !committed.isEmpty else { throw .invalidArgument("snapshot name must not be empty") }
        try Labels.validate(labels)
        let (name, lease) = (self.name, RequestContext.lease)
        if let joined {
            try await commitJoined(joined, committed, key: key, labels: labels, namespace: namespace)
            return
        }
        let active = try store.readNow { db in
            try Self.checkCommit(db, namespace, name, committed: committed, key: key, lease: lease)
        }
        let (id, bkey, keys) = store.beginSnapshotOperation(
            namespace: namespace, key: committed, also: [active.backendKey])
        try await inflight(keys) { () throws(BerthError) in
            try await backend.commit(bkey, key: active.backendKey, labels: SnapshotRows.inherited(labels))
            try await store.write { db in
                // The read's check again: the name may have been taken since.
                try Self.checkFree(db, namespace, name, key: committed, lease: nil)
                try Self.record(
                    db, namespace, name, committed: committed, id: id, backendKey: bkey, replacing: key,
                    parent: active.parent, labels: labels, lease: lease)
            }
        }
        store.mutated(deletion: false)
    }

    /// `commit` with a joined backend: the checks, the backend's commit and the rows in one write transaction,
    /// as containerd commits the backend inside its metadata transaction.
    func commitJoined(
        _ joined: any JoinableSnapshotter, _ committed: String, key: String, labels: [String: String],
        namespace: String
    ) async throws(BerthError) {
        let (name, lease) = (self.name, RequestContext.lease)
        let (id, bkey, keys) = store.beginSnapshotOperation(namespace: namespace, key: committed)
        let inherited = SnapshotRows.inherited(labels)
        try await inflight(keys) { () throws(BerthError) in
            let change = Mutex<JoinedChange?>(nil)
            do throws(BerthError) {
                try await store.write { db in
                    let active = try Self.checkCommit(db, namespace, name, committed: committed, key: key, lease: lease)
                    let made = try joined.commit(in: db, name: bkey, key: active.backendKey, labels: inherited)
                    change.withLock { $0 = made }
                    try Self.record(
                        db, namespace, name, committed: committed, id: id, backendKey: bkey, replacing: key,
                        parent: active.parent, labels: labels, lease: lease)
                }
                change.withLock { $0 }?.settle(committed: true)
            } catch {
                change.withLock { $0 }?.settle(committed: false)
                throw error
            }
        }
        store.mutated(deletion: false)
    }

    /// No snapshot of this namespace and snapshotter is named `key`, and the lease (if any) exists.
    static func checkFree(_ db: Database, _ namespace: String, _ name: String, key: String, lease: String?) throws {
        if try SnapshotRows.find(db, namespace, name, key) != nil {
            throw BerthError.alreadyExists("snapshot \"\(key)\"")
        }
        if let lease { try LeaseView.requireLease(db, namespace, lease) }
    }

    /// The checks before a commit: the name is free, the lease exists, `key` is an active snapshot (its row).
    static func checkCommit(
        _ db: Database, _ namespace: String, _ name: String, committed: String, key: String, lease: String?
    ) throws -> SnapshotRow {
        try checkFree(db, namespace, name, key: committed, lease: lease)
        guard let row = try SnapshotRows.find(db, namespace, name, key) else { throw SnapshotRows.notFound(key) }
        guard row.kind == .active else { throw BerthError.failedPrecondition("snapshot \(key) is not active") }
        return row
    }

    /// The write half of commit, once the name is known free in this transaction: the committed row replaces the
    /// active one.
    static func record(
        _ db: Database, _ namespace: String, _ name: String, committed: String, id: Int64, backendKey bkey: String,
        replacing key: String, parent: String, labels: [String: String], lease: String?
    ) throws {
        let now = Date().timeIntervalSince1970
        try db.run(
            sql: "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
            arguments: [namespace, name, key])
        try db.run(
            sql: """
                INSERT INTO snapshots (id, namespace, snapshotter, key, backend_key, parent, kind, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [id, namespace, name, committed, bkey, parent, SnapshotKind.committed.rawValue, now, now])
        try SnapshotRows.insertLabels(db, id, labels)
        if let lease {
            try LeaseView.addLeaseResource(db, namespace, lease, LeaseResource(id: committed, type: "snapshots/\(name)"))
            try db.run(
                sql: "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
                arguments: [namespace, lease, "snapshots/\(name)", key])
        }
    }

    /// Removes the record only; the backend snapshot goes at the next collection (containerd's lazy removal).
    func remove(_ key: String) async throws(BerthError) {
        let namespace = try RequestContext.requireNamespace()
        let (name, lease) = (self.name, RequestContext.lease)
        try await store.write { db in
            guard let row = try SnapshotRows.find(db, namespace, name, key) else { throw SnapshotRows.notFound(key) }
            if try Bool.fetchOne(
                db, cachedSQL: "SELECT EXISTS (SELECT 1 FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ?)",
                arguments: [namespace, name, key]) == true
            {
                throw BerthError.failedPrecondition("cannot remove snapshot with child")
            }
            try db.run(sql: "DELETE FROM snapshots WHERE id = ?", arguments: [row.id])
            if let lease {
                try db.run(
                    sql: "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
                    arguments: [namespace, lease, "snapshots/\(name)", key])
            }
        }
        store.mutated(deletion: true)
    }

    /// Two queries for the namespace (rows, then labels), in key order as containerd's bucket walk.
    func walk(_ filter: Filter) async throws(BerthError) -> [SnapshotInfo] {
        let namespace = try RequestContext.requireNamespace()
        let name = self.name
        let infos = try await store.read { db in
            var labels: [Int64: [String: String]] = [:]
            let labelRows = try Row.fetchCursor(
                db,
                cachedSQL: """
                    SELECT l.snapshot, l.key, l.value FROM snapshot_labels l JOIN snapshots s ON s.id = l.snapshot
                    WHERE s.namespace = ? AND s.snapshotter = ?
                    """, arguments: [namespace, name])
            while let row = try labelRows.next() { labels[row[0], default: [:]][row[1]] = row[2] as String }
            var infos: [SnapshotInfo] = []
            let rows = try Row.fetchCursor(
                db,
                cachedSQL: "SELECT \(SnapshotRow.columns) FROM snapshots WHERE namespace = ? AND snapshotter = ? ORDER BY key",
                arguments: [namespace, name])
            while let row = try rows.next() {
                let snapshot = SnapshotRow(row)
                infos.append(snapshot.info(labels: labels[snapshot.id] ?? [:]))
            }
            return infos
        }
        return filter.isEmpty ? infos : infos.filter { filter.matches($0.filterAdaptor) }
    }

    func cleanup() async throws(BerthError) {
        _ = try RequestContext.requireNamespace()
        try await backend.cleanup()
    }

    /// The backend belongs to its own plugin, which closes it.
    func close() async {}
}
