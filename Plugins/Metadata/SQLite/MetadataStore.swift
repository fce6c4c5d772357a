import BerthCore
import BerthSnapshotStorage
import Foundation
import GRDB
import Synchronization

/// The metadata database: one SQLite file opened as a WAL pool. Writes are transactions, so `kill -9` at any
/// moment leaves either the old or the new state. Schema changes are versioned migrations (`Schema`).
public actor MetadataStore: NamespaceStore, Closable {
    let pool: DatabasePool
    /// The database file, shared with the snapshotters whose rows are in it.
    let path: String
    /// The blob store this database references; nil only in tests of the namespace store alone.
    let backend: (any ContentStore)?
    /// `shared`: a blob committed by any namespace can be claimed by another that names its digest.
    let sharedContent: Bool
    private var deletionChecks: [@Sendable (String) async throws(BerthError) -> String?] = []
    /// GC's observers of committed changes, behind a lock rather than this actor: no hop per operation.
    let mutationObservers = Mutex<[@Sendable (Bool) -> Void]>([])
    /// Commits between the backend's rename and the database row: GC must not sweep blobs while any is pending.
    var pendingCommits = 0
    /// The loaded snapshotter backends by name; the metadata plugin namespaces them (`SnapshotsView`).
    let snapshotters: [String: any Snapshotter]
    /// Snapshot ids and in-flight backend keys, behind a lock rather than this actor: no hop per operation.
    let snapshotState = SnapshotState()

    public init(
        path: String, backend: (any ContentStore)? = nil, sharedContent: Bool = true,
        snapshotters: [String: any Snapshotter] = [:]
    ) throws(BerthError) {
        self.backend = backend
        self.sharedContent = sharedContent
        self.snapshotters = snapshotters
        self.path = path
        do {
            // Shared with the snapshotters that keep their rows in this file (`SnapshotDatabase.shared`).
            pool = try SharedDatabase.acquire(path)
        } catch {
            throw .internalError("opening metadata database \(path): \(error)")
        }
        do {
            try Schema.migrator.migrate(pool)
            let next = try pool.read { db in
                (try Int64.fetchOne(db, cachedSQL: "SELECT MAX(id) FROM snapshots") ?? 0) + 1
            }
            snapshotState.values.withLock { $0.next = next }
        } catch {
            SharedDatabase.release(path)
            throw .internalError("opening metadata database \(path): \(error)")
        }
    }

    private var closed = false

    /// Gives the database back (closing it with its last user); a second call does nothing.
    public func close() async throws {
        guard !closed else { return }
        closed = true
        SharedDatabase.release(path)
    }

    /// Runs `body` in a write transaction; a thrown BerthError passes through unchanged. Nonisolated: GRDB
    /// serializes writes itself, so a hop onto this actor (and back) per write would only add latency.
    nonisolated func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T)
        async throws(BerthError) -> T
    {
        try await BerthError.storing("metadata") { try await pool.write(body) }
    }

    /// Runs `body` in a read transaction on a reader connection (see `readReleasingReader` for why not GRDB's
    /// `read`). Nonisolated, as `write`.
    nonisolated func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T)
        async throws(BerthError) -> T
    {
        try await BerthError.storing("metadata") { try await pool.readReleasingReader(body) }
    }

    /// `read` on the calling thread (`readHere`), for lookups of one record.
    nonisolated func lookup<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
        try BerthError.storing("metadata") { try pool.readHere(body) }
    }

    // MARK: NamespaceStore

    public func create(_ name: String, labels: [String: String]) async throws(BerthError) {
        try Identifiers.validate(name)
        try Labels.validate(labels)
        try await write { db in
            let now = Date().timeIntervalSince1970
            do {
                try db.run(
                    sql: "INSERT INTO namespaces (name, created_at, updated_at) VALUES (?, ?, ?)",
                    arguments: [name, now, now])
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                throw BerthError.alreadyExists("namespace \"\(name)\"")
            }
            for (key, value) in labels {
                try db.run(
                    sql: "INSERT INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?)",
                    arguments: [name, key, value])
            }
        }
    }

    public func labels(_ name: String) async throws(BerthError) -> [String: String] {
        try Identifiers.validate(name)
        return try await read { db in try Self.labels(db, name) }
    }

    static func labels(_ db: Database, _ name: String) throws -> [String: String] {
        var labels: [String: String] = [:]
        for row in try Row.fetchAll(
            db, cachedSQL: "SELECT key, value FROM namespace_labels WHERE namespace = ?", arguments: [name])
        {
            labels[row["key"]] = row["value"]
        }
        return labels
    }

    public func exists(_ name: String) async throws(BerthError) -> Bool {
        try await read { db in
            try Bool.fetchOne(db, cachedSQL: "SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?)", arguments: [name])
                ?? false
        }
    }

    public func update(_ name: String, labels: [String: String], paths: [String]) async throws(BerthError)
        -> [String: String]
    {
        try Identifiers.validate(name)
        try Labels.validate(labels)
        var keysToSet: [String: String?] = [:]
        var replaceAll = false
        for path in paths {
            if path == "labels" {
                replaceAll = true
            } else if path.hasPrefix("labels.") {
                let key = String(path.dropFirst("labels.".count))
                keysToSet[key] = .some(labels[key])
            } else {
                throw .invalidArgument("cannot update \"\(path)\" field on namespace \"\(name)\"")
            }
        }
        if paths.isEmpty { replaceAll = true }
        let keys = keysToSet
        let replace = replaceAll
        return try await write { db in
            let now = Date().timeIntervalSince1970
            try db.run(
                sql: """
                    INSERT INTO namespaces (name, created_at, updated_at) VALUES (?, ?, ?)
                    ON CONFLICT(name) DO UPDATE SET updated_at = excluded.updated_at
                    """, arguments: [name, now, now])
            if replace {
                try db.run(sql: "DELETE FROM namespace_labels WHERE namespace = ?", arguments: [name])
                for (key, value) in labels where !value.isEmpty {
                    try db.run(
                        sql: "INSERT INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?)",
                        arguments: [name, key, value])
                }
            }
            for (key, value) in keys {
                if let value, !value.isEmpty {
                    try db.run(
                        sql: "INSERT OR REPLACE INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?)",
                        arguments: [name, key, value])
                } else {
                    try db.run(
                        sql: "DELETE FROM namespace_labels WHERE namespace = ? AND key = ?", arguments: [name, key])
                }
            }
            return try Self.labels(db, name)
        }
    }

    public func list() async throws(BerthError) -> [String] {
        try await read { db in try String.fetchAll(db, cachedSQL: "SELECT name FROM namespaces ORDER BY name") }
    }

    public func delete(_ name: String) async throws(BerthError) {
        try Identifiers.validate(name)
        var holds: [String] = []
        for check in deletionChecks {
            if let what = try await check(name) { holds.append(what) }
        }
        let external = holds
        try await write { db in
            guard try Bool.fetchOne(
                db, cachedSQL: "SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?)", arguments: [name]) == true
            else {
                throw BerthError.notFound("namespace \"\(name)\"")
            }
            var still = external
            for (table, what) in Schema.namespacedTables {
                if try Bool.fetchOne(
                    db, cachedSQL: "SELECT EXISTS (SELECT 1 FROM \(table) WHERE namespace = ?)", arguments: [name]) == true
                {
                    still.append(what)
                }
            }
            if !still.isEmpty {
                throw BerthError.failedPrecondition(
                    "namespace \"\(name)\" must be empty, but it still has \(still.joined(separator: ", "))")
            }
            try db.run(sql: "DELETE FROM namespaces WHERE name = ?", arguments: [name])
        }
        mutated(deletion: true)
    }

    /// Tells GC observers about a committed change.
    nonisolated func mutated(deletion: Bool) {
        for observer in mutationObservers.withLock({ $0 }) { observer(deletion) }
    }

    public func addDeletionCheck(_ check: @escaping @Sendable (String) async throws(BerthError) -> String?) async {
        deletionChecks.append(check)
    }
}
