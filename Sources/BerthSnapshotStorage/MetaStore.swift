import BerthCore
import Foundation
import GRDB

/// A snapshot as a backend needs it: its numeric id (the directory name under `<root>/snapshots/`), kind, and the
/// ids of its parent chain, nearest parent first.
public struct StoredSnapshot: Sendable, Equatable {
    public var id: String
    public var kind: SnapshotKind
    public var parentIDs: [String]

    public init(id: String, kind: SnapshotKind, parentIDs: [String]) {
        self.id = id
        self.kind = kind
        self.parentIDs = parentIDs
    }
}

/// Each snapshotter's own metadata (containerd's `snapshots/storage`): key → numeric id, kind, parent, labels,
/// times and committed usage, in one SQLite file (`<root>/metadata.db`, WAL). Backends keep their data in
/// `<root>/snapshots/<id>`; short numeric ids keep overlay mount options small for deep chains.
///
/// Work happens in transactions (`write`/`read`): a backend creates or removes its directories inside the
/// transaction closure, so a thrown error (or `kill -9`) rolls the rows back and the store never names a
/// directory that was not finished. Writers are serialised by SQLite.
public final class SnapshotMetaStore: Sendable {
    let pool: DatabasePool
    public let path: String

    public init(path: String) throws(BerthError) {
        self.path = path
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            configuration.prepareDatabase { db in try WriteAheadLog.persist(db) }
            pool = try DatabasePool(path: path, configuration: configuration)
            // DatabasePool sets `synchronous = NORMAL` after prepareDatabase when it switches to WAL; NORMAL does not
            // sync the WAL at commit. FULL on the one writer connection makes every committed transaction durable.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try Self.migrator.migrate(pool)
            try WriteAheadLog.preallocate(pool, path: path)
        } catch {
            throw .internalError("opening snapshot metadata \(path): \(error)")
        }
    }

    /// Closes the database; later calls fail.
    public func close() {
        try? pool.close()
    }

    /// Runs `body` in a write transaction: a thrown error rolls back every change it made.
    public func write<T: Sendable>(_ body: @escaping @Sendable (SnapshotTransaction) throws(BerthError) -> T)
        async throws(BerthError) -> T
    {
        try await BerthError.storing("snapshot metadata") {
            try await pool.write { db in try body(SnapshotTransaction(db: db)) }
        }
    }

    /// `read` on the calling thread (`readHere`): for start-up recovery, and for one-row lookups.
    public func readNow<T>(_ body: (SnapshotTransaction) throws(BerthError) -> T) throws(BerthError) -> T {
        try BerthError.storing("snapshot metadata") {
            try pool.readHere { db in try body(SnapshotTransaction(db: db)) }
        }
    }

    /// Runs `body` on a read-only snapshot of the database (see `readReleasingReader` for why not GRDB's `read`).
    public func read<T: Sendable>(_ body: @escaping @Sendable (SnapshotTransaction) throws(BerthError) -> T)
        async throws(BerthError) -> T
    {
        try await BerthError.storing("snapshot metadata") {
            try await pool.readReleasingReader { database in try body(SnapshotTransaction(db: database)) }
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: snapshots") { db in
            try db.execute(
                sql: """
                    CREATE TABLE snapshots (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        key TEXT NOT NULL UNIQUE,
                        parent_id INTEGER REFERENCES snapshots(id),
                        kind INTEGER NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        size INTEGER NOT NULL DEFAULT 0,
                        inodes INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE INDEX snapshots_by_parent ON snapshots(parent_id);
                    CREATE TABLE snapshot_labels (
                        id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
                        key TEXT NOT NULL,
                        value TEXT NOT NULL,
                        PRIMARY KEY (id, key)
                    ) WITHOUT ROWID;
                    """)
        }
        return migrator
    }
}
